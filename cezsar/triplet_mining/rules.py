"""The τ rule and the pure pieces of hard negative mining (paper §3.4; docs/fidelity.md "negative rule").

Which candidates a positive may take as negatives (`admissible`, `rule_mask`), drawing them (`draw_negatives`),
the random windows of a segment, the validation splits, and the small helpers both mining strategies share:
`cezsar.triplet_mining.mine` (the exact strategy and the miner) and `cezsar.triplet_mining.sample` (shared random
candidate pools) build on this module, which imports neither of them.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

HIST_EDGES = np.round(np.linspace(-1.0, 1.0, 21), 2)  # cosine bins of width 0.1 for the summary histograms


def admissible(sim: np.ndarray, pos_ids: np.ndarray, cand_ids: np.ndarray | None, tau: float,
               rule: str = "released", max_sim: float | None = None) -> np.ndarray:
    """The τ rule of paper §3.4 (docs/fidelity.md "negative rule") on a block of cosines -> bool (B, C).

    Args:
        sim: cosines (B, C) between B positives and C candidates.
        pos_ids, cand_ids: sentence ids (B,), (C,); equal ids = the same sentence text, never admissible.
            cand_ids None: column j is sentence j (then only the B self entries are touched, not B x C).
        tau: "released": admissible when cos > 1 - tau; "different": when cos <= 1 - tau.
        max_sim: when set, also drop cos >= max_sim (paraphrase guard).
    """
    mask = rule_mask(sim, tau, rule, max_sim)
    if cand_ids is None:
        own = np.flatnonzero(pos_ids < sim.shape[1])
        mask[own, pos_ids[own]] = False
    else:
        mask &= pos_ids[:, None] != cand_ids[None, :]  # (B, C)
    return mask


def rule_mask(sim: np.ndarray, tau: float, rule: str = "released", max_sim: float | None = None) -> np.ndarray:
    """The cosine part of the τ rule (paper §3.4), elementwise on any shape (identity checks are the caller's)."""
    if rule == "released":
        mask = sim > 1.0 - tau
    elif rule == "different":
        mask = sim <= 1.0 - tau
    else:
        raise ValueError(f"unknown negative rule {rule!r} (expected 'released' or 'different')")
    if max_sim is not None:
        mask &= sim < max_sim
    return mask


def far_from_others(sim: np.ndarray, pos_ids: np.ndarray, tau: float) -> np.ndarray:
    """`far_from_all` (paper §3.4: a negative "sufficiently different from each of these three positive
    descriptions"; docs/fidelity.md) for one window -> bool (k, C).

    Row j: the candidates "sufficiently different", in the paper's sense of not similar (cos <= 1 - tau), from
    every positive of the window other than positive j. The caller ANDs row j with positive j's own rule
    (`admissible`), so under rule "different" a negative is far from all of the window's positives, and under
    rule "released" it stays a hard negative of its own positive (cos > 1 - tau) yet is far from the others.

    Args:
        sim: cosines (k, C) of the window's k positives to C candidates.
        pos_ids: (k,) their sentence ids; a positive repeated in the window is not an "other" one.
    """
    far = sim <= 1.0 - tau  # (k, C)
    out = np.empty_like(far)
    for j in range(len(pos_ids)):  # k <= 3 positives in a window: a tiny loop
        out[j] = far[pos_ids != pos_ids[j]].all(axis=0)  # no other positive: every candidate passes
    return out


def pair_member(a: np.ndarray, b: np.ndarray, keys: np.ndarray, nb: int) -> np.ndarray:
    """Whether each (a[i], b[i]) is in `keys` (sorted int64 a * nb + b)."""
    q = a.astype(np.int64) * nb + b
    i = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return keys[i] == q


def draw_negatives(mask: np.ndarray, rows: np.ndarray, n: int, rng: np.random.Generator,
                   banned: np.ndarray | None = None, videos: np.ndarray | None = None,
                   video_of_cand: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Up to n distinct admissible columns per unit, uniform without replacement (paper §3.4 footnote 8).

    Args:
        mask: admissible (B, C) for a block of positive rows.
        rows: (U,) row of `mask` each unit (a positive in a window) uses.
        banned: (U,) one more column per unit that is never drawn (the caption of its segment), or None.
        videos, video_of_cand: for exclude_same_video, each unit's video and the caption structure
            (csr offsets per video (V+1,), candidate columns (M,), sorted pair keys col * V + video).
    Returns:
        neg (U, n) int64 columns, -1 where a unit has fewer than n; count (U,) admissible per unit.
    """
    n_units, n_cand = len(rows), mask.shape[1]
    neg = np.full((n_units, n), -1, dtype=np.int64)
    count = np.count_nonzero(mask, axis=1)[rows].astype(np.int64)  # (U,)
    nv = 0
    if video_of_cand is not None:
        offsets, cols, keys = video_of_cand
        nv = len(offsets) - 1
        lens = offsets[videos + 1] - offsets[videos]
        u = np.repeat(np.arange(n_units), lens)  # one entry per (unit, caption of its video)
        c = cols[ranges(offsets[videos], lens)]
        count -= np.bincount(u, weights=mask[rows[u], c], minlength=n_units).astype(np.int64)
    if banned is not None:
        own = banned >= 0
        hit = np.zeros(n_units, dtype=bool)
        hit[own] = mask[rows[own], banned[own]]
        if video_of_cand is not None:  # already subtracted when the banned caption is in the unit's video
            hit[own] &= ~pair_member(banned[own], videos[own], keys, nv)
        count -= hit
    # rejection draws where admissible candidates are plentiful (expected 1.5n + 6 hits per unit); a draw
    # costs ~15x an element of the exact path's row scan, so rows needing more than C/16 draws go exact
    m = np.ceil((1.5 * n + 6) * n_cand / np.maximum(count, 1)).astype(np.int64)
    dense = (count >= 2 * n) & (m <= n_cand // 16)
    done = np.zeros(n_units, dtype=bool)
    if dense.any():
        du = np.flatnonzero(dense)
        uu = np.repeat(du, m[du])  # (draws,) unit of each draw, grouped, in draw order
        cc = rng.integers(0, n_cand, size=len(uu))
        ok = mask[rows[uu], cc]
        if banned is not None:
            ok &= cc != banned[uu]
        if video_of_cand is not None:
            ok &= ~pair_member(cc, videos[uu], keys, nv)
        uu, cc = uu[ok], cc[ok]
        _, first = np.unique(uu * n_cand + cc, return_index=True)  # first draw of each (unit, column)
        first.sort()  # back to draw order within each unit
        uu, cc = uu[first], cc[first]
        rank = rank_in_group(uu)
        keep = rank < n
        neg[uu[keep], rank[keep]] = cc[keep]
        got = np.bincount(uu[keep], minlength=n_units)
        done = dense & (got == n)
    rest = np.flatnonzero(~done)  # few admissible (or an unlucky draw): exact sampling over the row
    step = max(1, mask.shape[0])
    for i in range(0, len(rest), step):  # chunks of at most `block` units bound the memory
        eu = rest[i:i + step]
        sub = mask[rows[eu]]  # (E, C) copy
        if banned is not None:
            own = banned[eu] >= 0
            sub[np.flatnonzero(own), banned[eu][own]] = False
        if video_of_cand is not None:
            lens = offsets[videos[eu] + 1] - offsets[videos[eu]]
            sub[np.repeat(np.arange(len(eu)), lens), cols[ranges(offsets[videos[eu]], lens)]] = False
        r, c = np.nonzero(sub)
        order = np.lexsort((rng.random(len(r)), r))  # random order within each row
        r, c = r[order], c[order]
        rank = rank_in_group(r)
        keep = rank < n
        neg[eu[r[keep]], rank[keep]] = c[keep]
    return neg, count


def ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenated aranges [starts[i], starts[i] + lens[i]) without a Python loop."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lens)
    return np.arange(total) - np.repeat(ends - lens, lens) + np.repeat(starts, lens)


def rank_in_group(groups: np.ndarray) -> np.ndarray:
    """Position of each element inside its run of equal values (groups must be contiguous)."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    lens = np.diff(np.r_[starts, len(groups)])
    return np.arange(len(groups)) - np.repeat(starts, lens)


def random_windows(start: np.ndarray, end: np.ndarray, per_segment: int, seconds: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`per_segment` random windows of up to `seconds` inside each segment (paper §3.4) -> (S, W) starts, ends.

    A segment no longer than `seconds` gives itself as every window.
    """
    length = (end - start)[:, None]  # (S, 1)
    slack = np.maximum(length - seconds, 0.0)
    w0 = start[:, None] + rng.random((len(start), per_segment)) * slack  # (S, W)
    w1 = np.where(slack > 0, w0 + seconds, end[:, None])
    return w0, w1


def released_starts(start: np.ndarray, end: np.ndarray, per_segment: int, seconds: float,
                    rng: np.random.Generator) -> np.ndarray:
    """The released windows' starts (hardsampling.py pairing_data) -> (S, W) whole seconds.

    Per window: both bounds truncated (int()), swapped if reversed; when int(end) - seconds > int(start), a
    whole second drawn uniformly from int(start) .. int(end) - seconds (random.randint, both ends included),
    else int(start). The released window is then the `seconds` rows from there, whatever the segment's end.
    """
    a, b = np.trunc(start), np.trunc(end)
    a, b = np.minimum(a, b), np.maximum(a, b)
    last = np.floor(b - seconds)  # (S,) the latest start
    draw = a[:, None] + np.floor(rng.random((len(a), per_segment)) * (last - a + 1)[:, None])  # (S, W)
    return np.where((last > a)[:, None], np.minimum(draw, last[:, None]), a[:, None])


def video_split(n_videos: int, fraction: float, seed: int) -> np.ndarray:
    """Seeded validation flags per video (docs/fidelity.md "optimiser": by video, so no video is on both sides) -> bool (V,)."""
    val = np.zeros(n_videos, dtype=bool)
    if fraction <= 0 or n_videos < 2:
        return val
    n_val = min(max(int(round(fraction * n_videos)), 1), n_videos - 1)
    val[np.random.default_rng([seed, 2]).permutation(n_videos)[:n_val]] = True
    return val


def triplet_split(n_triplets: int, fraction: float, seed: int) -> np.ndarray:
    """The released code's validation split: each *triplet* held out at random with probability `fraction`
    (0.3 there), so windows and captions of one video sit on both sides (leaky) -> bool (N,)."""
    return np.random.default_rng([seed, 3]).random(n_triplets) < fraction


def normalise_rows(emb: np.ndarray, sentences: Sequence[str]) -> np.ndarray:
    """Unit-length sentence embeddings (S, d) float32, so that a dot product is the cosine of the τ rule; a
    zero or non-finite row is an error naming its sentence."""
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(sentences):
        raise ValueError(f"sentence embeddings have shape {emb.shape}, expected ({len(sentences)}, dim)")
    norm = np.linalg.norm(emb, axis=1)
    bad = np.flatnonzero(~np.isfinite(norm) | (norm == 0))
    if len(bad):
        raise ValueError(f"sentence embedding #{bad[0]} is zero or not finite: {sentences[bad[0]]!r:.80}")
    return emb / norm[:, None]


def embed_sentences(fn: Any, sentences: list[str]) -> tuple[np.ndarray, str]:
    """Embed with an encoder object (its .encode) or a plain callable; returns the (S, d) vectors and the
    model's name for the triplet file's meta."""
    if hasattr(fn, "encode"):
        return fn.encode(sentences), str(getattr(fn, "model_id", type(fn).__name__))
    return fn(sentences), str(getattr(fn, "model_id", getattr(fn, "__name__", "callable")))


def summary_stats(x: np.ndarray) -> dict:
    """Mean, median, min and max of a count per positive, for a mining summary (zeros when empty)."""
    if len(x) == 0:
        return {"mean": 0.0, "median": 0.0, "min": 0, "max": 0}
    return {"mean": round(float(x.mean()), 3), "median": float(np.median(x)), "min": int(x.min()),
            "max": int(x.max())}
