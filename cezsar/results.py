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

RESULTS_VERSION = 3


def code_version() -> dict:
    """The package version and, in a git checkout, the commit (with "+dirty" for local changes)."""
    import cezsar  # the package itself, for its version; here, not at the top, as cezsar imports its modules
    from cezsar.config import PROJ_ROOT

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
            "text_model_id": text_model_id, "backbone": backbone, "split_sha256": res.get("split_sha256") or sha256_of(res.get("split_file"))}
