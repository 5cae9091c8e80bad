"""Evaluation protocols (paper §4): seeded class subsets, saved once and reused, and runs.

A protocol "0/N" tests on N unseen classes; a run is one seeded random subset of N classes (seed s uses
`numpy.random.default_rng(s)`), all the test videos of those classes, and accuracy over videos. The class
lists of every run are written once to a split file and from then on read, never regenerated, so every
model is scored on the same subsets even if numpy's generator changed. The real datasets' split files live
in `data/splits/` (tracked); custom datasets (SynthActions, a user's own) keep theirs beside the results.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cezsar.base.atomic import write_json
from cezsar.evaluation.clip_baseline import VARIANTS
from cezsar.config import CLASSES_DIR, SPLITS_DIR
from cezsar.evaluation.dataset_embedding import embed_dataset
from cezsar.formats.datasets import normalize_class, read_split
from cezsar.base.textio import read_json, read_text
from cezsar.evaluation.zsar import metrics, true_class_rank

STD_DDOF = 1  # sample standard deviation over runs (numpy ddof=1), recorded in every results file
DEFAULT_RUNS = 50  # paper §4: 50 random class subsets

# paper §4: protocol name -> (number of test classes, runs)
PROTOCOLS: dict[str, dict[str, tuple[int, int]]] = {
    "ucf101": {"0/101": (101, 1), "0/50": (50, 50), "0/20": (20, 50)},
    "kinetics400": {"0/400": (400, 1), "0/100": (100, 50), "0/25": (25, 50)},
    "hmdb51": {"0/51": (51, 1), "0/25": (25, 50)},
}
REAL_DATASETS = tuple(PROTOCOLS)
MIN_CLASSES = 2  # one class scored against itself is always right: no zero-shot test at all
_TOO_FEW = f"a zero-shot test needs at least {MIN_CLASSES} classes (one class always scores 100 %)"


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: which classes are tested and how many seeded runs."""

    dataset: str  # dataset kind: ucf101, kinetics400, hmdb51 (or a custom name)
    name: str  # "0/50", "0/all", or "split:<stem>" for a supplied split file (TruZe)
    n_classes: int  # test classes per run
    runs: int  # seeded runs (seeds 0 .. runs-1); 1 when every class is tested
    split_file: str | None = None  # the {"training", "testing"} JSON whose testing part is tested (TruZe)

    @property
    def slug(self) -> str:
        """File-name form of the protocol: "0/50" -> "0-50"."""
        return self.name.replace("/", "-").replace(":", "-")


def get_protocol(dataset: str, spec: str, n_total: int, runs: int | None = None,
                 split_file: str | Path | None = None) -> Protocol:
    """Parse a protocol spec against a dataset with `n_total` classes.

    Specs: "0/N" (N random classes; 1 run when N is every class, else `runs` or 50), "0/all", and "truze"
    or "split" with `split_file` (the testing part of a {"training", "testing"} split, one run). A spec
    that needs more classes than the dataset has is an error naming both numbers.
    """
    spec = spec.strip().lower()
    if spec in ("truze", "split"):
        if split_file is None:
            raise ValueError(f"protocol {spec!r} needs a split file (e.g. ucf101_truezsl_splits.json: "
                             "the TruZe 67/34 split, whose 34 testing classes are evaluated)")
        stem = Path(split_file).stem
        return Protocol(dataset, f"split:{stem}", -1, 1, str(split_file))
    if not spec.startswith("0/"):
        raise ValueError(f"unknown protocol {spec!r}: use 0/N, 0/all or truze (known for {dataset}: "
                         f"{', '.join(PROTOCOLS.get(dataset, {})) or 'generic 0/N'})")
    tail = spec[2:]
    if tail == "all":
        if n_total < MIN_CLASSES:
            raise ValueError(f"protocol {spec!r}: dataset {dataset!r} has {n_total} class(es); {_TOO_FEW}")
        return Protocol(dataset, "0/all", n_total, 1)
    try:
        n = int(tail)
    except ValueError:
        raise ValueError(f"protocol {spec!r}: the part after '0/' must be a class count or 'all'") from None
    if n < MIN_CLASSES:
        raise ValueError(f"protocol {spec!r}: {n} test class(es); {_TOO_FEW}")
    if n > n_total:
        raise ValueError(f"protocol {spec!r} needs {n} test classes but dataset {dataset!r} has {n_total}")
    if n == n_total:
        return Protocol(dataset, spec, n, 1)
    paper_runs = PROTOCOLS.get(dataset, {}).get(spec, (n, DEFAULT_RUNS))[1]
    return Protocol(dataset, spec, n, int(runs) if runs else paper_runs)


