"""Sampled hard negative mining: the released rule's random-partner loop as matrix work (paper §3.4, docs/fidelity.md).

The released code draws random partners for a positive one at a time and keeps the admissible ones; the
exact strategy (`mining.mine(strategy="exact")`) instead scores every positive against every candidate.
Here every positive still only scores random candidates, but all positives at once. Per round, positives
are dealt into groups of up to `group`; each group gets a *pool* of `m` distinct random candidates (slices
of a random permutation) and one batched matmul (groups, group, d) x (groups, d, m) scores them. Each
positive reads its group's pool cyclically from its own random start and keeps, in that order, the first n
candidates that pass the same rule as the exact path (`rule_mask`, not itself, not its segment's caption,
not its video's captions under exclude_same_video). A pool is a uniformly random arrangement of distinct
candidates and so is any cyclic reading of it, so a positive's negatives are a uniform draw without
replacement from its admissible set; the random start keeps positives of one group that admit the same
candidates from taking the same ones. Draws of different positives in a group are still not independent,
and the more positives share a pool, the fewer candidates a round reaches: on the 37k real ActivityNet
captions at tau 0.8, groups of 128 use every candidate as a negative with a usage spread (std / mean 0.46)
close to independent draws' (0.43, exact strategy), while groups of 512 leave 31% of the candidates unused.
Short positives get further rounds sized from their observed hit rate; those whose hit rate makes sampling
dearer than a full row (or still short after `rounds`) go to the exact path, so every positive with fewer
than n admissible candidates gets exactly its exact set. Units of the same sentence (the windows of a
segment, repeated captions) never read the same candidates in a round: up to KMAX of them form one GEMM
row whose pool has one part per unit (one embedding gathered, a wider GEMM); more are dealt one per row
across different groups.

Cost: one GEMM per chunk of groups, then work on the hits only (flat indices of the admissible pairs, the
cyclic order as ranks computed by counting, no sort over pairs), merged into the units' rows by the chunk's
own thread (a unit is in one chunk per round); a pair costs a few tens of nanoseconds all told
(benchmarks/bench_mining.py against the released per-pair loop).
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from cezsar.config import MiningConfig
from cezsar.triplet_mining.rules import HIST_EDGES, pair_member, rank_in_group, summary_stats, rule_mask

AUTO_EXACT_MAX = 20_000  # "auto" mines exactly up to this many candidates (SynthActions ~420, ActivityNet 37k)
GROUP = 128  # positives sharing one pool: one (group x d) x (d x m) GEMM; more sharing leaves candidates unused (below)
ROUNDS = 8
KMAX = 4  # units of one sentence scored as one GEMM row (the windows of a caption: 3)
MIN_DRAWS = 48  # smallest pool: narrower GEMMs cost more per pair than the extra draws
THREADS = 2  # chunks scored at once (BLAS single-threaded inside each)
CHUNK_PAIRS = 1 << 18  # pairs per chunk: operands stay in cache (1M: 1.5x slower), few enough GIL hand-offs (64k: 1.3x slower)


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
        from threadpoolctl import threadpool_limits  # lazy: optional (a scikit-learn dependency), see above
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class _Pools:
    """Candidate pools, distinct within a pool: consecutive slices of a stream of random permutations."""

    def __init__(self, rng: np.random.Generator, n_cand: int) -> None:
        self.rng, self.n_cand = rng, n_cand
        self.perm, self.at = rng.permutation(n_cand), 0

    def take(self, n_pools: int, m: int) -> np.ndarray:
        """(n_pools, m) candidate ids (m <= n_cand); a pool never straddles two permutations."""
        out = []
        while n_pools > 0:
            fit = min((self.n_cand - self.at) // m, n_pools)
            if fit == 0:
                self.perm, self.at = self.rng.permutation(self.n_cand), 0
                continue
            out.append(self.perm[self.at:self.at + fit * m].reshape(fit, m))
            self.at += fit * m
            n_pools -= fit
        return np.concatenate(out)


def _deal(us: np.ndarray, u_pos: np.ndarray, group: int) -> np.ndarray:
    """Units (in sentence order) -> (G, g) groups, -1 = padding; units of one sentence land in different groups."""
    mult = int(np.bincount(u_pos[us]).max())  # most units sharing one sentence
    g = max(1, min(group, len(us) // mult))
    n_grp = -(-len(us) // g)
    grid = np.full(n_grp * g, -1, dtype=np.int64)
    grid[:len(us)] = us
    return grid.reshape(g, n_grp).T  # (G, g): neighbours in sentence order go to different groups


def _layouts(us: np.ndarray, u_pos: np.ndarray, group: int, m: int, n_cand: int) -> list[np.ndarray]:
    """Units (in sentence order) -> unit grids (G, g, K), -1 = padding: row (G, g) shares one positive sentence.

    Sentences with K = 2..KMAX units here become one GEMM row whose pool is K parts of m, unit q reading
    part q: the row's embedding is gathered once and the GEMM is K times wider (both cheaper per pair), and
    the units of a sentence get disjoint candidates. The rest are dealt one unit per row (`_deal`).
    """
    sent = u_pos[us]
    starts = np.r_[0, np.flatnonzero(np.diff(sent)) + 1]  # first unit of each sentence
    cnt = np.diff(np.r_[starts, len(us)])
    per_unit = np.repeat(cnt, cnt)
    out, single = [], np.ones(len(us), dtype=bool)
    for k in range(2, KMAX + 1):
        if k * m > n_cand:
            break
        sel = per_unit == k
        if not sel.any():
            continue
        single &= ~sel
        block = us[sel].reshape(-1, k)  # (Q, K) the units of one sentence per row
        g = min(group, len(block))
        n_grp = -(-len(block) // g)
        grid = np.full((n_grp * g, k), -1, dtype=np.int64)
        grid[:len(block)] = block
        out.append(grid.reshape(n_grp, g, k))
    if single.any():
        out.append(_deal(us[single], u_pos, group)[:, :, None])
    return out


class _Scorer:
    """Scores chunks of groups against their pools and appends each unit's admissible draws, in its cyclic
    order, to the negatives it holds."""

    def __init__(self, emb: np.ndarray, n_cand: int, u_pos: np.ndarray, banned: np.ndarray, u_vid: np.ndarray,
                 video_of_cand: tuple | None, cfg: MiningConfig) -> None:
        self.emb, self.cand, self.u_pos, self.banned, self.u_vid = emb, emb[:n_cand], u_pos, banned, u_vid
        self.video_of_cand, self.cfg = video_of_cand, cfg
        self.nv = len(video_of_cand[0]) - 1 if video_of_cand is not None else 0
        self.any_banned = bool((banned >= 0).any())
        n_units, n = len(u_pos), cfg.n_negatives
        # per-unit state, updated by the chunks themselves: a unit is in exactly one chunk per round, so
        # the two threads never touch the same row
        self.neg = np.full((n_units, n), -1, dtype=np.int64)  # negatives held, in draw order
        self.neg_sim = np.zeros((n_units, n), dtype=np.float32)
        self.got = np.zeros(n_units, dtype=np.int64)  # negatives held
        self.draws = np.zeros(n_units, dtype=np.int64)  # candidates scored
        self.hits = np.zeros(n_units, dtype=np.int64)  # admissible among them

    def __call__(self, grid: np.ndarray, pools: np.ndarray, start: np.ndarray, with_hist: bool) -> tuple:
        """grid (k, g, K) units, pools (k, K * m) candidates, start (k, g, K) cyclic start of each unit.

        The units of a row share one positive sentence; unit q of a row reads part q (m candidates) of its
        group's pool from its `start` cyclically and takes admissible candidates until it holds n, skipping
        ones it already holds. Returns the histogram of a sample of the cosines (each group's first row;
        round 1 only).
        """
        k, g, kk = grid.shape
        m = pools.shape[1] // kk
        cfg = self.cfg
        row = grid.max(axis=2)  # (k, g) a unit of each row (-1: padding row)
        pos = self.u_pos[np.maximum(row, 0)]  # (k, g) positive sentence of each row; padding rows dropped below
        # np.take, not fancy indexing: ~30 % faster gathers; small chunks keep both operands in cache
        a = np.take(self.emb, pos, axis=0)  # (k, g, d)
        b = np.take(self.cand, pools, axis=0)  # (k, K*m, d)
        sim = np.matmul(a, b.transpose(0, 2, 1))  # (k, g, K*m); BLAS single-threaded
        flat = np.flatnonzero(rule_mask(sim, cfg.tau, cfg.rule, cfg.max_sim))  # hits, in (group, unit, draw) order
        slot = flat // m  # (H,) position in grid.ravel(): rows of K parts of m draws
        col = flat - slot * m
        u = grid.ravel()[slot]
        c = pools.ravel()[(slot // (g * kk)) * (kk * m) + (slot % kk) * m + col]
        uu = np.maximum(u, 0)
        ok = c != self.u_pos[uu]  # not the same sentence
        if (grid < 0).any():
            ok &= u >= 0
        if self.any_banned:
            ok &= c != self.banned[uu]  # not its segment's caption (object positives)
        if self.video_of_cand is not None:
            ok &= ~pair_member(c, self.u_vid[uu], self.video_of_cand[2], self.nv)
        if not ok.all():
            flat, slot, col, u, c = flat[ok], slot[ok], col[ok], u[ok], c[ok]
        s = sim.reshape(-1)[flat]
        # cyclic reading from start: draws [start, m) first, then [0, start). Hits are sorted by slot and,
        # inside a slot, by draw, so each rank is a count, not a sort: an unwrapped hit's rank is the number
        # of unwrapped hits before it in its slot; a wrapped one's adds every unwrapped hit of the slot
        n_hit = len(slot)
        n_slot = k * g * kk
        per_slot = np.bincount(slot, minlength=n_slot)
        first = np.cumsum(per_slot) - per_slot  # index of each slot's first hit
        unwrapped = col >= start.reshape(-1)[slot]
        cum = np.cumsum(unwrapped)  # unwrapped hits up to and including each hit
        before = np.zeros(n_slot + 1, dtype=np.int64)
        before[1:] = np.cumsum(np.bincount(slot, weights=unwrapped, minlength=n_slot).astype(np.int64))
        seen_unwrapped = cum - before[slot]  # inclusive, within the slot
        idx = np.arange(n_hit) - first[slot]  # position of the hit within its slot
        rank = np.where(unwrapped, seen_unwrapped - 1,
                        idx - seen_unwrapped + (before[slot + 1] - before[slot]))
        hist = np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
        if with_hist:  # a sample of the pairs: every group's first positive against its whole pool
            first_rows = sim[:, 0, :][(row[:, 0] >= 0)[:, None] & (pools != pos[:, :1])]
            hist = np.histogram(first_rows, bins=len(hist), range=(-1.0, 1.0))[0]
        units = grid.reshape(-1)  # (n_slot,) the unit of each slot, -1 = padding; distinct within a round
        real = units >= 0
        self.draws[units[real]] += m
        self.hits[units[real]] += per_slot[real]
        self._append(u, c, s, rank, slot, units)
        return hist

    def _append(self, u: np.ndarray, c: np.ndarray, s: np.ndarray, rank: np.ndarray, slot: np.ndarray,
                units: np.ndarray) -> None:
        """Hits (unit, candidate, cosine, rank in the unit's reading order) -> after the negatives it holds."""
        n, neg, got = self.cfg.n_negatives, self.neg, self.got
        at = got[u] + rank  # (H,) place in the unit's row; >= n: not needed
        take = np.flatnonzero(at < n)
        held = take[got[u[take]] > 0]  # only units holding some (from earlier rounds' pools) can repeat one
        if len(held):
            dup = held[(neg[u[held]] == c[held][:, None]).any(axis=1)]  # (held, n) compare: no sort
            if len(dup):  # a few units: re-rank every hit of those units without the repeats, by sort
                marked = np.zeros(len(units), dtype=bool)
                marked[slot[dup]] = True
                redo = np.flatnonzero(marked[slot])
                at[redo] = n
                ri = redo[~(neg[u[redo]] == c[redo][:, None]).any(axis=1)]
                ri = ri[np.lexsort((rank[ri], u[ri]))]
                at[ri] = got[u[ri]] + rank_in_group(u[ri])
                take = np.flatnonzero(at < n)
        flat = u[take] * n + at[take]
        neg.reshape(-1)[flat] = c[take]
        self.neg_sim.reshape(-1)[flat] = s[take]
        kept = np.bincount(slot[take], minlength=len(units))  # (n_slot,) taken per slot
        real = units >= 0
        got[units[real]] += kept[real]  # slots and units are one-to-one here: a plain fancy += is exact


def sample_negatives(emb: np.ndarray, n_cand: int, u_pos: np.ndarray, banned: np.ndarray, u_vid: np.ndarray,
                     video_of_cand: tuple | None, cfg: MiningConfig, rng: np.random.Generator,
                     exact: Callable[[np.ndarray], tuple], rounds: int = ROUNDS, group: int | None = None
                     ) -> tuple[np.ndarray, dict]:
    """Up to n negatives per positive (unit) by batched random draws (paper §3.4 footnote 8) -> neg (U, n), summary.

    Args:
        emb: unit-norm sentence embeddings (S, d); rows 0..n_cand-1 are the candidates.
        u_pos, banned, u_vid: per unit its positive sentence id, the caption never drawn (-1 none), its video.
        video_of_cand: the caption-of-video structure of `mining_rules.draw_negatives` (exclude_same_video) or None.
        exact: the exact path over a subset of units -> (neg, count, pair hist, negative hist).
    """
    n, n_units, group = cfg.n_negatives, len(u_pos), group or GROUP
    score = _Scorer(emb, n_cand, u_pos, banned, u_vid, video_of_cand, cfg)
    neg, neg_sim, got, draws, hits = score.neg, score.neg_sim, score.got, score.draws, score.hits
    hist = np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
    active = np.arange(n_units)
    need_draws = np.full(n_units, 2 * n, dtype=np.int64)  # round 1: a first look at each hit rate
    fallback = np.zeros(0, dtype=np.int64)
    used_rounds = 0
    share1 = np.zeros(n_units)
    source = _Pools(rng, n_cand)
    by_sentence = np.argsort(u_pos, kind="stable")  # dealing order: units of one sentence side by side
    for r in range(rounds):
        if len(active) == 0:
            break
        used_rounds += 1
        is_active = np.zeros(n_units, dtype=bool)
        is_active[active] = True
        ordered = by_sentence[is_active[by_sentence]]  # active units in sentence order
        m_of = np.zeros(n_units, dtype=np.int64)
        m_of[active] = np.minimum(np.maximum(_bucket(need_draws[active]), MIN_DRAWS), n_cand)
        jobs = []  # all random draws are made here, in order: the result does not depend on thread timing
        for m in np.unique(m_of[active]):  # groups of positives needing about the same number of draws
            for grid in _layouts(ordered[m_of[ordered] == m], u_pos, group, int(m), n_cand):  # (G, g, K)
                pools = source.take(len(grid), int(m) * grid.shape[2])  # (G, K*m)
                start = rng.integers(0, m, size=grid.shape)  # (G, g, K) where each unit starts reading
                step = max(1, CHUNK_PAIRS // (grid.shape[1] * grid.shape[2] * int(m)))
                jobs += [(grid[i:i + step], pools[i:i + step], start[i:i + step], r == 0)
                         for i in range(0, len(grid), step)]
        with _one_blas_thread(), ThreadPoolExecutor(THREADS) as pool:
            for h in pool.map(lambda job: score(*job), jobs):
                hist += h
        if r == 0:  # a fixed number of draws per positive: an unbiased admissible-share estimate
            share1 = hits / np.maximum(draws, 1)
        active = active[got[active] < n]
        # next round: enough draws for the missing ones at the observed hit rate (+ a margin), the rate
        # shrunk toward the corpus-wide rate (8 pseudo-draws): a unit's own 20-odd first draws alone give a
        # noisy rate, and 1 / noisy rate overshoots
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
    neg_hist += np.histogram(neg_sim[(neg >= 0) & sampled[:, None]], bins=len(hist), range=(-1.0, 1.0))[0]
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
        "admissible_fallback": summary_stats(count_f),
        "sim_hist": {"edges": HIST_EDGES.tolist(), "counts": hist.tolist()}, "sim_hist_source": "sampled pairs",
        "neg_sim_hist": {"edges": HIST_EDGES.tolist(), "counts": neg_hist.tolist()},
    }
