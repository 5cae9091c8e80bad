"""The notebooks' stages, one function per notebook section (docs/interfaces.md): 00 (the data) and 01 (features
and objects) here; 02 in `cezsar.harness.pipeline_mining`, 03 in `cezsar.harness.pipeline_training`, 04 and 05 in
`cezsar.harness.pipeline_evaluation`.

Each stage takes a `Layout` (where everything lives for one parameter set) and the run's `Settings`
(cezsar.harness.params), skips the work that is already finished and valid (features, objects, triplet files,
checkpoints, split files), and returns a dict the notebook displays. The computation itself lives in the
stage modules (features, feature_objects, mining, train, protocols); the stage files only wire them together.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np

from cezsar.formats import datasets, manifest
from cezsar.base.atomic import write_json
from cezsar.encoders.backbones import get_encoder
from cezsar.formats.captions import read_activitynet_files
from cezsar.training.checkpoints import training_manifest
from cezsar.config import ExtractConfig
from cezsar.encoders.feature_objects import load_head, objects_from_features
from cezsar.encoders.extraction import extract
from cezsar.harness.layout import (TEST_SETS, Layout, have_objects, npy_ids, check_inputs, describe, head_weights,
                           layout_from, uses_objects)
from cezsar.harness.params import Settings, resolve, settings
from cezsar.formats.synthetic import generate

# Every notebook's first calls, with the stages of 00 and 01: (from cezsar.harness.layout / cezsar.harness.params)
# the parameter set and its layout.
__all__ = ["DATASET_NAMES", "TEST_SETS", "Layout", "check_inputs", "check_test_features", "describe",
           "extract_features", "find_video", "head_weights", "layout_from", "prepare_data", "resolve", "save_json",
           "settings", "test_extract_config", "training_features_manifest", "uses_objects"]

DATASET_NAMES = {"activitynet": "ActivityNet Captions", "ucf101": "UCF-101", "kinetics400": "Kinetics-400"}


# --- 00: data ----------------------------------------------------------------------------------
def prepare_data(lay: Layout, s: Settings) -> dict:
    """Notebook 00: generate SynthActions (embedded; skipped when the same seed and size exist) or check
    every real input up front, then a summary of each part."""

    out: dict = {}
    if lay.mode == "embedded":
        root = lay.data_root
        stamp = root / "synthactions.json"
        same = stamp.exists() and {k: json.loads(stamp.read_text()).get(k) for k in ("seed", "size")} == \
            {"seed": s.synth_seed, "size": s.synth_size}
        if not same or not lay.captions[0].exists():
            out["generated"] = generate(root, seed=s.synth_seed, size=s.synth_size)
        else:
            out["generated"] = f"reused {root} (seed {s.synth_seed}, size {s.synth_size})"
    out["inputs"] = check_inputs(lay, s)
    caps = read_activitynet_files(lay.captions)
    out["activitynet"] = {"files": [str(c) for c in lay.captions], "videos": len(caps.durations),
                          "segments": len(caps.segments), "problems": dict(caps.problems)}
    for kind in TEST_SETS:
        ds = datasets.load_dataset(kind, lay.roots[kind])
        desc = datasets.read_descriptions(lay.descriptions[kind])
        missing = [c for c in ds.classes if c not in desc]
        if missing:
            raise ValueError(f"{lay.descriptions[kind]}: no description for {len(missing)} class(es), e.g. "
                             f"{missing[:10]}")
        out[kind] = {"classes": len(ds.classes), "videos": len(ds.videos), "problems": dict(ds.problems),
                     "descriptions": str(lay.descriptions[kind])}
    return out


# --- 01: features and objects ------------------------------------------------------------------
def extract_features(lay: Layout, s: Settings) -> dict:
    """Notebook 01: 1-fps features and objects for the training videos and both test sets.

    A part whose feature folder already holds a stack for every video is used as it is (the released
    features); videos without a stack are extracted when their files exist, and listed otherwise. Objects
    missing from a folder are computed from the features with the backbone's own head (cezsar.encoders.feature_objects).
    """

    cfg = ExtractConfig(backbone=s.backbone, weights=str(lay.weights) if lay.weights else None,
                        image_size=s.image_size, released_preprocess=s.released_preprocess,
                        released_sampling=s.released_sampling)
    reports: dict = {}
    jobs = []
    if lay.train_videos is not None and lay.train_videos.is_dir():
        caps = read_activitynet_files(lay.captions)
        vids = [datasets.Video(v, find_video(lay.train_videos, v), "") for v in sorted(caps.durations)]
        jobs.append(("activitynet", vids, lay.train_features))
    for kind in TEST_SETS:
        vids = datasets.load_dataset(kind, lay.roots[kind]).videos
        have = npy_ids(lay.test_features[kind])
        todo = [v for v in vids if v.video_id not in have and v.path is not None]
        if todo or not have:
            jobs.append((kind, vids, lay.test_features[kind]))
        else:
            reports[kind] = {"videos": len(vids), "done": len(have & {v.video_id for v in vids}),
                             "encoded": 0, "note": "feature folder used as it is",
                             "without_features": len([v for v in vids if v.video_id not in have])}
    encoders: dict = {}
    test_cfg = test_extract_config(lay, s, cfg)
    for name, vids, out in jobs:
        job_cfg = cfg if name == "activitynet" else test_cfg
        key = (job_cfg.image_size, job_cfg.released_preprocess)
        if key not in encoders:
            encoders[key] = get_encoder(job_cfg.backbone, job_cfg.weights, device=s.device, image_size=key[0],
                                        batch=job_cfg.batch, preprocess="released" if key[1] else "paper")
        rep = extract(vids, out, job_cfg, encoder=encoders[key], progress=True)
        reports[name] = {k: rep[k] for k in ("videos", "done", "encoded", "reused", "frames", "seconds",
                                             "frames_per_s") if k in rep}
        reports[name]["skipped"] = rep.get("skipped", [])
    if s.use_objects != "off":
        src = head_weights(lay, s)
        head = None
        for part in ("activitynet", *TEST_SETS):
            if have_objects(lay, part):
                continue
            if src is None:
                reports.setdefault(part, {})["objects"] = "off: no head weights (backbone_weights)"
                continue
            head = head or load_head(None if src == "default" else src, s.backbone)
            feats, out = lay.folders(part)
            rep = objects_from_features(feats, head, out, device=s.device, progress=True)
            reports.setdefault(part, {})["objects"] = {k: rep[k] for k in ("videos", "computed", "reused",
                                                                           "skipped", "label_space", "out")}
    reports["objects_used"] = uses_objects(lay, s)
    return reports


def training_features_manifest(lay: Layout) -> dict | None:
    """The manifest of the training features (cezsar.formats.manifest): their manifest.json, or the built-in one the
    parameter set declares (`anet_features_manifest`); None when neither exists (yet)."""
    if not lay.train_features.is_dir():
        return manifest.BUILT_IN.get(lay.train_manifest or "")
    return manifest.read(lay.train_features, lay.train_manifest)


def test_extract_config(lay: Layout, s: Settings, cfg: ExtractConfig) -> ExtractConfig:
    """The ExtractConfig of the test sets: `cfg`, or with `match_training_features` the preprocessing, frame
    sampling and image size of the training features' manifest (paper mode: the released BiT features' BGR,
    resize 256 + crop 224 and 25-fps linspace sampling), so that the model scores vectors of its own kind."""
    trained = training_features_manifest(lay) if s.match_training_features else None
    if trained is None:
        return cfg
    return dataclasses.replace(
        cfg, released_preprocess=str(trained.get("preprocess", "")).startswith("released-"),
        released_sampling=trained.get("sampling") == manifest.SAMPLING["released"],
        image_size=int(trained.get("image_size") or cfg.image_size))


def check_test_features(store, meta: dict, folder: Path) -> None:
    """Refuse test features made another way than the checkpoint's training features (ManifestMismatch, one
    line naming both values); a folder or checkpoint from before manifests gives a warning instead."""
    for line in manifest.check_against_training(getattr(store, "manifest", None), training_manifest(meta),
                                                str(folder)):
        warnings.warn(line, stacklevel=2)


def find_video(folder: Path, video_id: str) -> Path | None:
    """The video file of `video_id` in `folder` (.mp4, .mkv, .webm or .avi), None when there is none."""
    for ext in (".mp4", ".mkv", ".webm", ".avi"):
        if (folder / f"{video_id}{ext}").exists():
            return folder / f"{video_id}{ext}"
    return None  # extract() reports it as skipped with the reason



def save_json(obj: dict, path: Path) -> Path:
    """Atomic JSON write of a results file (numpy values and paths converted)."""
    return write_json(path, obj, indent=2, default=_jsonable)


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

