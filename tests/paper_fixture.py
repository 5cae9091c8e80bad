"""A paper-shaped fixture: the real annotation files with random features in the released layout.

Built from the real ActivityNet Captions, UCF-101 and Kinetics-400 annotation files (reference data, never
committed): released-layout stacks `<video_id>.npy`, float32 (T, 4096) with T = ceil(duration) (one row per
second, as the released BiT features), for a few hundred real ActivityNet ids taken from train.json, val_1.json
and val_2.json; UCF-101 stacks for the real 101 classes (a couple of clips each, authors' ucf101_dataset.json
form); Kinetics-400 stacks for the real 400 classes (test.csv form, clip ids <ytid>_<start:06d>_<end:06d>); and a
BiT head in the official .npz key layout with random weights (1,000 classes instead of 21,843 to stay small: the
loader takes the sizes from the file). A few videos are left without features on purpose, so the run must skip
and count them. Used by tests/test_paper_fixture.py and benchmarks/bench_paper_stages.py.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

# beside the repository; CEZSAR_REFERENCE_DATA points elsewhere (a git worktree of the repository)
REFERENCE = Path(os.environ.get("CEZSAR_REFERENCE_DATA") or Path(__file__).resolve().parents[2] / "shared" / "reference-data")
DIM = 4096  # BiT-M-R152x2 pre-logits, as released
HEAD_CLASSES = 1000  # reduced head (BiT-S size); the real BiT-M head has 21,843


def available(reference: Path = REFERENCE) -> bool:
    need = ["activitynet_captions/train.json", "activitynet_captions/val_1.json", "activitynet_captions/val_2.json",
            "ucf101/ucf101_dataset.json", "kinetics400/test.csv"]
    return all((reference / n).is_file() for n in need)


def _stack(rng: np.random.Generator, t: int) -> np.ndarray:
    # non-negative like pooled post-ReLU features; scale near BiT's pre-logits
    return np.abs(rng.standard_normal((max(1, t), DIM), dtype=np.float32)) * np.float32(0.5)  # (T, 4096)


def build(out: Path, train_videos: int = 100, val_videos: int = 20, ucf_per_class: int = 2,
          k400_per_class: int = 1, max_duration: float = 60.0, seed: int = 0, reference: Path = REFERENCE) -> dict:
    """Write the fixture under `out`; returns its paths and counts (see module doc)."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    anet = out / "activitynet"
    feats = anet / "features_bit"
    feats.mkdir(parents=True, exist_ok=True)
    counts: dict = {}
    captions = []
    chosen_all: dict[str, float] = {}
    for name, n in (("train", train_videos), ("val_1", val_videos), ("val_2", val_videos)):
        data = json.loads((reference / "activitynet_captions" / f"{name}.json").read_text())
        ids = [v for v in sorted(data) if float(data[v]["duration"]) <= max_duration]
        if name == "val_2":  # the same videos as val_1 where they exist (the two annotations of one set)
            ids = [v for v in ids if v in chosen_all] or ids
        pick = ids[:n]
        sub = {v: data[v] for v in pick}
        (anet / f"{name}.json").write_text(json.dumps(sub))
        captions.append(anet / f"{name}.json")
        chosen_all.update({v: float(data[v]["duration"]) for v in pick})
        counts[f"{name}_videos"] = len(pick)
    missing_train = sorted(chosen_all)[:2]  # two caption videos without features: must be skipped and counted
    for vid, dur in sorted(chosen_all.items()):
        if vid not in missing_train:
            np.save(feats / f"{vid}.npy", _stack(rng, math.ceil(dur)))
    counts["train_features"] = len(chosen_all) - len(missing_train)
    counts["train_without_features"] = len(missing_train)

    ucf = json.loads((reference / "ucf101" / "ucf101_dataset.json").read_text())
    ucf_root = out / "ucf101"
    ucf_feats = out / "features" / "ucf101"
    ucf_root.mkdir(parents=True, exist_ok=True)
    ucf_feats.mkdir(parents=True, exist_ok=True)
    sub = {c: ids[:ucf_per_class] for c, ids in ucf.items()}
    (ucf_root / "ucf101_dataset.json").write_text(json.dumps(sub))
    ucf_ids = [i for ids in sub.values() for i in ids]
    ucf_missing = ucf_ids[-1:] if ucf_per_class > 1 else []  # one test clip without features
    for vid in ucf_ids:
        if vid not in ucf_missing:
            np.save(ucf_feats / f"{vid}.npy", _stack(rng, int(rng.integers(4, 9))))
    counts.update(ucf101_classes=len(sub), ucf101_videos=len(ucf_ids), ucf101_without_features=len(ucf_missing))

    k_root = out / "kinetics400"
    k_feats = out / "features" / "kinetics400"
    k_root.mkdir(parents=True, exist_ok=True)
    k_feats.mkdir(parents=True, exist_ok=True)
    per: dict[str, int] = {}
    rows = []
    with open(reference / "kinetics400" / "test.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        for row in reader:
            if per.get(row["label"], 0) < k400_per_class:
                per[row["label"]] = per.get(row["label"], 0) + 1
                rows.append(row)
    with open(k_root / "test.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    for row in rows:
        s, e = int(float(row["time_start"])), int(float(row["time_end"]))
        np.save(k_feats / f"{row['youtube_id']}_{s:06d}_{e:06d}.npy", _stack(rng, max(1, e - s)))
    counts.update(kinetics400_classes=len(per), kinetics400_videos=len(rows))

    head = out / "weights" / "BiT-M-R152x2-head.npz"
    head.parent.mkdir(parents=True, exist_ok=True)
    np.savez(head, **{"resnet/head/conv2d/kernel": (rng.standard_normal((1, 1, DIM, HEAD_CLASSES), dtype=np.float32)
                                                    * np.float32(0.05)),
                      "resnet/head/conv2d/bias": np.zeros(HEAD_CLASSES, np.float32)})
    return {"captions": [str(c) for c in captions], "train_features": str(feats), "ucf101_root": str(ucf_root),
            "ucf101_features": str(ucf_feats), "kinetics400_root": str(k_root), "kinetics400_features": str(k_feats),
            "head": str(head), "counts": counts, "missing_train": missing_train, "ucf_missing": ucf_missing}


def paper_params(fx: dict, work: Path, figures: Path, **overrides) -> dict:
    """params/paper.yaml pointed at the fixture, with small overrides (1 epoch, 2 runs, one τ, MiniLM)."""
    import yaml

    from cezsar.config import PROJ_ROOT

    p = yaml.safe_load((PROJ_ROOT / "params" / "paper.yaml").read_text())
    p.update(anet_captions=",".join(fx["captions"]), anet_features=fx["train_features"],
             ucf101_root=fx["ucf101_root"], ucf101_features=fx["ucf101_features"],
             kinetics400_root=fx["kinetics400_root"], kinetics400_features=fx["kinetics400_features"],
             backbone_weights=fx["head"], work_dir=str(work), figures_dir=str(figures), data_root=str(work.parent),
             text_model="minilm", epochs=1, runs=2, tau_values="0.8", device="cpu")
    p.update(overrides)
    return p
