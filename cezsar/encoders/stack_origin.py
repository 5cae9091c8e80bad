"""Whether the stacks of one feature folder come from one backbone (docs/errors.md "Refusals").

A folder that mixes the stacks of two backbones of equal width loads without any error (same dim, floats) and
would be scored as one. A network gives each of its channels a typical magnitude, the same in every video: the
per-channel mean of a stack, ranked, correlates strongly between two videos of one backbone and not at all
between two backbones (their channels are unrelated). `check_one_backbone` samples stacks, splits them in two
groups by their profiles, and refuses the folder when each group is coherent (its members agree with each other)
and the two groups' mean profiles do not agree at all. Stacks of one network split into groups whose means still
agree (measured on SynthActions' EfficientNet features: 0.42, two networks: 0.00); stacks without a profile
(random numbers, constant rows) form no coherent group and never refuse. Made-up features whose "classes" are
unrelated random vectors look like two networks, and are refused like them.

A feature-folder manifest that records each stack's backbone, where a folder has one, is the exact answer;
`check_one_backbone` then defers to it (`_manifest_backbones`, the hook), and the statistics are the fallback for
folders without one (the released features, older folders).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cezsar.errors import MixedBackbones

SAMPLE = 48  # stacks compared (spread over the sorted ids)
COHERENT = 0.3  # a group of one network: each member's profile correlates with the rest of its group above this
UNRELATED = 0.15  # two groups whose mean profiles correlate below this: two different networks
MIN_DIM = 64  # below this, chance correlations of unrelated profiles (sd 1/sqrt(D)) look like agreement
MIN_STACKS = 6  # fewer stacks split into "groups" by chance

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


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denom if denom > 0 else 0.0


def split_in_two(prof: np.ndarray) -> tuple[np.ndarray, list[float], float] | None:
    """Two groups of stacks by their channel profiles (2-means on correlation, seeded by the least alike pair):
    (labels (n,), how coherent each group is (mean correlation of a member with the rest of its group), the
    correlation of the two groups' mean profiles); None when no group of at least 2 stacks splits off."""
    corr = prof @ prof.T / prof.shape[1]  # (n, n)
    i, j = np.unravel_index(int(np.argmin(corr)), corr.shape)
    labels = (corr[:, j] > corr[:, i]).astype(np.int64)  # (n,)
    for _ in range(20):
        if labels.min() == labels.max():
            return None
        means = [prof[labels == k].mean(axis=0) for k in (0, 1)]
        new = np.array([int(_corr(p, means[1]) > _corr(p, means[0])) for p in prof])
        if (new == labels).all():
            break
        labels = new
    if min(int((labels == 0).sum()), int((labels == 1).sum())) < 2:
        return None
    coherence = []
    for k in (0, 1):
        members = prof[labels == k]
        total = members.sum(axis=0)
        coherence.append(float(np.mean([_corr(p, total - p) for p in members])))
    return labels, coherence, _corr(prof[labels == 0].mean(axis=0), prof[labels == 1].mean(axis=0))


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
    if len(ids) < MIN_STACKS or int(getattr(store, "dim", 0) or 0) < MIN_DIM:
        return  # too few stacks or channels to tell two networks from chance
    step = len(ids) / min(sample, len(ids))
    probe = list(dict.fromkeys(ids[int(i * step)] for i in range(min(sample, len(ids)))))
    kept, prof = _profiles(store, probe)
    if len(kept) < MIN_STACKS:
        return
    split = split_in_two(prof)
    if split is None:
        return
    labels, coherence, between = split
    if min(coherence) >= max(COHERENT, 4 / np.sqrt(prof.shape[1])) and between < UNRELATED:
        a, b = (np.flatnonzero(labels == k) for k in (0, 1))
        raise MixedBackbones(
            f"{root}: its stacks come from at least two different backbones of dim {prof.shape[1]} (channel "
            f"profiles of e.g. {', '.join(kept[i] for i in a[:3])} do not match those of "
            f"{', '.join(kept[i] for i in b[:3])}: correlation {between:.2f}); keep one backbone's stacks per "
            "folder (re-extract the others with `cezsar extract --out` another folder)")