def make_runs(classes: Sequence[str], n: int, runs: int, first_seed: int = 0) -> list[dict]:
    """The class subsets of `runs` seeded runs: seed s draws n classes without replacement with
    `numpy.random.default_rng(s)`, listed in the dataset's official order."""
    out = []
    for seed in range(first_seed, first_seed + runs):
        if n >= len(classes):
            pick = np.arange(len(classes))
        else:
            pick = np.sort(np.random.default_rng(seed).choice(len(classes), size=n, replace=False))
        out.append({"seed": seed, "classes": [classes[i] for i in pick]})
    return out


def split_path(protocol: Protocol, out_dir: str | Path | None = None) -> Path:
    """Where a protocol's split file lives: data/splits/ for the real datasets, else `<out_dir>/splits/`."""
    base = SPLITS_DIR if out_dir is None else Path(out_dir) / "splits"
    return base / f"{protocol.dataset}_{protocol.slug}.json"


def _testing_classes(protocol: Protocol, classes: Sequence[str]) -> list[str]:
    split = read_split(protocol.split_file, list(classes))
    return [c for c in classes if c in set(split.testing)]  # official order


def load_or_create_splits(protocol: Protocol, classes: Sequence[str], path: str | Path) -> dict:
    """The split file of `protocol`: read when it exists (never regenerated), else generated and written.

    Reading validates it: same dataset and protocol, at least `protocol.runs` runs (the first ones are
    used), every class known to `classes` (an unknown class is an error naming it and the file).
    Returns {"dataset", "protocol", "n_classes", "runs": [{"seed", "classes"}], "path"}.
    """
    path = Path(path)
    known = set(classes)
    if path.is_file():
        data = read_json(path, "split file", ValueError)
        if not isinstance(data, dict) or not isinstance(data.get("runs", []), list):
            raise ValueError(f"split file {path}: expected an object with a 'runs' list; delete it to regenerate")
        if data.get("dataset") != protocol.dataset or data.get("protocol") != protocol.name:
            raise ValueError(f"split file {path} is for {data.get('dataset')} {data.get('protocol')}, "
                             f"not {protocol.dataset} {protocol.name}")
        runs = data.get("runs", [])
        if len(runs) < protocol.runs:
            raise ValueError(f"split file {path} holds {len(runs)} runs, {protocol.runs} requested")
        for r in runs[:protocol.runs]:
            unknown = [c for c in r["classes"] if c not in known]
            if unknown:
                raise ValueError(f"split file {path}, run seed {r['seed']}: unknown class(es) {unknown[:5]} "
                                 f"(not in the dataset's {len(known)} classes)")
        return {**data, "runs": runs[:protocol.runs], "path": str(path)}
    if protocol.split_file is not None:
        test = _testing_classes(protocol, classes)
        if len(test) < MIN_CLASSES:
            raise ValueError(f"split file {protocol.split_file}: {len(test)} testing class(es) of this dataset; "
                             f"{_TOO_FEW}")
        runs = [{"seed": 0, "classes": test}]
        n = len(test)
        how = f"testing part of {Path(protocol.split_file).name}"
    else:
        n = protocol.n_classes
        runs = make_runs(list(classes), n, protocol.runs)
        how = "seed s: numpy.random.default_rng(s).choice(C, n, replace=False), kept in official order"
    data = {"dataset": protocol.dataset, "protocol": protocol.name, "n_classes": n,
            "n_dataset_classes": len(classes), "generator": how, "runs": runs}
    write_json(path, data)
    return {**data, "path": str(path)}


def splits_sha256(splits: dict) -> str:
    """SHA-256 of the split file holding exactly the runs used (`load_or_create_splits`' dict, "path" left out).

    A file with more runs than a protocol asks for is read and its first runs used: this hash is the one a
    fresh file of just those runs has, so it does not depend on what an earlier run left in the folder."""
    body = {k: v for k, v in splits.items() if k != "path"}
    return hashlib.sha256((json.dumps(body, indent=1) + "\n").encode()).hexdigest()


