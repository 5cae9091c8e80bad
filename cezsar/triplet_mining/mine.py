"""Hard negative mining: (video window, positive sentence, negative sentence) triplets (paper §3.4, docs/fidelity.md).

Per captioned segment, `windows_per_segment` seeded random windows of up to `window_seconds`; each window's
positives are the caption plus, when object data exists, the `object_positives` object sentences of its
top objects most similar to the caption. Per positive, `n_negatives` caption sentences are drawn uniformly
without replacement from the admissible set. Rule "released" (default, the released code's): a candidate is
admissible when cos(pos, cand) > 1 - tau and it is not the same sentence (exact text) — hard, related
negatives. Rule "different" (a literal reading of the paper's "sufficiently different"): cos <= 1 - tau.
Switches: `exclude_same_video` (no candidate that captions the anchor's video), `max_sim` (drop cos >=
max_sim, a paraphrase guard). A negative is never the caption of its own segment.

Released-code and paper-wording switches (docs/fidelity.md), off by default: `split="triplet"` (a random
triplet-level validation split), `draw="released"` (negatives with replacement from the released pool: the
list of positive entries, one per window and positive sentence), `released_objects` (all-sense definition
fragments of the top-5 objects over 10 s from a random whole second of the segment, drawn as the released
code), `far_from_all` (a negative passes the rule against its own positive and is far, cos <= 1 - tau, from
the other positives of its window) and `object_tau` (object positives must pass the similarity rule too).
The draw and far-from-all switches use `_switched_negatives`, an exact blockwise path of their own.

Strategy "exact": the similarity work is blockwise, `block` unique positive sentences x all candidates at
a time, so memory is O(block * candidates); its draws are vectorised (rejection draws in flat arrays where
admissible candidates are plentiful, masked sampling with random keys for the rest), no Python loop over
pairs. Strategy "sample" (`mining_sample`, the default above AUTO_EXACT_MAX candidates) scores random
candidate pools only, as the released per-pair loop draws random partners.
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import numpy as np

from cezsar.config import MiningConfig, to_dict
from cezsar.triplet_mining.rules import (HIST_EDGES, embed_sentences, normalise_rows, ranges, summary_stats, admissible, draw_negatives,
                                 far_from_others, random_windows, released_starts, triplet_split, video_split)
from cezsar.triplet_mining.sample import pick_strategy, sample_negatives
from cezsar.encoders.objects import definition_fragments, object_sentences, released_positive_texts, window_objects
from cezsar.formats.triplets import TripletSet


# --- the exact strategy -----------------------------------------------------------------------------------
class _ExactMiner:
    """The exact blockwise path over a subset of units: `block` positive sentences x all candidates at a time."""

    def __init__(self, emb: np.ndarray, n_cand: int, u_pos: np.ndarray, banned: np.ndarray, u_vid: np.ndarray,
                 video_of_cand: tuple | None, cfg: MiningConfig, rng: np.random.Generator) -> None:
        self.emb, self.n_cand, self.u_pos, self.banned, self.u_vid = emb, n_cand, u_pos, banned, u_vid
        self.video_of_cand, self.cfg, self.rng = video_of_cand, cfg, rng
        self.stride = max(1, n_cand // 1024)  # pair histogram over every stride-th candidate

    def __call__(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """-> neg (k, n) candidate ids (-1 = none), exact admissible count (k,), pair and negative histograms."""
        cfg, n, n_cand, emb = self.cfg, self.cfg.n_negatives, self.n_cand, self.emb
        u_pos, banned, u_vid = self.u_pos[units], self.banned[units], self.u_vid[units]
        pos_rows = np.unique(u_pos)
        row_of_unit = np.searchsorted(pos_rows, u_pos)
        by_row = np.argsort(row_of_unit, kind="stable")
        bounds = np.searchsorted(row_of_unit[by_row], np.arange(0, len(pos_rows) + cfg.block, cfg.block))
        cand = emb[:n_cand]  # (C, d)
        cand_ids = np.arange(n_cand)
        neg = np.full((len(units), n), -1, dtype=np.int64)
        count = np.zeros(len(units), dtype=np.int64)
        hist = np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
        neg_hist = np.zeros_like(hist)
        stride = self.stride
        for bi, b0 in enumerate(range(0, len(pos_rows), cfg.block)):
            rows = pos_rows[b0:b0 + cfg.block]
            sim = emb[rows] @ cand.T  # (B, C)
            mask = admissible(sim, rows, None, cfg.tau, cfg.rule, cfg.max_sim)  # candidates = ids 0..C-1
            # pair histogram over every `stride`-th candidate: exact up to 2k candidates, a sample beyond
            bins = np.clip(((sim[:, ::stride] + 1.0) * 10.0).astype(np.intp), 0, len(hist) - 1)  # (B, C/stride)
            bins[rows[:, None] == cand_ids[None, ::stride]] = -1  # a sentence against itself is not a pair
            hist += np.bincount(bins[bins >= 0], minlength=len(hist))
            del bins
            ub = by_row[bounds[bi]:bounds[bi + 1]]  # units whose positive is in this block
            if len(ub) == 0:
                continue
            local = row_of_unit[ub] - b0
            nb, cb = draw_negatives(mask, local, n, self.rng, banned[ub],
                                    u_vid[ub] if self.video_of_cand is not None else None, self.video_of_cand)
            neg[ub], count[ub] = nb, cb
            got = nb >= 0
            ns = sim[np.repeat(local, n).reshape(-1, n)[got], nb[got]]
            neg_hist += np.histogram(ns, bins=HIST_EDGES)[0]
        return neg, count, hist, neg_hist


def _switched_negatives(emb: np.ndarray, n_cand: int, u_pos: np.ndarray, banned: np.ndarray, u_vid: np.ndarray,
                        group: np.ndarray, weights: np.ndarray, video_of_cand: tuple | None, cfg: MiningConfig,
                        rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Negatives under `far_from_all` and/or `draw="released"` (paper §3.4; docs/fidelity.md), exactly.

    Args:
        group: (U,) the window of each unit; with far_from_all a candidate must pass the rule against the unit's
            own positive and be far (cos <= 1 - tau) from every other positive of its window, and be none of
            them (`mining_rules.far_from_others`).
        weights: (C,) entries per candidate in the released list of positives (one per window and positive
            sentence: a caption counts once per window of each segment it captions, an object sentence once per
            window that took it as a positive, 0 when none did); with draw="released" the n negatives are drawn
            with replacement from the admissible entries, as the released loop drew random entries; otherwise
            n distinct ones, uniformly.
    Returns:
        neg (U, n) (-1 = none), summary statistics.
    """
    n, n_units = cfg.n_negatives, len(u_pos)
    neg = np.full((n_units, n), -1, dtype=np.int64)
    count = np.zeros(n_units, dtype=np.int64)
    neg_hist = np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
    cand = emb[:n_cand]  # (C, d)
    order = np.argsort(group, kind="stable")  # units of one window side by side
    g_sorted = group[order]
    step = max(1, cfg.block)
    for b0 in range(0, n_units, step):
        ub = order[b0:b0 + step]  # (E,) units of this block
        sim = emb[u_pos[ub]] @ cand.T  # (E, C)
        mask = admissible(sim, u_pos[ub], None, cfg.tau, cfg.rule, cfg.max_sim)  # (E, C)
        if cfg.far_from_all:
            # far from the window's other positives (windows may straddle blocks: look up all members)
            for gi in np.unique(group[ub]):
                members = order[np.searchsorted(g_sorted, gi):np.searchsorted(g_sorted, gi, side="right")]
                far = far_from_others(emb[u_pos[members]] @ cand.T, u_pos[members], cfg.tau)  # (k, C)
                ids = u_pos[members]
                far[:, ids[ids < n_cand]] = False  # never one of the window's positives
                here = np.flatnonzero(group[ub] == gi)  # rows of this block in the window
                mask[here] &= far[np.searchsorted(members, ub[here])]  # members ascend: `order` is a stable sort
        rows = np.arange(len(ub))
        own = banned[ub] >= 0
        mask[rows[own], banned[ub][own]] = False
        if video_of_cand is not None:
            offsets, cols, _ = video_of_cand
            lens = offsets[u_vid[ub] + 1] - offsets[u_vid[ub]]
            mask[np.repeat(rows, lens), cols[ranges(offsets[u_vid[ub]], lens)]] = False
        if cfg.draw == "released":
            mask &= weights[None, :] > 0  # the released pool: entries of its list of positives only
        count[ub] = mask.sum(1)
        if cfg.draw == "released":
            w = mask * weights[None, :]  # (E, C) entry counts of the admissible candidates
            cw = np.cumsum(w, axis=1)
            total = cw[:, -1]
            ok = total > 0
            u = rng.random((len(ub), n)) * total[:, None]  # (E, n) positions on each row's cumulative weight
            pick = np.empty((len(ub), n), dtype=np.int64)
            for i in np.flatnonzero(ok):  # one searchsorted per unit (not per pair)
                pick[i] = np.searchsorted(cw[i], u[i], side="right")
            nb = np.where(ok[:, None], np.minimum(pick, n_cand - 1), -1)
        else:
            keys = np.where(mask, rng.random(mask.shape), -1.0)  # random keys: top-n = uniform without replacement
            top = np.argsort(-keys, axis=1, kind="stable")[:, :n]
            nb = np.where(np.take_along_axis(keys, top, 1) >= 0, top, -1)
        neg[ub, :nb.shape[1]] = nb  # n may exceed the candidates: the rest stays -1
        got = nb >= 0
        neg_hist += np.histogram(sim[np.repeat(rows, nb.shape[1]).reshape(-1, nb.shape[1])[got], nb[got]],
                                 bins=HIST_EDGES)[0]
    return neg, {"positives_short": int((count < n).sum()), "positives_none": int((count == 0).sum()),
                 "admissible": summary_stats(count), "switched_draw": {"draw": cfg.draw, "far_from_all": cfg.far_from_all},
                 "neg_sim_hist": {"edges": HIST_EDGES.tolist(), "counts": neg_hist.tolist()}}


