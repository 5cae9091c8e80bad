"""Whether the stacks of one feature folder come from one backbone (docs/errors.md "Refusals").

A folder that mixes the stacks of two backbones of equal width loads without any error (same dim, floats) and
would be scored as one. A network gives each of its channels a typical magnitude, the same in every video: the
per-channel mean of a stack, ranked, correlates strongly between two videos of one backbone and not at all
between two backbones (their channels are unrelated). `check_one_backbone` samples stacks, links those whose
channel profiles agree, and refuses a folder whose sample splits into two or more such groups that do not agree
with each other. Stacks without a profile (random numbers, constant rows) link to nothing and never refuse.

A feature-folder manifest that records each stack's backbone, where a folder has one, is the exact answer;
`check_one_backbone` then defers to it (`_manifest_backbones`, the hook), and the statistics are the fallback for
folders without one (the released features, older folders).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE = 48  # stacks compared (spread over the sorted ids)
AGREE = 0.5  # Spearman correlation of two channel profiles of one backbone: well above this
UNRELATED = 0.2  # mean correlation between two groups below this: two different networks


class MixedBackbones(ValueError):
    """A feature folder whose stacks come from different backbones; the message names examples of each group."""


def _manifest_backbones(root: Path) -> dict[str, str] | None:
    """{video id: backbone} from the folder's manifest.json when it records one per stack, else None (hook)."""
    path = root / "manifest.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None  # the manifest's own reader reports a damaged manifest
    stacks = data.get("stacks") if isinstance(data, dict) else None
    if not isinstance(stacks, dict):
        return None
    out = {str(k): v.get("backbone") for k, v in stacks.items() if isinstance(v, dict) and v.get("backbone")}
    return out or None


def _profiles(store: Any, ids: list[str]) -> tuple[list[str], np.ndarray]:
    """Ranked, standardised per-channel means of the stacks of `ids` (constant profiles left out): (n, D)."""
    kept, rows = [], []
    for vid in ids:
        try:
            m = np.asarray(store.load(vid), dtype=np.float64).mean(axis=0)  # (D,)
        except ValueError:  # a damaged stack is reported by whatever reads it, with its own message
            continue
        if np.ptp(m) == 0:
            continue
        r = np.argsort(np.argsort(m, kind="stable"), kind="stable").astype(np.float64)  # (D,) ranks
        r = (r - r.mean()) / r.std()
        kept.append(vid)
        rows.append(r)
    return kept, np.array(rows).reshape(len(rows), -1)


def _groups(corr: np.ndarray) -> list[list[int]]:
    """Connected groups of stacks whose profiles agree (corr > AGREE), largest first, singletons left out."""
    n = len(corr)
    seen, groups = set(), []
    for start in range(n):
        if start in seen:
            continue
        todo, group = [start], []
        seen.add(start)
        while todo:
            i = todo.pop()
            group.append(i)
            for j in np.flatnonzero(corr[i] > AGREE):
                if int(j) not in seen:
                    seen.add(int(j))
                    todo.append(int(j))
        if len(group) >= 2:
            groups.append(sorted(group))
    return sorted(groups, key=len, reverse=True)


def check_one_backbone(store: Any, sample: int = SAMPLE) -> None:
    """Refuse (MixedBackbones) a feature folder whose stacks come from two or more backbones (module doc)."""
    root = Path(getattr(store, "root", "."))
    recorded = _manifest_backbones(root)
    if recorded is not None:
        names = sorted({recorded[v] for v in store.ids if v in recorded})
        if len(names) > 1:
            examples = {b: next(v for v in store.ids if recorded.get(v) == b) for b in names}
            raise MixedBackbones(f"{root}: its manifest records stacks of {len(names)} backbones ("
                                 + ", ".join(f"{b}: e.g. {v}" for b, v in examples.items())
                                 + "); keep one backbone's stacks per folder")
        return
    ids = list(store.ids)
    if len(ids) < 4:
        return
    step = len(ids) / min(sample, len(ids))
    probe = list(dict.fromkeys(ids[int(i * step)] for i in range(min(sample, len(ids)))))
    kept, prof = _profiles(store, probe)
    if len(kept) < 4:
        return
    corr = prof @ prof.T / prof.shape[1]  # (n, n) Spearman correlations
    groups = _groups(corr)
    if len(groups) < 2:
        return
    a, b = groups[0], groups[1]
    between = float(corr[np.ix_(a, b)].mean())
    if between < UNRELATED:
        raise MixedBackbones(
            f"{root}: its stacks come from at least two different backbones of dim {prof.shape[1]} (channel "
            f"profiles of e.g. {', '.join(kept[i] for i in a[:3])} do not match those of "
            f"{', '.join(kept[i] for i in b[:3])}: correlation {between:.2f}); keep one backbone's stacks per "
            "folder (re-extract the others with `cezsar extract --out` another folder)")
