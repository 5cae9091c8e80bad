"""Sampled hard negative mining: the released rule's random-partner loop as matrix work (paper §3.4, DESIGN §7).

The released code draws random partners for a positive one at a time and keeps the admissible ones; the
exact strategy (`mining.mine(strategy="exact")`) instead scores every positive against every candidate.
Here every positive still only scores random candidates, but all positives at once: per round, positives
are dealt into groups of `group`, each group draws `m` uniform candidate ids (with replacement),
and one batched matmul (groups, group, d) x (groups, d, m) scores them. A positive keeps, in draw order,
the first n distinct candidates that pass the same rule as the exact path (`rule_mask`, not itself, not
its segment's caption, not its video's captions under exclude_same_video): i.i.d. uniform draws
deduplicated in order give a uniform draw without replacement from the admissible set. Short positives
get further rounds sized from their observed hit rate; those whose hit rate makes sampling dearer than a
full row (or still short after `rounds`) go to the exact path, so every positive with fewer than n
admissible candidates gets exactly its exact set. Positives in one group share candidate draws: each
positive's own negatives stay uniform, draws of different positives in a group are not independent.
Units of the same sentence (the windows of a segment, repeated captions) are dealt side by side in
sentence order across the groups, and the group size shrinks when needed, so they never share a group
(they would get the same draws, hence the same negatives).
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from cezsar.config import MiningConfig
from cezsar.mining import HIST_EDGES, _pair_member, _rank_in_group, _stats, rule_mask

AUTO_EXACT_MAX = 20_000  # "auto" mines exactly up to this many candidates (SynthActions ~420, ActivityNet 37k)
GROUP = 32  # positives sharing one candidate batch: amortises the gather, turns dot products into a matmul
ROUNDS = 8
THREADS = 2  # chunks scored at once
CHUNK_BYTES = 32 << 20  # gathered candidate embeddings per step (bounds memory)


def pick_strategy(strategy: str, n_cand: int) -> str:
    """Resolve "auto" -> "exact" when n_cand <= AUTO_EXACT_MAX else "sample"; reject unknown names."""
    if strategy not in ("auto", "exact", "sample"):
        raise ValueError(f"unknown mining strategy {strategy!r} (expected 'auto', 'exact' or 'sample')")
    if strategy == "auto":
        return "exact" if n_cand <= AUTO_EXACT_MAX else "sample"
    return strategy


def _bucket(x: np.ndarray) -> np.ndarray:
    """Round draw counts up to 16 * 2^(k/4) (few distinct batch shapes, at most ~19% extra draws)."""
    k = np.ceil(4 * np.log2(np.maximum(x, 16) / 16.0) - 1e-9)
    return np.ceil(16 * 2.0 ** (k / 4) - 1e-6).astype(np.int64)


def _one_blas_thread() -> Any:
    """The batched matmuls here are many small GEMMs: BLAS threads cost more than they give (3-80x slower
    on a loaded 2-core machine), so they run single-threaded when threadpoolctl (a scikit-learn dependency)
    is there."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def sample_negatives(emb: np.ndarray, n_cand: int, u_pos: np.ndarray, banned: np.ndarray, u_vid: np.ndarray,
                     video_of_cand: tuple | None, cfg: MiningConfig, rng: np.random.Generator,
                     exact: Callable[[np.ndarray], tuple], rounds: int = ROUNDS, group: int | None = None
                     ) -> tuple[np.ndarray, dict]:
    """Up to n negatives per positive (unit) by batched random draws (paper §3.4 footnote 8) -> neg (U, n), summary.

    Args:
        emb: unit-norm sentence embeddings (S, d); rows 0..n_cand-1 are the candidates (caption texts).
        u_pos, banned, u_vid: per unit its positive sentence id, the caption never drawn (-1 none), its video.
        video_of_cand: the caption-of-video structure of `mining.draw_negatives` (exclude_same_video) or None.
        exact: the exact path over a subset of units -> (neg, count, pair hist, negative hist).
    """
    n, n_units = cfg.n_negatives, len(u_pos)
    group = group or GROUP
    cand = emb[:n_cand]  # (C, d)
    nv = len(video_of_cand[0]) - 1 if video_of_cand is not None else 0
    neg = np.full((n_units, n), -1, dtype=np.int64)
    neg_sim = np.zeros((n_units, n), dtype=np.float32)
    got = np.zeros(n_units, dtype=np.int64)
    draws = np.zeros(n_units, dtype=np.int64)
    hits = np.zeros(n_units, dtype=np.int64)
    hist = np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
    active = np.arange(n_units)
    need_draws = np.full(n_units, 2 * n, dtype=np.int64)  # round 1: a first look at each hit rate
    fallback = np.zeros(0, dtype=np.int64)
    used_rounds = 0
    first_round = True
    share1 = np.zeros(n_units)

    def score(uu: np.ndarray, cc: np.ndarray, with_hist: bool) -> tuple:
        """Cosines of each group's positives (k, g) with its draws (k, m) -> hits per unit, hist, hits in order."""
        pos = u_pos[np.maximum(uu, 0)]  # (k, g); -1 = padding, scored against row 0 and dropped
        with _one_blas_thread():
            sim = np.matmul(emb[pos], cand[cc].transpose(0, 2, 1))  # (k, g, m)
        c3 = np.broadcast_to(cc[:, None, :], sim.shape)
        real = (uu >= 0)[:, :, None]
        ok = rule_mask(sim, cfg.tau, cfg.rule, cfg.max_sim) & (c3 != pos[:, :, None]) & real
        ok &= c3 != banned[np.maximum(uu, 0)][:, :, None]
        if video_of_cand is not None:
            vid = np.broadcast_to(u_vid[np.maximum(uu, 0)][:, :, None], sim.shape)
            ok &= ~_pair_member(c3.ravel(), vid.ravel(), video_of_cand[2], nv).reshape(sim.shape)
        h = np.zeros(len(hist), dtype=np.int64)
        if with_hist:  # round 1 only: its draws are uniform for every positive, later rounds favour rare ones
            bins = np.clip(((sim + 1.0) * 10.0).astype(np.intp), 0, len(hist) - 1)  # (k, g, m)
            h = np.bincount(bins[real & (c3 != pos[:, :, None])], minlength=len(hist))
        k_i, g_i, m_i = np.nonzero(ok)  # C order: per unit, its hits in draw order
        return uu, ok.sum(axis=2), h, uu[k_i, g_i], cc[k_i, m_i], sim[k_i, g_i, m_i]

    for _ in range(rounds):
        if len(active) == 0:
            break
        used_rounds += 1
        m_unit = np.minimum(_bucket(need_draws[active]), n_cand)
        new_u, new_c, new_s = [], [], []
        for m in np.unique(m_unit):  # groups of positives needing about the same number of draws
            us = active[m_unit == m]
            us = us[np.lexsort((rng.random(len(us)), u_pos[us]))]  # units of one sentence side by side
            mult = int(np.unique(u_pos[us], return_counts=True)[1].max())
            g = max(1, min(group, len(us) // mult))  # the units of one sentence land in different groups
            n_grp = -(-len(us) // g)
            grid = np.full(n_grp * g, -1, dtype=np.int64)
            grid[:len(us)] = us
            grid = grid.reshape(g, n_grp).T  # (G, g) units, -1 = padding; neighbours go to different groups
            step = max(1, CHUNK_BYTES // int(m * cand.shape[1] * 4))
            cc_all = rng.integers(0, n_cand, size=(n_grp, int(m)))  # (G, m) shared draws, drawn up front
            jobs = [(grid[g0:g0 + step], cc_all[g0:g0 + step]) for g0 in range(0, n_grp, step)]
            with ThreadPoolExecutor(THREADS) as pool:  # matmul and gathers release the GIL
                for uu, n_hit, h, nu, nc, ns in pool.map(lambda job: score(*job, first_round), jobs):
                    real = uu >= 0
                    draws[uu[real]] += int(m)
                    hits[uu[real]] += n_hit[real]
                    hist += h
                    new_u.append(nu)
                    new_c.append(nc)
                    new_s.append(ns)
        if first_round:  # a fixed number of draws per positive: an unbiased admissible-share estimate
            share1 = hits / np.maximum(draws, 1)
        first_round = False
        # merge with what each unit already holds (earlier rounds first), first occurrence of each candidate
        have = neg[active] >= 0  # (A, n)
        all_u = np.concatenate([np.repeat(active, have.sum(1))] + new_u)
        all_c = np.concatenate([neg[active][have]] + new_c)
        all_s = np.concatenate([neg_sim[active][have]] + new_s)
        order = np.argsort(all_u, kind="stable")
        all_u, all_c, all_s = all_u[order], all_c[order], all_s[order]
        _, first = np.unique(all_u * n_cand + all_c, return_index=True)
        first.sort()
        all_u, all_c, all_s = all_u[first], all_c[first], all_s[first]
        rank = _rank_in_group(all_u)
        keep = rank < n
        neg[all_u[keep], rank[keep]] = all_c[keep]
        neg_sim[all_u[keep], rank[keep]] = all_s[keep]
        got[active] = np.bincount(all_u[keep], minlength=n_units)[active]
        active = active[got[active] < n]
        # next round: enough draws for the missing ones at the observed hit rate (+ a margin)
        # hit rate shrunk toward the corpus-wide rate (8 pseudo-draws): a unit's own 20-odd first draws
        # alone give a noisy rate, and 1 / noisy rate overshoots
        prior = (hits.sum() + 0.5) / (draws.sum() + 1.0)
        rate = (hits[active] + 8 * prior) / (draws[active] + 8.0)
        need_draws[active] = np.ceil((n - got[active] + 0.5) / rate).astype(np.int64)
        dear = need_draws[active] > n_cand // 8  # sampling would cost more than scoring the whole row
        fallback = np.concatenate([fallback, active[dear]])
        active = active[~dear]
    fallback = np.sort(np.concatenate([fallback, active]))
    neg_hist = np.zeros_like(hist)
    count_f = np.zeros(0, dtype=np.int64)
    if len(fallback):
        neg_f, count_f, _, neg_hist = exact(fallback)
        neg[fallback] = neg_f
    sampled = np.ones(n_units, dtype=bool)
    sampled[fallback] = False
    neg_hist += np.histogram(neg_sim[sampled][neg[sampled] >= 0], bins=HIST_EDGES)[0]
    # admissible count ~ admissible share of the draws x candidates (exact for the fallback positives).
    # Mean: round 1's fixed-size draws (unbiased); median: all draws (more of them, but positives stop once
    # they hold n, which tilts a sparse positive's share up a little)
    est1, est = share1 * n_cand, hits / np.maximum(draws, 1) * n_cand
    est1[fallback] = est[fallback] = count_f
    return neg, {
        "sample": {"group": group, "rounds_used": used_rounds, "pairs_evaluated": int(draws.sum()),
                   "pairs_per_positive": round(float(draws.mean()), 1), "fallback_positives": int(len(fallback))},
        "positives_short": int((count_f < n).sum()), "positives_none": int((count_f == 0).sum()),
        "admissible_estimate": {"mean": round(float(est1.mean()), 1), "median": round(float(np.median(est)), 1),
                                "note": "admissible share of the sampled draws x candidates (mean: round-1 "
                                        "draws, median: all draws); exact for the fallback positives"},
        "admissible_fallback": _stats(count_f),
        "sim_hist": {"edges": HIST_EDGES.tolist(), "counts": hist.tolist()}, "sim_hist_source": "sampled pairs",
        "neg_sim_hist": {"edges": HIST_EDGES.tolist(), "counts": neg_hist.tolist()},
    }
