"""The results schema: one record per (dataset, method, protocol), written alike by the notebooks
(`runs/<set>/results.json`, under "datasets" → kind → "methods") and by `cezsar evaluate --out` (docs/interfaces.md).

A record is `protocols.run_evaluation`'s result (protocol, variant, runs, top-1/top-5 mean and spread, chance,
split file, skipped videos) plus what it was computed from: `protocol_record`. `results_version` says which
layout a file has: 2 added the code version, the parameter set, training provenance, split hashes and skips;
3 made the per-protocol record one schema for notebooks and CLI (descriptions an object, the text model's id).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import cezsar  # the package itself, for its version (its names load lazily: no cycle)
from cezsar.config import PROJ_ROOT

RESULTS_VERSION = 3


def code_version() -> dict:
    """The package version and, in a git checkout, the commit (with "+dirty" for local changes)."""
    out = {"package": cezsar.__version__, "commit": None}
    try:
        commit = subprocess.run(["git", "-C", str(PROJ_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJ_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["commit"] = (commit + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def sha256_of(path: str | Path | None) -> str | None:
    """A file's SHA-256 (split files are recorded with theirs), None when there is no such file."""
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def descriptions_record(path: str | Path) -> dict:
    """Which class descriptions a result used: {"path", "layout" ("json" or "per-class .txt folder"), "meta"
    (the JSON file's "_meta" block, or None)}."""
    path = Path(path)
    meta = None
    if path.is_file() and path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = data.get("_meta") if isinstance(data, dict) else None
    return {"path": str(path), "layout": "per-class .txt folder" if path.is_dir() else "json", "meta": meta}


def protocol_record(res: dict, *, checkpoint: str | Path | None, trained_on: dict | None,
                    descriptions: str | Path, dataset_root: str | Path, features: str | Path | None,
                    text_model: str, text_model_id: str, backbone: str | None) -> dict[str, Any]:
    """One protocol's result in the shared schema: `res` (`protocols.run_evaluation`) and its inputs."""
    return {**res, "results_version": RESULTS_VERSION,
            "checkpoint": str(checkpoint) if checkpoint is not None else None, "trained_on": trained_on,
            "descriptions": descriptions_record(descriptions), "dataset_root": str(dataset_root),
            "features": str(features) if features is not None else None, "text_model": text_model,
            "text_model_id": text_model_id, "backbone": backbone,
            # the hash of the splits actually used, whatever else the split file holds (issue 31)
            "split_sha256": res.get("split_sha256") or sha256_of(res.get("split_file"))}


TRAINED_METHODS = ("VE", "VE+O", "CLIP+VE")  # rows whose numbers depend on the training seed


def seed_record(records: list[dict], seeds: list[int]) -> dict:
    """One protocol's result over training seeds (docs/decisions.md, 'Training seeds'): seed k's record is `records[k]`.

    The shared schema's keys keep seed `seeds[0]`'s record (its runs, split file, checkpoint), except
    "top1_mean" / "top5_mean", which become the mean over seeds of each seed's mean, and "top1_std" / "top5_std",
    the mean over seeds of each seed's spread over the protocol's class subsets. "seeds" holds the rest:
    {"seeds", "top1" and "top5" (each seed's mean), "top1_std" / "top5_std" (sample std over seeds; 0 with one
    seed), "n", "records" (every seed's whole record)}; "seed_top1" maps each seed to its top-1."""
    if len(records) != len(seeds) or not records:
        raise ValueError(f"seed_record: {len(records)} records for seeds {seeds}")
    out = dict(records[0])
    per: dict = {"seeds": list(seeds), "n": len(seeds), "records": list(records)}
    for key in ("top1", "top5"):
        if any(f"{key}_mean" not in r for r in records):  # a record without top-5 (e.g. built by hand)
            continue
        means = [float(r[f"{key}_mean"]) for r in records]
        spreads = [float(r.get(f"{key}_std") or 0.0) for r in records]
        m = sum(means) / len(means)
        per[key] = means
        per[f"{key}_std"] = (sum((x - m) ** 2 for x in means) / (len(means) - 1)) ** 0.5 if len(means) > 1 else 0.0
        out[f"{key}_mean"] = m
        out[f"{key}_std"] = None if records[0].get(f"{key}_std") is None else sum(spreads) / len(spreads)
    out["seeds"] = per
    out["seed_top1"] = {str(k): v for k, v in zip(seeds, per["top1"])}  # each seed's top-1, by seed (digests)
    return out
