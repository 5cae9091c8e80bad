"""The inputs of a training run: which feature rows a triplet's visual side reads (its window, paper §3.4 or the
released code's) and the run's data on the device (`prepare`: checks, then the feature bank of
`cezsar.training.featurebank`).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from cezsar.base import distributed
from cezsar.config import FastPathConfig, ModelConfig
from cezsar.training.featurebank import TripletTensors, build_bank, to_tensors, window_index


RELEASED_SECONDS = 16.0  # the released code's visual input: the first 16 s of the captioned segment


def segment_bounds(captions) -> np.ndarray:
    """(S, 2) float64 [start, end] of every caption segment, in the order `mining.mine` numbers them
    (`TripletSet.segment`)."""
    return np.array([[s.start, s.end] for s in captions.segments], dtype=np.float64).reshape(-1, 2)


def visual_windows(triplets, window: str, bounds: np.ndarray | None = None):
    """The triplets with the visual input `window` asks for (TrainConfig.window).

    "paper" (paper §3.4): the mined window of up to 10 s, as mined. "released": the first 16 rows of the
    triplet's captioned segment as the released loader sliced them, `features[int(start):int(end)][:16]`
    (both bounds truncated, not ceil'd: a segment [3.7, 25.2) gives rows 3 .. 18), whatever window the objects
    came from; needs `triplets.segment` and the segments' `bounds`. Returns a shallow copy with new start/end
    arrays (whole seconds, so `featurebank.window_index` takes exactly those rows).
    """
    if window == "paper":
        return triplets
    if window != "released":
        raise ValueError(f"unknown window {window!r} (expected 'paper' or 'released')")
    seg = getattr(triplets, "segment", None)
    if seg is None or bounds is None:
        raise ValueError("window='released' (first 16 s of the segment) needs the triplets' segment ids and the "
                         "segments' bounds: fit(..., segment_bounds=train_inputs.segment_bounds(captions)); "
                         "`cezsar train --window released --captions FILE`")
    seg = np.asarray(seg, np.int64)
    bounds = np.asarray(bounds, np.float64)
    if seg.size and (seg.min() < 0 or seg.max() >= len(bounds)):
        raise ValueError(f"triplet segment id out of range of the {len(bounds)} segment bounds (other captions?)")
    out = copy.copy(triplets)
    start = np.trunc(bounds[seg, 0])  # int() of the released loader (timestamps are >= 0: floor)
    out.start = start.astype(np.float32)
    out.end = np.minimum(np.trunc(bounds[seg, 1]), start + RELEASED_SECONDS).astype(np.float32)
    return out


# --- the whole run -------------------------------------------------------------------------------
def prepare(triplets, store, text_emb: np.ndarray, model_cfg: ModelConfig, fast: FastPathConfig, cache: Path,
            device: torch.device, bank_on_device: torch.dtype | None = None) -> tuple[TripletTensors, dict]:
    """Validate the inputs, build (or reuse) the feature bank and move everything to `device` (the bank in
    `bank_on_device` on a GPU, when given)."""
    n = len(triplets.video)
    for name in ("start", "end", "pos", "neg", "val"):
        if len(getattr(triplets, name)) != n:
            raise ValueError(f"triplets: array {name!r} has {len(getattr(triplets, name))} rows, 'video' has {n}")
    if n == 0:
        raise ValueError("triplets: the set is empty")
    if text_emb.shape[0] != len(triplets.sentences):
        raise ValueError(f"text_emb has {text_emb.shape[0]} rows for {len(triplets.sentences)} triplet sentences")
    if store.dim != model_cfg.feat_dim or text_emb.shape[1] != model_cfg.text_dim:
        raise ValueError(f"dims: features {store.dim}, text {text_emb.shape[1]}; model expects "
                         f"{model_cfg.feat_dim}, {model_cfg.text_dim}")
    with distributed.main_first():  # under torchrun rank 0 builds the cached bank, the others then reuse it
        bank, offsets = build_bank(store, list(triplets.video_ids), cache / f"featurebank-{fast.bank_dtype}.npy",
                                   fast.bank_dtype)
    rows, mask, win, stats = window_index(np.asarray(triplets.video), np.asarray(triplets.start),
                                          np.asarray(triplets.end), offsets, model_cfg.max_len)
    data = to_tensors(bank, rows, mask, win, np.asarray(triplets.pos), np.asarray(triplets.neg),
                      np.asarray(text_emb, dtype=np.float32), device, bank_on_device)
    return data, {**stats, "triplets": n, "videos": len(triplets.video_ids), "bank_rows": int(offsets[-1])}
