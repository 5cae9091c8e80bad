"""SynthActions: the embedded dataset, generated offline from a seed in the real formats (docs/decisions.md §6).

Actors are real photographs shipped with scikit-image (a tabby cat, a coffee cup, a cameraman behind a
tripod, a moped) so that the ImageNet object branch (Eq. 9) recognises real objects; actions are motions a
1-frame-per-second stack shows (grow, shrink, rise, fall, appear, vanish, slide left/right). The actors,
actions and their words are `cezsar.formats.synthetic_world`, the clips `cezsar.formats.synthetic_render`; this module
plans the dataset from a seed and writes it.

Zero-shot by construction: the 32 (actor, action) pairs are split so that every actor and every action is
captioned in training, while the test classes are exactly the pairs never captioned; class names and
description sentences use other word forms than the captions (checked in `generate`).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import string
from functools import partial
from pathlib import Path

import numpy as np

from cezsar.base.atomic import write_json, write_text
from cezsar.formats.datasets import kinetics_clip_name, normalize_class
from cezsar.formats.synthetic_render import Renderer, render, write_video
from cezsar.formats.synthetic_world import caption, class_names, descriptions, split_combos

SIZES = {  # training videos (3 segments each), clips per UCF class, clips per Kinetics class
    "small": {"train_videos": 6, "ucf_clips": 1, "kinetics_clips": 1},
    "default": {"train_videos": 150, "ucf_clips": 10, "kinetics_clips": 10},
}


def _ident(rng: np.random.Generator, used: set[str]) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    while True:
        ident = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 11))
        if ident not in used:
            used.add(ident)
            return ident


def _plan(seed: int, size: str) -> tuple[dict, list[tuple[str, int, float, list]]]:
    """Every annotation file's content and the list of videos to render, from the seed alone."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
    n = SIZES[size]
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    jobs: list[tuple[str, int, float, list]] = []  # (relative path, render seed, duration, segments)
    train, test = split_combos()
    # every training pair gets at least one caption; the rest are drawn in a seeded order
    slots = [train[k % len(train)] for k in range(3 * n["train_videos"])]
    slots = [slots[k] for k in rng.permutation(len(slots))]
    anet: dict[str, dict] = {}
    for v in range(n["train_videos"]):
        vid = "v_" + _ident(rng, used)
        t, segs, sents = float(rng.uniform(0.5, 2.0)), [], []
        for combo in slots[3 * v:3 * v + 3]:
            start, end = round(t, 2), round(t + rng.uniform(8.0, 10.0), 2)
            segs.append((start, end, combo))
            sents.append(caption(rng, combo))
            t = end + rng.uniform(1.0, 3.0)  # empty scene between segments, as in untrimmed video
        duration = round(segs[-1][1] + rng.uniform(1.0, 2.0), 2)
        anet[vid] = {"duration": duration, "timestamps": [[s, e] for s, e, _ in segs], "sentences": sents}
        jobs.append((f"activitynet/videos/{vid}.mp4", int(rng.integers(2**31)), duration, segs))
    ucf = class_names("ucf101", test)
    testlist = []
    for name, combo in ucf.items():
        for k in range(n["ucf_clips"]):
            clip = f"v_{name}_g{k // 2 + 1:02d}_c{k % 2 + 1:02d}.avi"
            testlist.append(f"{name}/{clip}")
            jobs.append((f"ucf101/{name}/{clip}", int(rng.integers(2**31)), 8.0, [(0.0, 8.0, combo)]))
    # the Kinetics-form set leaves out the sliding pairs: 12 classes, a different protocol from UCF's 16
    kin = class_names("kinetics400", [c for c in test if c[1] not in ("left", "right")])
    rows = []
    for name, combo in kin.items():
        for _ in range(n["kinetics_clips"]):
            ytid, start = _ident(rng, used), int(rng.integers(0, 300))
            rows.append((ytid, f"{name},{ytid},{start},{start + 10},test"))
            jobs.append((f"kinetics400/clips/{kinetics_clip_name(ytid, start, start + 10)}",
                         int(rng.integers(2**31)), 10.0, [(0.0, 10.0, combo)]))
    meta = {"source": "SynthActions (cezsar.formats.synthetic)", "seed": seed, "size": size}
    files = {
        "activitynet/train.json": anet,
        "ucf101/classInd.txt": "".join(f"{i} {name}\n" for i, name in enumerate(ucf, 1)),
        "ucf101/testlist01.txt": "".join(f"{line}\n" for line in testlist),
        "kinetics400/test.csv": "label,youtube_id,time_start,time_end,split\n"
        + "".join(f"{row}\n" for _, row in sorted(rows)),  # sorted by youtube id like the real file
        "descriptions/ucf101.json": {"_meta": meta, **{k: descriptions(c) for k, c in ucf.items()}},
        "descriptions/kinetics400.json": {"_meta": meta, **{k: descriptions(c) for k, c in kin.items()}},
        "groups.json": {"ucf101": _groups(ucf), "kinetics400": _groups(kin)},
        "synthactions.json": {**meta, "train_combos": [list(c) for c in train],
                              "classes": {"ucf101": {k: list(c) for k, c in ucf.items()},
                                          "kinetics400": {k: list(c) for k, c in kin.items()}}},
    }
    return files, jobs