# --- the miner ----------------------------------------------------------------------------------------
def _object_positives(captions_vid: np.ndarray, video_ids: list[str], w0: np.ndarray, w1: np.ndarray,
                      store: Any, cfg: MiningConfig, bounds: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> tuple[np.ndarray, list[str]]:
    """Top objects of every window -> (S, W, K) ImageNet classes (-1 = none) and the object sentences.

    `released_objects`: each window's objects come from the 10 s from a whole second drawn as the released code
    drew it (`mining_rules.released_starts` over the segments' `bounds`, a random stream of its own), as its
    object windows were drawn apart from its visual input (the segment's first 16 s)."""

    k = cfg.objects_per_window
    classes = np.full(w0.shape + (k,), -1, dtype=np.int64)  # (S, W, K)
    window = cfg.window_seconds
    cache: dict[int, Any] = {}
    if cfg.released_objects:
        starts = released_starts(bounds[0], bounds[1], w0.shape[1], window, np.random.default_rng([cfg.seed, 4]))
    for s in range(w0.shape[0]):  # a loop over windows (object lookup is per video file), not over pairs
        v = int(captions_vid[s])
        if v not in cache:
            cache[v] = store.objects(video_ids[v])
        obj = cache[v]
        if obj is None:
            continue
        for w in range(w0.shape[1]):
            if cfg.released_objects:  # released: the 10 s from its random whole second, whatever the segment's end
                lo, hi = float(starts[s, w]), float(starts[s, w] + window)
            else:
                lo, hi = float(w0[s, w]), float(w1[s, w])
            top = list(window_objects(obj[0], obj[1], lo, hi, k))[:k]
            classes[s, w, :len(top)] = top
    if cfg.released_objects:
        return classes, released_positive_texts(store.label_space)
    return classes, object_sentences(store.label_space)


def mine(captions: Any, sent_emb_fn: Callable[[list[str]], np.ndarray] | Any, store: Any = None,
         cfg: MiningConfig | None = None, strategy: str = "auto") -> TripletSet:
    """Mine (window, positive, negative) triplets with the τ rule (paper §3.4; docs/fidelity.md).

    Args:
        captions: `captions.Captions` (or anything with `.segments` of (video_id, start, end, sentence)).
        sent_emb_fn: a `text.SentenceEncoder` or a callable list[str] -> (N, dim) embeddings.
        store: a `features.FeatureStore` for object positives; None (or a video without object data)
            = captions-only for that video.
        cfg: the mining config (τ, n, windows, switches, block, seed).
        strategy: "exact" (every positive x candidate cosine: exact admissible sets and statistics),
            "sample" (`mining_sample`: random candidate batches per positive, exact fallback for positives
            short of n), "auto" (exact up to AUTO_EXACT_MAX candidates, sample above).
    Returns:
        The TripletSet; `summary` counts triplets, positives short of n, admissible statistics and the
        cosine histograms of all positive-candidate pairs and of the drawn negatives.
    """

    cfg = cfg or MiningConfig()
    t0 = time.perf_counter()
    segs = list(captions.segments)
    if not segs:
        raise ValueError("mine: the captions hold no segments")
    # sentence table: unique caption texts first, object sentences after; candidates are the captions, plus
    # the object sentences when cfg.object_negatives (the default)
    sid: dict[str, int] = {}
    seg_sid = np.array([sid.setdefault(s.sentence, len(sid)) for s in segs], dtype=np.int64)
    n_cand = len(sid)
    strategy = pick_strategy(strategy, n_cand)
    vid_index: dict[str, int] = {}
    seg_vid = np.array([vid_index.setdefault(s.video_id, len(vid_index)) for s in segs], dtype=np.int64)
    video_ids = list(vid_index)
    seg_start = np.array([s.start for s in segs], dtype=np.float64)
    seg_end = np.array([s.end for s in segs], dtype=np.float64)
    n_videos = len(video_ids)

    w0, w1 = random_windows(seg_start, seg_end, cfg.windows_per_segment, cfg.window_seconds,
                            np.random.default_rng([cfg.seed, 0]))  # (S, W)
    obj_cls = None
    if store is not None and cfg.object_positives > 0:
        obj_cls, obj_text = _object_positives(seg_vid, video_ids, w0, w1, store, cfg, (seg_start, seg_end))  # (S, W, K)
        used = np.unique(obj_cls[obj_cls >= 0])
        if cfg.released_objects:  # candidates: the definition fragments of the window's objects (S, W, K*F)

            frags = {int(c): [sid.setdefault(f, len(sid)) for f in definition_fragments(obj_text[c])] for c in used}
            width = max([len(v) for v in frags.values()] + [1])
            per_cls = np.full((max(len(obj_text), 1), width), -1, dtype=np.int64)
            for c, ids in frags.items():
                per_cls[c, :len(ids)] = ids
            osid_all = np.where(obj_cls[..., None] >= 0, per_cls[np.maximum(obj_cls, 0)], -1)  # (S, W, K, F)
            osid_all = osid_all.reshape(obj_cls.shape[:2] + (-1,))  # (S, W, K*F)
        else:
            cls_sid = np.full(max(len(obj_text), 1), -1, dtype=np.int64)
            for c in used:
                cls_sid[c] = sid.setdefault(obj_text[c], len(sid))
            osid_all = np.where(obj_cls >= 0, cls_sid[np.maximum(obj_cls, 0)], -1)  # (S, W, K)
    sentences = list(sid)
    if cfg.object_negatives:
        n_cand = len(sid)  # object sentences (appended after the captions) are candidates too
    t_emb = time.perf_counter()
    raw, text_model = embed_sentences(sent_emb_fn, sentences)
    emb = normalise_rows(raw, sentences)  # (S_all, d) unit rows: dot = cosine
    t_mine = time.perf_counter()

    # positives: (segment, window, sentence); the caption in every window, then its object sentences
    n_seg, n_win = w0.shape
    u_seg = [np.repeat(np.arange(n_seg), n_win)]
    u_win = [np.tile(np.arange(n_win), n_seg)]
    u_pos = [np.repeat(seg_sid, n_win)]
    if obj_cls is not None:
        osid = osid_all  # (S, W, K) object sentences (released_objects: (S, W, K*F) fragments)
        sim = np.einsum("swkd,sd->swk", emb[np.maximum(osid, 0)], emb[seg_sid])  # (S, W, K)
        sim[(osid < 0) | (osid == seg_sid[:, None, None])] = -np.inf
        # a sentence twice among a window's candidates (a fragment shared by two senses or objects) counts once,
        # as the released list(set(pieces)) did
        by_id = np.argsort(osid, axis=2, kind="stable")
        ids = np.take_along_axis(osid, by_id, 2)
        repeat = np.zeros(ids.shape, dtype=bool)
        repeat[..., 1:] = ids[..., 1:] == ids[..., :-1]
        dup = np.zeros(osid.shape, dtype=bool)
        np.put_along_axis(dup, by_id, repeat, 2)
        sim[dup] = -np.inf
        if cfg.object_tau:  # paper §3.4: "most similar (using the rule previously defined)": cos > 1 - tau
            sim[sim <= 1.0 - cfg.tau] = -np.inf
        top = np.argsort(-sim, axis=2, kind="stable")[:, :, :cfg.object_positives]  # (S, W, P)
        top_sim = np.take_along_axis(sim, top, 2)
        s_i, w_i, p_i = np.nonzero(np.isfinite(top_sim))
        u_seg.append(s_i)
        u_win.append(w_i)
        u_pos.append(osid[s_i, w_i, top[s_i, w_i, p_i]])
    u_seg, u_win, u_pos = (np.concatenate(a) for a in (u_seg, u_win, u_pos))
    u_vid = seg_vid[u_seg]
    n_units, n = len(u_pos), cfg.n_negatives

    video_of_cand = None
    if cfg.exclude_same_video:
        pairs = np.unique(seg_vid * n_cand + seg_sid)  # (video, caption) pairs, sorted by video
        pv, pc = pairs // n_cand, pairs % n_cand
        offsets = np.searchsorted(pv, np.arange(n_videos + 1))
        video_of_cand = (offsets, pc, np.sort(pc * n_videos + pv))
    banned = np.where(u_pos != seg_sid[u_seg], seg_sid[u_seg], -1)  # own caption, for object positives

    rng = np.random.default_rng([cfg.seed, 1])
    exact = _ExactMiner(emb, n_cand, u_pos, banned, u_vid, video_of_cand, cfg, rng)
    if cfg.draw not in ("uniform", "released"):
        raise ValueError(f"unknown negative draw {cfg.draw!r} (expected 'uniform' or 'released')")
    if cfg.draw == "released" or cfg.far_from_all:
        # the released list of entries = the positives, one per (window, sentence); its loop drew entries
        weights = np.bincount(u_pos, minlength=n_cand)[:n_cand].astype(np.float64)  # (C,)
        neg, stats = _switched_negatives(emb, n_cand, u_pos, banned, u_vid, u_seg * n_win + u_win, weights,
                                         video_of_cand, cfg, rng)
        strategy = "exact-switched"
    elif strategy == "exact":
        neg, count, hist, neg_hist = exact(np.arange(n_units))
        stats = {"positives_short": int((count < n).sum()), "positives_none": int((count == 0).sum()),
                 "admissible": summary_stats(count),
                 "sim_hist": {"edges": HIST_EDGES.tolist(), "counts": hist.tolist(),
                              "candidate_stride": exact.stride},
                 "neg_sim_hist": {"edges": HIST_EDGES.tolist(), "counts": neg_hist.tolist()}}
    else:
        neg, stats = sample_negatives(emb, n_cand, u_pos, banned, u_vid, video_of_cand, cfg, rng, exact)
    t_done = time.perf_counter()

    # triplets, unit-major; the split is by video
    keep = neg >= 0  # (U, n)
    t_unit = np.repeat(np.arange(n_units), keep.sum(1))
    val_video = video_split(n_videos, cfg.val_fraction, cfg.seed)
    trip_vid = u_vid[t_unit]
    if cfg.split not in ("video", "triplet"):
        raise ValueError(f"unknown validation split {cfg.split!r} (expected 'video' or 'triplet')")
    val = val_video[trip_vid] if cfg.split == "video" else triplet_split(len(t_unit), cfg.val_fraction, cfg.seed)
    ts = TripletSet(
        sentences=sentences, video_ids=video_ids,
        video=trip_vid.astype(np.int32), segment=u_seg[t_unit].astype(np.int32),
        start=w0[u_seg, u_win][t_unit].astype(np.float32), end=w1[u_seg, u_win][t_unit].astype(np.float32),
        pos=u_pos[t_unit].astype(np.int32), neg=neg[keep].astype(np.int32), val=val,
        text_model=text_model)
    n_obj = int((u_pos != seg_sid[u_seg]).sum())
    ts.summary = {
        "triplets": len(ts), "val_triplets": int(ts.val.sum()),
        "segments": n_seg, "videos": n_videos, "val_videos": int(val_video.sum()) if cfg.split == "video" else None,
        "zero_length_segments": int((seg_end <= seg_start).sum()),
        "sentences": len(sentences), "candidates": n_cand,
        "positives": n_units, "caption_positives": n_units - n_obj, "object_positives": n_obj,
        "strategy": strategy, **stats,
        "tau": cfg.tau, "rule": cfg.rule, "seed": cfg.seed, "config": to_dict(cfg), "text_model": text_model,
        # what the captions were ({"file", "dataset"}, captions.captions_provenance): checkpoints carry it on
        "captions": dict(getattr(captions, "provenance", None) or {}) or None,
        "time": {"prepare_s": round(t_emb - t0, 3), "embed_s": round(t_mine - t_emb, 3),
                 "mine_s": round(t_done - t_mine, 3), "total_s": round(time.perf_counter() - t0, 3)},
    }
    if len(ts) == 0:  # never a silent empty result: the CLI refuses to write it, library callers are warned

        warnings.warn(f"mine: 0 triplets from {n_seg} segments ({n_units} positives, none with an admissible "
                      f"negative under rule {cfg.rule!r}, tau {cfg.tau})", stacklevel=2)
    return ts