def evaluate_runs(scores: np.ndarray, labels: np.ndarray, classes: Sequence[str], runs: Sequence[dict]) -> list[dict]:
    """Accuracy of every run from one (V, C) score matrix over all classes.

    Restricting the columns to a run's classes and the rows to their videos is the same as scoring that
    run from scratch (cosine is per pair), so the matrix is computed once and each run is an index job.
    Returns per run {"seed", "classes", "n_videos", "top1", "top5"} (top-5 = 1.0 when a run has <= 5 classes).
    """
    labels = np.asarray(labels, np.int64)
    col = {c: i for i, c in enumerate(classes)}
    order = np.argsort(labels, kind="stable")  # videos grouped by class: a run's rows are slices
    scores = np.asarray(scores, np.float32)[order]  # (V, C), copied once instead of once per run
    labels = labels[order]
    bounds = np.searchsorted(labels, np.arange(len(classes) + 1))
    out = []
    for r in runs:
        cols = np.array([col[c] for c in r["classes"]], np.int64)
        local = np.full(len(classes), -1, np.int64)
        local[cols] = np.arange(len(cols))
        if len(cols) == len(classes) and bool((cols == np.arange(len(classes))).all()):
            rows = np.arange(len(labels))
            sub = scores  # every class in official order: no copy
        else:
            rows = np.concatenate([np.arange(bounds[c], bounds[c + 1]) for c in cols]) if len(cols) else \
                np.zeros(0, np.int64)
            sub = scores[np.ix_(rows, cols)]  # (V_run, C_run)
        rank = true_class_rank(sub, local[labels[rows]])  # one pass gives top-1 and top-5
        top1 = float((rank < 1).mean()) if len(rows) else float("nan")
        top5 = float((rank < 5).mean()) if len(rows) else float("nan")
        out.append({"seed": int(r["seed"]), "classes": list(r["classes"]), "n_videos": int(len(rows)),
                    "top1": top1, "top5": top5})
    return out


def summarize(run_results: Sequence[dict], ddof: int = STD_DDOF) -> dict:
    """Mean and std (ddof 1, the sample std, by default; the released code's numpy default is ddof 0) of
    top-1/top-5 over runs; std is None for a single run."""
    out: dict = {"n_runs": len(run_results), "std_ddof": ddof}
    for key in ("top1", "top5"):
        vals = np.array([r[key] for r in run_results], np.float64)
        out[f"{key}_mean"] = float(vals.mean()) if len(vals) else float("nan")
        out[f"{key}_std"] = float(vals.std(ddof=ddof)) if len(vals) > max(ddof, 1) else None
    return out


def evaluate_protocol(emb: dict, protocol: Protocol, split_file: str | Path, ddof: int = STD_DDOF) -> dict:
    """Score every run of `protocol` on embedded data (`embed_dataset`'s dict); results dict with stable
    names: {"protocol", "n_classes", "split_file", "split_sha256" (`splits_sha256`), "n_runs", "std_ddof",
    "top1_mean", "top1_std", "top5_mean", "top5_std", "chance", "runs": [...]} plus "confusion"/"per_class" for
    a single run."""

    splits = load_or_create_splits(protocol, emb["classes"], split_file)
    runs = evaluate_runs(emb["scores"], emb["labels"], emb["classes"], splits["runs"])
    out = {"protocol": protocol.name, "n_classes": splits["n_classes"], "split_file": splits["path"],
           "split_sha256": splits_sha256(splits), **summarize(runs, ddof), "chance": 1.0 / max(splits["n_classes"], 1), "runs": runs}
    if len(runs) == 1:
        col = {c: i for i, c in enumerate(emb["classes"])}
        cols = np.array([col[c] for c in runs[0]["classes"]], np.int64)
        local = np.full(len(col), -1, np.int64)
        local[cols] = np.arange(len(cols))
        rows = np.flatnonzero(local[emb["labels"]] >= 0)
        m = metrics(emb["scores"][np.ix_(rows, cols)], local[emb["labels"][rows]], runs[0]["classes"])
        out["confusion"], out["per_class"] = m["confusion"], m["per_class"]
    return out


def official_classes(kind: str) -> list[str] | None:
    """The normalised official class list data/classes/<kind>.txt, or None when there is none."""

    path = CLASSES_DIR / f"{kind}.txt"
    if kind not in REAL_DATASETS or not path.is_file():
        return None
    return [normalize_class(line) for line in read_text(path, "class list", ValueError).splitlines() if line.strip()]


