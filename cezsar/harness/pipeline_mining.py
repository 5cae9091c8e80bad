"""Notebook 02's stage: the triplet file of a parameter set and τ (paper §3.4), mined once and reused while its
config and every input stay the same (docs/interfaces.md). The mining itself is `cezsar.triplet_mining.mine`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

from cezsar import config
from cezsar.formats.captions import Captions, read_activitynet_files
from cezsar.config import MiningConfig
from cezsar.harness.layout import Layout, uses_objects
from cezsar.triplet_mining.mine import mine
from cezsar.harness.params import Settings, stage_configs
from cezsar.encoders.text import SentenceEncoder
from cezsar.formats.triplets import TripletSet


def _file_key(path: Path) -> dict:
    """Identity of an input file: path, size and content hash (a changed file changes the key)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": h.hexdigest()[:16]}


def _folder_key(folder: Path) -> dict:
    """Identity of a feature or objects folder: its stacks' ids, sizes and times, hashed."""
    h = hashlib.sha256()
    n = 0
    for p in sorted(folder.glob("*.np[yz]")) if folder.is_dir() else []:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        n += 1
    return {"path": str(folder), "files": n, "hash": h.hexdigest()[:16]}


def mining_inputs(lay: Layout, s: Settings, objects: bool) -> dict:
    """Everything a triplet file depends on besides its MiningConfig (the reuse key)."""

    return {"captions": [_file_key(c) for c in lay.captions], "text_model": SentenceEncoder(s.text_model).model_id,
            "features": _folder_key(lay.train_features),
            "objects": _folder_key(lay.train_objects) if objects else None}


def mining_config(s: Settings, tau: float | None = None, objects: bool = True) -> MiningConfig:
    """The MiningConfig of a parameter set, its released-code switches included (object positives only when
    objects are used)."""
    cfg = stage_configs(s.values)["mine"]
    return dataclasses.replace(cfg, tau=s.tau if tau is None else tau, seed=s.seed,
                               object_positives=s.object_positives if objects else 0)


def training_captions(lay: Layout, store) -> tuple:
    """The captions mined from: every file of the set, less the videos without training features; returns
    (Captions, the left-out video ids). Mining numbers its segments in this order (`TripletSet.segment`)."""
    caps = read_activitynet_files(lay.captions)
    have = set(store.ids)
    lacking = sorted(v for v in caps.durations if v not in have)
    if lacking:
        caps = Captions([g for g in caps.segments if g.video_id in have],
                                 {v: d for v, d in caps.durations.items() if v in have}, caps.problems, caps.examples)
    return caps, lacking


def mine_triplets(lay: Layout, s: Settings, tau: float | None = None) -> dict:
    """Notebook 02: the triplet file for τ (reused when its config and every input are the same); its summary.

    Segments of videos without training features are left out and counted ("videos_without_features")."""

    objects = uses_objects(lay, s)
    cfg = mining_config(s, tau, objects)
    path = lay.triplets(cfg.tau)
    key = {"config": config.to_dict(cfg), "inputs": mining_inputs(lay, s, objects)}
    if path.exists():
        old = TripletSet.load(path)
        if {k: old.summary.get(k) for k in key} == key:
            return {"path": str(path), "reused": True, **old.summary}
        set_aside(path)  # mined with other settings or inputs: keep it, but mine anew
    store = lay.store("activitynet")
    caps, lacking = training_captions(lay, store)
    if lacking:
        print(f"NOTE: {len(lacking)} of {len(lacking) + len(caps.durations)} caption videos have no training "
              f"features and are left out (e.g. {lacking[:3]})")
    if not caps.segments:
        raise ValueError(f"no caption segment of {[str(c) for c in lay.captions]} has features in "
                         f"{lay.train_features}")
    encoder = SentenceEncoder(s.text_model)
    # a progress bar for the sentences not cached yet (≈100 k at the paper's scale: minutes with a 768-d SBERT)
    trip = mine(caps, lambda ss: encoder.encode(ss, progress=True), store if objects else None, cfg)
    trip.text_model = trip.summary["text_model"] = encoder.model_id
    trip.summary.update(key, videos_without_features=len(lacking), videos_without_features_examples=lacking[:20])
    path.parent.mkdir(parents=True, exist_ok=True)
    trip.save(path)
    return {"path": str(path), "reused": False, **trip.summary}


def set_aside(path: Path) -> None:
    """Rename a stale result (other settings) to `<name>.stale-<time>` rather than deleting finished work."""
    path.rename(path.with_name(f"{path.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}"))