def _groups(names: dict[str, tuple[str, str]]) -> dict[str, list]:
    """Confusable classes for Figs. 1 and 3: same actor with opposite actions (the Horse Riding vs Horse
    Race analogue) and the same action on different actors."""
    by = {combo: name for name, combo in names.items()}
    opposite = {"grow": "shrink", "rise": "fall", "appear": "vanish", "left": "right"}
    pairs = [[by[(a, b)], by[(a, c)]] for (a, b) in by for c in [opposite.get(b)] if (a, c) in by]
    hard = [n for n, (a, b) in names.items() if b in ("appear", "vanish", "grow", "shrink")]
    tsne = [n for n, (a, b) in names.items() if a in ("cat", "cup") and b in ("appear", "vanish")]
    return {"tsne": tsne, "hard": hard, "pairs": pairs}


def check_zero_shot(files: dict) -> None:
    """Raise if a test class name or description sentence occurs in a training caption (docs/decisions.md §6)."""

    captions = [s.lower() for v in files["activitynet/train.json"].values() for s in v["sentences"]]
    joined = "\n".join(captions)
    for key in ("descriptions/ucf101.json", "descriptions/kinetics400.json"):
        for name, sentences in files[key].items():
            if name == "_meta":
                continue
            if normalize_class(name) in joined:
                raise AssertionError(f"test class {name!r} occurs in a training caption")
            for s in sentences:
                if s.lower() in captions:
                    raise AssertionError(f"description {s!r} is a training caption")


def _render_job(job: tuple[str, int, float, list], out: Path) -> None:
    rel, seed, duration, segs = job
    write_video(out / rel, render(_renderer(), seed, duration, segs))


_RENDERER: Renderer | None = None


def _renderer() -> Renderer:
    global _RENDERER  # one per process: the resized-actor cache is reused across videos
    if _RENDERER is None:
        _RENDERER = Renderer()
    return _RENDERER


def generate(out: str | Path, seed: int = 0, size: str = "default", workers: int | None = None) -> dict:
    """Write SynthActions under `out` (docs/decisions.md §6) and return a summary (counts, seconds of video, bytes).

    The same seed gives byte-identical annotation files and identical frames; `workers` processes render
    videos in parallel (each video has its own seed, so the order does not matter).
    """
    out = Path(out)
    files, jobs = _plan(seed, size)
    check_zero_shot(files)
    if (out / "synthactions.json").exists():  # ours from an earlier run: drop clips of another size/seed
        planned = {out / job[0] for job in jobs}
        for folder in ("activitynet/videos", "ucf101", "kinetics400/clips"):
            for p in (out / folder).rglob("*") if (out / folder).is_dir() else []:
                if p.suffix in (".mp4", ".avi") and p not in planned:
                    p.unlink()
    for rel, content in files.items():
        if isinstance(content, str):
            write_text(out / rel, content)
        else:
            write_json(out / rel, content, ensure_ascii=False)
    if workers is None:  # below ~50 videos, starting processes costs more than it saves
        workers = min(2, os.cpu_count() or 1) if len(jobs) > 50 else 1
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            pool.map(partial(_render_job, out=out), jobs, chunksize=4)
    else:
        for job in jobs:
            _render_job(job, out)
    parts = {"activitynet": [j for j in jobs if j[0].startswith("activitynet")],
             "ucf101": [j for j in jobs if j[0].startswith("ucf101")],
             "kinetics400": [j for j in jobs if j[0].startswith("kinetics400")]}
    return {
        "out": str(out), "seed": seed, "size": size,
        "videos": {k: len(v) for k, v in parts.items()},
        "seconds": {k: round(sum(j[2] for j in v), 2) for k, v in parts.items()},
        "segments": sum(len(v["sentences"]) for v in files["activitynet/train.json"].values()),
        "classes": {"ucf101": len(files["descriptions/ucf101.json"]) - 1,
                    "kinetics400": len(files["descriptions/kinetics400.json"]) - 1},
        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
    }