def run_evaluation(dataset: Any, store: Any, descriptions: dict[str, list[str]], encoder: Any, protocol: str,
                   method: str = "cezsar", model: Any = None, runs: int | None = None,
                   split_file: str | Path | None = None, out_dir: str | Path | None = None,
                   emb: dict | None = None, std_ddof: int = STD_DDOF, **embed_kw: Any) -> dict:
    """Embed a ClassDataset (unless `emb` is given) and score one protocol: the results dict.

    Real datasets (classes = data/classes/<kind>.txt) use the tracked data/splits/ files, drawn in the
    official class order; any other dataset (SynthActions, a user's) keeps its split files under
    `<out_dir>/splits/` (out_dir required then). `embed_kw` goes to `embed_dataset` (alpha, beta,
    normalize_terms, n_objects, max_seconds, all_sentences, skip_missing). To score several protocols,
    call `embed_dataset` once and pass its dict as `emb`.
    """
    if emb is None:
        emb = embed_dataset(dataset, store, descriptions, encoder, method=method, model=model, **embed_kw)
    official = official_classes(dataset.kind)
    real = official is not None and sorted(official) == sorted(emb["classes"])
    if real:  # draw subsets in the official order so the files match write_official_splits
        old_col = {c: i for i, c in enumerate(emb["classes"])}
        perm = np.array([old_col[c] for c in official], np.int64)  # new column j = old column perm[j]
        inv = np.argsort(perm)  # old label -> new label
        emb = {**emb, "classes": official, "scores": emb["scores"][:, perm], "labels": inv[emb["labels"]]}
    elif out_dir is None:
        raise ValueError(f"dataset {dataset.kind!r} is not the official class list: give out_dir, where its "
                         "split files are written (data/splits/ holds only the real datasets' files)")
    proto = get_protocol(dataset.kind, protocol, len(emb["classes"]), runs, split_file)
    res = evaluate_protocol(emb, proto, split_path(proto, None if real else out_dir), std_ddof)
    # the settings the embedding was computed with, not the keywords of this call: a caller that passes a
    # precomputed `emb` need not repeat them (results.json once recorded max_seconds: null that way)
    used = {"alpha": 0.8, "beta": 0.2, "normalize_terms": True, "n_objects": 3, "max_seconds": None,
            "all_sentences": False, **embed_kw, **emb.get("settings", {})}
    alpha, beta = used["alpha"], used["beta"]
    if method == "clip":
        variant = VARIANTS[used["prompts"]]
    else:
        variant = "O" if method == "objects" else ("VE" if beta == 0 else "VE+O")
    trained = method == "cezsar"  # alpha and beta weigh Eq. 9's terms: no meaning for the baselines
    return {"dataset": dataset.kind, "method": method, "variant": variant,
            "alpha": alpha if trained else None, "beta": beta if trained else None,
            "normalize_terms": used["normalize_terms"], "n_objects": used["n_objects"],
            "max_seconds": used["max_seconds"], "all_sentences": used["all_sentences"],
            **{k: used[k] for k in ("released_objects", "released_descriptions") if used.get(k)},
            **{k: used[k] for k in ("prompts", "template", "clip_model", "video_embedding") if method == "clip"},
            "n_dataset_videos": len(dataset.videos), "n_videos": len(emb["video_ids"]),
            "skipped_videos": emb["skipped"], **res}


def write_official_splits(kinds: Sequence[str] = REAL_DATASETS, runs: int = DEFAULT_RUNS) -> list[Path]:
    """Write data/splits/<kind>_<protocol>.json for every random protocol of the real datasets from the
    official class lists data/classes/<kind>.txt (existing files are kept as they are)."""

    written = []
    for kind in kinds:
        path = CLASSES_DIR / f"{kind}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"official class list {path} is missing")
        classes = [normalize_class(line) for line in read_text(path, "class list", ValueError).splitlines()
                   if line.strip()]
        for name in PROTOCOLS[kind]:
            proto = get_protocol(kind, name, len(classes), runs)
            target = split_path(proto)
            load_or_create_splits(proto, classes, target)
            written.append(target)
    return written


if __name__ == "__main__":  # python -m cezsar.evaluation.protocols: (re)write the missing official split files
    for p in write_official_splits():
        print(p)
