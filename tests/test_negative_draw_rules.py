"""Properties of the negative draw (paper §3.4, footnote 8; docs/fidelity.md "negative rule") that the mutation run
of issue 31 (benchmarks/mutation.sh) found unprotected: the exclude_same_video lookups at the edges of their
tables, the sampled strategy's paraphrase guard (max_sim), and the layout of its candidate pools (each unit scored
once a round, the units of one sentence on disjoint candidates). Small inputs, fast tier."""
from __future__ import annotations

import numpy as np
import pytest

from cezsar.config import MiningConfig
from cezsar.triplet_mining.mine import _ExactMiner
from cezsar.triplet_mining.rules import HIST_EDGES, pair_member, rank_in_group, ranges, draw_negatives
from cezsar.triplet_mining.sample import GROUP, KMAX, MIN_DRAWS, _layouts, sample_negatives


def _near(anchor: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly `cos` (up to rounding) from the unit vector `anchor`, in a random direction."""
    noise = rng.normal(size=anchor.shape)
    noise -= (noise @ anchor) * anchor
    noise /= np.linalg.norm(noise)
    return cos * anchor + np.sqrt(1.0 - cos * cos) * noise


def _video_table(captions_of_video: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exclude_same_video structure `mining.mine` builds: csr offsets, caption columns, sorted col * V + video."""
    nv = len(captions_of_video)
    offsets = np.r_[0, np.cumsum([len(c) for c in captions_of_video])].astype(np.int64)
    cols = np.array([c for cs in captions_of_video for c in cs], dtype=np.int64)
    vid = np.repeat(np.arange(nv), [len(c) for c in captions_of_video])
    return offsets, cols, np.sort(cols * nv + vid)


# --- exclude_same_video: a caption of the anchor's video is never a negative ---------------------------------------
def test_pair_member_finds_the_largest_key_and_rejects_queries_beyond_it():
    """The (caption, video) lookup behind exclude_same_video: the last key is a member, a pair above every key
    is not (and is no error)."""
    keys = np.array([10, 15, 2000], dtype=np.int64)  # pairs (5, v0), (7, v1), (1000, v0) with nb = 2 videos
    a = np.array([1000, 5, 7, 1001, 1023, 6, 0])
    b = np.array([0, 0, 1, 0, 1, 0, 0])
    assert pair_member(a, b, keys, 2).tolist() == [True, True, True, False, False, False, False]


def test_exclude_same_video_holds_for_the_last_caption_and_for_columns_past_every_caption():
    """Rejection draws (plentiful admissible candidates): the anchor's video's captions, among them the one with
    the largest (caption, video) key, are never drawn, while columns above every caption are drawn as usual;
    the admissible count leaves the video's captions out."""
    n_cand, n = 1024, 2
    mask = np.ones((1, n_cand), dtype=bool)  # every column admissible for the one positive row
    table = _video_table([[5, 1000], [7]])  # video 0 holds captions 5 and 1000 (the largest key), video 1 holds 7
    units = 10_000  # 10,000 x 10 draws: column 1000 would come up ~100 times if it were not excluded
    neg, count = draw_negatives(mask, np.zeros(units, dtype=np.int64), n, np.random.default_rng(0),
                                videos=np.zeros(units, dtype=np.int64), video_of_cand=table)
    assert (count == n_cand - 2).all()
    assert (neg >= 0).all() and (neg[:, 0] != neg[:, 1]).all()
    drawn = np.bincount(neg.ravel(), minlength=n_cand)
    assert drawn[5] == drawn[1000] == 0
    assert drawn[7] > 0 and drawn[1001:].sum() > 0  # another video's caption, and columns past every key
    assert drawn[0] > 0  # column 0 like any other: ~20 expected


def test_exclude_same_video_with_a_video_of_one_caption():
    """One positive whose video holds a single caption: that caption is out of its admissible set and never drawn
    (exact path: few admissible, every one of them drawn)."""
    mask = np.zeros((1, 40), dtype=bool)
    mask[0, [3, 11, 17, 30]] = True
    neg, count = draw_negatives(mask, np.zeros(1, dtype=np.int64), 10, np.random.default_rng(0),
                                videos=np.zeros(1, dtype=np.int64), video_of_cand=_video_table([[17]]))
    assert count.tolist() == [3]
    assert sorted(neg[0][neg[0] >= 0].tolist()) == [3, 11, 30] and (neg[0, 3:] == -1).all()


def test_banned_caption_zero_and_a_video_without_captions():
    """A negative is never the caption of its own segment (mining.mine's `banned`), caption 0 included, and is
    left out of the admissible count; a unit whose video holds no caption (the last one here) loses nothing."""
    mask = np.ones((2, 40), dtype=bool)
    mask[1, 9] = False  # row 1: caption 9 not admissible anyway
    banned = np.array([0, 0, 7, -1, 9])
    videos = np.array([0, 1, 0, 1, 1])
    neg, count = draw_negatives(mask, np.array([0, 0, 0, 0, 1]), 40, np.random.default_rng(0), banned=banned,
                                videos=videos, video_of_cand=_video_table([[3, 7], []]))
    # video 0 takes out 3 and 7; the banned caption once, and only when it was admissible
    assert count.tolist() == [37, 39, 38, 40, 39]
    for row, b, v, r in zip(neg, banned, videos, [0, 0, 0, 0, 1]):
        got = row[row >= 0].tolist()
        out = ({3, 7} if v == 0 else set()) | ({int(b)} if b >= 0 else set())
        assert sorted(got) == sorted(set(np.flatnonzero(mask[r]).tolist()) - out)


def test_rejection_draws_never_take_the_banned_caption():
    """The rejection path (plentiful admissible candidates) with n = 1: one draw completes a unit, and it is never
    its segment's caption, while column 0 is drawn like any other (uniform over the admissible columns)."""
    mask = np.ones((1, 1024), dtype=bool)
    units = 6000
    neg, count = draw_negatives(mask, np.zeros(units, dtype=np.int64), 1, np.random.default_rng(2),
                                banned=np.full(units, 5))
    assert (count == 1023).all() and (neg >= 0).all() and (neg != 5).all()
    assert np.bincount(neg.ravel(), minlength=1024)[0] > 0  # ~6 expected


def test_ranges_concatenates_aranges_including_empty_and_single_ones():
    """The caption columns of each unit's video (exclude_same_video): [start, start + len) per unit, in order; and
    the rank of each draw within its unit's run (empty input included)."""
    assert ranges(np.array([4, 9, 2]), np.array([2, 0, 3])).tolist() == [4, 5, 2, 3, 4]
    assert ranges(np.array([7]), np.array([1])).tolist() == [7]
    empty = ranges(np.array([3, 8]), np.array([0, 0]))
    assert empty.shape == (0,) and empty.dtype == np.int64
    assert ranges(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)).shape == (0,)
    assert rank_in_group(np.array([4, 4, 1, 7, 7, 7])).tolist() == [0, 1, 0, 0, 1, 2]  # draw rank per unit
    assert rank_in_group(np.zeros(0, dtype=np.int64)).shape == (0,)


# --- the sampled strategy ------------------------------------------------------------------------------------------
def _sample(emb: np.ndarray, n_cand: int, u_pos: np.ndarray, cfg: MiningConfig, group: int | None = None,
            seed: int = 0) -> tuple[np.ndarray, dict]:
    """sample_negatives on plain units (no banned caption, no video exclusion), the exact miner as its fallback."""
    banned = np.full(len(u_pos), -1, dtype=np.int64)
    u_vid = np.arange(len(u_pos), dtype=np.int64)
    rng = np.random.default_rng(seed)
    exact = _ExactMiner(emb, n_cand, u_pos, banned, u_vid, None, cfg, rng)
    return sample_negatives(emb, n_cand, u_pos, banned, u_vid, None, cfg, rng, exact, group=group)


def test_sampled_draw_obeys_the_paraphrase_guard():
    """max_sim (docs/fidelity.md switches) holds on the sampled path too: a candidate with cos >= max_sim is never a
    negative, though it passes the τ rule (cos > 1 - τ)."""
    rng = np.random.default_rng(3)
    d = 16
    anchor = np.eye(d)[0]
    cands = [_near(anchor, 0.99 if i % 2 else 0.8, rng) for i in range(400)]  # odd: paraphrases (cos 0.99)
    emb = np.stack(cands + [anchor]).astype(np.float32)  # the positive is row 400, not a candidate
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cfg = MiningConfig(tau=0.5, n_negatives=5, max_sim=0.95)
    u_pos = np.full(200, 400, dtype=np.int64)
    neg, summary = _sample(emb, 400, u_pos, cfg)
    assert summary["sample"]["fallback_positives"] == 0  # all took the sampled path
    assert (neg >= 0).all()
    assert (neg % 2 == 0).all()  # only the cos 0.8 candidates
    assert all(len(set(r)) == 5 for r in neg)


def _clustered(n_rows: int, d: int = 16, seed: int = 0) -> np.ndarray:
    """Unit rows around one direction: every pair has cos > 0.5 (admissible at τ = 0.5)."""
    rng = np.random.default_rng(seed)
    emb = np.eye(d)[0] + 0.05 * rng.normal(size=(n_rows, d))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert (emb @ emb.T).min() > 0.5
    return emb.astype(np.float32)


def test_units_of_one_sentence_draw_disjoint_negatives_in_a_round():
    """mining_sample: units of one sentence (the windows of a caption) with 2..KMAX units read disjoint parts of
    one pool, so the negatives they take in a round never coincide; here every unit fills its n in round 1.

    Candidates = KMAX pools of MIN_DRAWS exactly (round 1 draws max(2n, MIN_DRAWS) = MIN_DRAWS per unit), so a
    sentence of KMAX units still fits one pool; 1-, 2- and 4-unit sentences (none of 3), groups of 2 rows: units
    dealt one per row instead would read pools from different permutations, which overlap."""
    n_cand = KMAX * MIN_DRAWS  # 192
    emb = _clustered(n_cand)
    sizes = [1] * 3 + [2] * 120 + [KMAX] * 40
    u_pos = np.repeat(np.arange(len(sizes)), sizes)  # (U,) units of one sentence side by side
    perm = np.random.default_rng(1).permutation(len(u_pos))  # the dealing must not rely on the input order
    u_pos = u_pos[perm]
    n = 20
    neg, summary = _sample(emb, n_cand, u_pos, MiningConfig(tau=0.5, n_negatives=n), group=2)
    assert summary["sample"]["rounds_used"] == 1 and summary["sample"]["fallback_positives"] == 0
    assert (neg >= 0).all() and all(len(set(r)) == n for r in neg)
    assert (neg != u_pos[:, None]).all()
    for s in range(len(sizes)):
        rows = neg[u_pos == s]
        assert len(np.unique(rows)) == rows.size, f"sentence {s}: its units share a negative"


def test_layouts_score_every_unit_once_and_keep_a_sentence_out_of_a_group_twice():
    """The layouts of a round: every unit in exactly one slot (the scorer's threads and its `+=` counts rely on
    it), padding negative, a row's units share one sentence, and no group holds two rows of one sentence (they
    would read the same pool): sentences of 1..KMAX units, one of more than KMAX units, odd counts (padding)."""
    sizes = [1] * 8 + [2] * 5 + [3] * 3 + [4] * 3 + [KMAX + 3]
    u_pos = np.repeat(np.arange(len(sizes)), sizes)
    us = np.arange(len(u_pos))  # in sentence order, as sample_negatives deals them
    for group in (1, 2, 4, 128):
        grids = _layouts(us, u_pos, group, MIN_DRAWS, 10_000)
        slots = np.concatenate([g.ravel() for g in grids])
        assert sorted(slots[slots >= 0].tolist()) == us.tolist(), f"group {group}"
        assert (slots[slots < 0] < 0).all()
        for grid in grids:  # (G, g, K)
            assert grid.ndim == 3 and grid.shape[1] <= group
            for grp in grid:  # (g, K) one group: rows sharing a pool
                sents = []
                for row in grp:
                    real = row[row >= 0]
                    if len(real):
                        assert len(set(u_pos[real].tolist())) == 1  # a row is one sentence
                        sents.append(int(u_pos[real[0]]))
                assert len(sents) == len(set(sents)), f"group {group}: a sentence twice in one group"


def test_layouts_deal_a_many_unit_sentence_one_unit_per_group():
    """A sentence with more than KMAX units (a caption repeated across segments) alone in a round: each unit in a
    group of its own, so no two of them read one pool."""
    u_pos = np.zeros(KMAX + 2, dtype=np.int64)
    grids = _layouts(np.arange(len(u_pos)), u_pos, 128, MIN_DRAWS, 10_000)
    assert len(grids) == 1 and grids[0].shape == (KMAX + 2, 1, 1)
    assert sorted(grids[0].ravel().tolist()) == list(range(KMAX + 2))


def test_sampled_summary_counts_every_scored_pair_and_every_negative():
    """The sampled strategy's summary (mining.mine docstring): every positive with plentiful admissible candidates
    is served by its first pool (one round, no fallback); pairs_evaluated counts each positive x candidate pair
    scored (round 1: MIN_DRAWS per positive); with every candidate admissible the admissible estimate is the number
    of candidates; sim_hist bins each group's first positive against its pool, never a sentence against itself;
    neg_sim_hist bins every drawn negative at its cosine. 131 positives in groups of 128: padded slots."""
    n_cand, n_pos = 200, 131
    emb = _clustered(n_cand + n_pos, seed=4)  # rows >= n_cand: positives that are not candidates
    u_pos = np.arange(n_cand, n_cand + n_pos)
    neg, summary = _sample(emb, n_cand, u_pos, MiningConfig(tau=0.5, n_negatives=5))
    assert summary["sample"]["rounds_used"] == 1 and summary["sample"]["fallback_positives"] == 0
    assert summary["sample"]["group"] == GROUP and summary["positives_short"] == summary["positives_none"] == 0
    assert summary["sample"]["pairs_evaluated"] == n_pos * MIN_DRAWS
    assert summary["sample"]["pairs_per_positive"] == MIN_DRAWS
    assert summary["admissible_estimate"]["mean"] == summary["admissible_estimate"]["median"] == n_cand
    assert summary["admissible_estimate"]["note"]  # says what the two estimates are
    assert (neg >= 0).all()
    cos = np.einsum("ud,und->un", emb[u_pos], emb[neg])  # (U, n) cosines of the drawn negatives
    expect = np.histogram(cos, bins=HIST_EDGES)[0]
    assert summary["neg_sim_hist"]["counts"] == expect.tolist()
    assert summary["sim_hist"]["edges"] == HIST_EDGES.tolist()
    # groups of up to 128: 2 groups, so 2 first rows x MIN_DRAWS pairs, every cosine above 0.5
    hist = np.array(summary["sim_hist"]["counts"])
    assert hist.sum() == 2 * MIN_DRAWS and hist[HIST_EDGES[:-1] < 0.5].sum() == 0
    # a lone positive too: served by its first pool, not sent to the exact path
    neg, summary = _sample(emb, n_cand, u_pos[:1], MiningConfig(tau=0.5, n_negatives=5))
    assert summary["sample"]["rounds_used"] == 1 and summary["sample"]["fallback_positives"] == 0
    assert summary["sample"]["pairs_evaluated"] == MIN_DRAWS and (neg >= 0).all()
    # one candidate: every pool is that candidate, and the estimate is exactly 1
    neg, summary = _sample(emb, 1, u_pos[:3], MiningConfig(tau=0.5, n_negatives=1))
    assert neg.ravel().tolist() == [0, 0, 0] and summary["sample"]["pairs_evaluated"] == 3
    assert summary["admissible_estimate"]["mean"] == summary["admissible_estimate"]["median"] == 1


def test_sampled_pair_histogram_leaves_out_a_sentence_against_itself():
    """sim_hist of the sampled strategy, as the exact strategy's: a positive that is itself a candidate is not
    paired with itself (cos 1), and every group's first positive counts its whole pool otherwise; here every unit
    of the one sentence is a group of its own (units of one sentence never share a pool)."""
    rng = np.random.default_rng(5)
    d, n_cand, units = 16, 200, 10
    anchor = np.eye(d)[0]
    emb = np.stack([anchor] + [_near(anchor, 0.35 if i % 2 else 0.75, rng) for i in range(1, n_cand)])
    emb = emb.astype(np.float32)
    neg, summary = _sample(emb, n_cand, np.zeros(units, dtype=np.int64), MiningConfig(tau=0.8, n_negatives=5))
    assert summary["sample"]["rounds_used"] == 1
    hist = np.array(summary["sim_hist"]["counts"])  # bins of 0.1 from -1: 0.35 -> 13, 0.75 -> 17, 1.0 -> 19
    assert hist[19] == 0 and hist.sum() == hist[13] + hist[17]
    # 10 pools of MIN_DRAWS from permutations of 200: the anchor is in at most one pool of each of 3 permutations
    assert units * MIN_DRAWS - 3 <= hist.sum() <= units * MIN_DRAWS
    assert (neg >= 0).all() and (neg != 0).all()


def test_sampled_admissible_estimate_is_the_share_over_all_rounds():
    """admissible_estimate (mining_sample): the admissible share of a positive's draws over all its rounds times
    the candidates. Every positive admits 500 of 2,000 candidates and needs n = 20, so most need a second round;
    mean (round 1) and median (all rounds) both estimate 500; pairs_per_positive is the mean of its pairs."""
    rng = np.random.default_rng(6)
    d, n_cand, n_pos = 16, 2000, 120
    anchor = np.eye(d)[0]
    cands = [_near(anchor, 0.8 if i < 500 else 0.0, rng) for i in range(n_cand)]
    pos = [_near(anchor, 0.9999, rng) for _ in range(n_pos)]  # distinct sentences, all with the same 500
    emb = np.stack(cands + pos).astype(np.float32)
    u_pos = np.arange(n_cand, n_cand + n_pos)
    neg, summary = _sample(emb, n_cand, u_pos, MiningConfig(tau=0.5, n_negatives=20), group=8)  # 15 pools a round
    assert summary["sample"]["rounds_used"] >= 2 and summary["sample"]["fallback_positives"] == 0
    assert (neg >= 0).all() and (neg < 500).all() and all(len(set(r)) == 20 for r in neg)
    pairs = summary["sample"]["pairs_evaluated"]  # positives scored different numbers of pairs: a fractional mean
    assert pairs % n_pos and summary["sample"]["pairs_per_positive"] == round(pairs / n_pos, 1)
    assert round(pairs / n_pos, 1) != round(pairs / n_pos, 2)
    est = summary["admissible_estimate"]
    assert abs(est["mean"] - 500) < 0.15 * 500 and abs(est["median"] - 500) < 0.15 * 500
    # sim_hist is round 1's sample, kept over the later rounds: 15 groups, each one's first row x its pool
    assert sum(summary["sim_hist"]["counts"]) == 15 * MIN_DRAWS


def test_sampled_positive_never_takes_itself_as_its_negative():
    """Not the same sentence (paper §3.4 τ rule, docs/fidelity.md): a positive that is a candidate, with no other
    admissible candidate, never draws itself though its cosine 1 passes the rule; it ends with no negative. It is
    unit 0, the pools hold every candidate, and n = 1 (one wrong hit would complete it on the sampled path)."""
    rng = np.random.default_rng(7)
    d = 16
    e0, e1 = np.eye(d)[0], np.eye(d)[1]
    others = [_near(e0, 0.9, rng) for _ in range(MIN_DRAWS - 1)]  # candidates 1..47: admissible to each other
    emb = np.stack([e1] + others).astype(np.float32)  # candidate 0 = unit 0's sentence, cos ~0 to all others
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    u_pos = np.arange(MIN_DRAWS)
    neg, summary = _sample(emb, MIN_DRAWS, u_pos, MiningConfig(tau=0.5, n_negatives=1))
    assert summary["sample"]["fallback_positives"] == 1  # unit 0: no admissible candidate, the exact path says so
    assert (neg[0] == -1).all()
    assert (neg[1:] >= 0).all() and (neg != u_pos[:, None]).all()
    # the summary: unit 0 short with none (exact count 0); the others admit the 46 others of 1..47, all scored
    assert summary["positives_short"] == summary["positives_none"] == 1
    assert summary["admissible_fallback"] == {"mean": 0.0, "median": 0.0, "min": 0, "max": 0}
    assert summary["admissible_estimate"]["mean"] == round(47 * 46 / 48, 1)
    assert summary["admissible_estimate"]["median"] == 46


def test_sampled_negatives_stay_distinct_across_rounds():
    """No duplicates (paper §3.4 footnote 8: n distinct negatives): a positive holding one negative after a round
    never takes it again from a later pool. 20 positives admit exactly two candidates each (their own pair);
    200 more admit every candidate and keep the corpus-wide hit rate high, so a sparse positive holding one after
    round 1 stays on the sampled path for round 2 (not dearer than a full row), where its pool often repeats it."""
    d, n_x, n_common, n_dense = 24, 20, 80, 200
    e = np.eye(d)
    n_cand = 2 * n_x + n_common  # candidates: the pairs (2i, 2i + 1 for X_i), then the common ones
    u_pos = np.arange(n_cand, n_cand + n_x + n_dense)  # X_0..X_19, then the dense positives
    repeats = fell_back = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        pairs = [_near((e[0] + e[1 + i]) / np.sqrt(2), 0.98, rng) for i in range(n_x) for _ in range(2)]
        common = [_near(e[0], 0.98, rng) for _ in range(n_common + n_dense)]  # candidates, then dense positives
        xs = [e[1 + i] for i in range(n_x)]  # X_i: cos ~0.7 with its own pair, ~0 with everything else
        emb = np.stack(pairs + common[:n_common] + xs + common[n_common:]).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        neg, summary = _sample(emb, n_cand, u_pos, MiningConfig(tau=0.5, n_negatives=2), seed=seed)
        assert summary["sample"]["rounds_used"] >= 2
        for i in range(n_x):
            got = neg[i][neg[i] >= 0]
            assert set(got.tolist()) <= {2 * i, 2 * i + 1}
            repeats += len(got) - len(set(got.tolist()))
        assert (neg[n_x:] >= 0).all() and all(r[0] != r[1] for r in neg[n_x:])
        # neg_sim_hist: every drawn negative once, sampled or from the exact fallback
        got = neg >= 0
        cos = np.einsum("ud,und->un", emb[u_pos], emb[np.maximum(neg, 0)])[got]
        _off_edges(cos)
        assert summary["neg_sim_hist"]["counts"] == np.histogram(cos, bins=HIST_EDGES)[0].tolist()
        fell_back += summary["sample"]["fallback_positives"]
    assert repeats == 0 and fell_back > 0


# --- the exact strategy --------------------------------------------------------------------------------------------
def _off_edges(cos: np.ndarray) -> None:
    """Precondition of a histogram comparison: no cosine within float32 rounding of an inner bin edge, none outside
    [-1, 1] (a cosine of exactly 1 falls in the last bin either way)."""
    assert np.abs(cos[..., None] - HIST_EDGES[1:-1]).min() > 1e-5 and (np.abs(cos) <= 1.0).all()


@pytest.mark.parametrize("max_sim", [None, 0.9])
def test_exact_miner_counts_draws_and_histograms_against_brute_force(max_sim):
    """The exact strategy (mining._ExactMiner) over blocks of positive sentences: per unit its exact admissible count
    (τ rule, not itself, not its banned caption, below max_sim when set), n distinct admissible negatives (all of
    them when fewer), the pair histogram of every distinct positive sentence against every candidate but itself
    (near-opposite pairs in the first bin included), and the histogram of the drawn negatives' cosines. Units given
    out of order, sentences repeated, blocks of 3 sentences (the last holds one unit)."""
    rng = np.random.default_rng(8)
    n_cand, n_sent, d, n = 120, 130, 8, 6
    emb = rng.normal(size=(n_sent, d)) + 1.2 * np.eye(d)[0]
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    emb[100:103] = [_near(-emb[3], 0.97, rng) for _ in range(3)]  # cos ~ -0.97 with sentence 3: the first bin
    emb = emb.astype(np.float32)
    cos = emb.astype(np.float64) @ emb[:n_cand].T.astype(np.float64)  # (S, C)
    u_pos = np.array([3, 3, 3, 17, 40, 40, 125, 126, 126, 5, 77, 99, 0, 0, 64, 128], dtype=np.int64)
    banned = np.full(len(u_pos), -1, dtype=np.int64)
    banned[[6, 7, 15]] = [4, 9, 11]  # object positives (rows >= n_cand) never take their segment's caption
    u_vid = np.arange(len(u_pos), dtype=np.int64)
    cfg = MiningConfig(tau=0.4, n_negatives=n, block=3, max_sim=max_sim)
    units = np.array([9, 2, 15, 0, 11, 7, 4, 13, 1, 6, 12, 3, 8, 14, 5])  # unit 10 left out
    miner = _ExactMiner(emb, n_cand, u_pos, banned, u_vid, None, cfg, np.random.default_rng(0))
    neg, count, hist, neg_hist = miner(units)

    sents = np.unique(u_pos[units])
    pair_cos = np.concatenate([np.delete(cos[s], s) if s < n_cand else cos[s] for s in sents])
    _off_edges(pair_cos)
    assert hist.tolist() == np.histogram(pair_cos, bins=HIST_EDGES)[0].tolist()
    drawn = []
    for i, u in enumerate(units):
        s = u_pos[u]
        ok = cos[s] > 1 - cfg.tau
        if max_sim is not None:
            ok &= cos[s] < max_sim
        if s < n_cand:
            ok[s] = False
        if banned[u] >= 0:
            ok[banned[u]] = False
        assert count[i] == ok.sum(), f"unit {u}"
        got = neg[i][neg[i] >= 0]
        assert len(got) == min(n, ok.sum()) and len(set(got.tolist())) == len(got) and ok[got].all()
        assert (neg[i][len(got):] == -1).all()
        drawn.append(cos[s, got])
    assert 0 < count.min() < n < count.max()  # short and plentiful positives both
    assert (pair_cos < -0.9).sum() == 3 and (pair_cos >= 0.9).sum() > 0  # first bin; above the paraphrase guard
    drawn = np.concatenate(drawn)
    _off_edges(drawn)
    assert neg_hist.tolist() == np.histogram(drawn, bins=HIST_EDGES)[0].tolist()


def test_exact_miner_samples_the_pair_histogram_over_many_candidates():
    """Beyond 2,047 candidates the exact strategy's pair histogram takes every (C // 1024)-th candidate (a sample;
    mining._ExactMiner.stride): 2,100 candidates, stride 2, the positive itself (an even column) left out; a
    duplicate of it (cos exactly 1) in the last bin, near-opposite and near-equal candidates in the end bins."""
    rng = np.random.default_rng(9)
    n_cand, d = 2100, 8
    emb = rng.normal(size=(n_cand, d))
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    emb[10] = emb[12] = np.eye(d)[0]  # another sentence with the same embedding: cos exactly 1 in float32
    emb[14], emb[16] = _near(-emb[10], 0.97, rng), _near(emb[10], 0.95, rng)  # cos ~ -0.97 and ~ 0.95
    emb = emb.astype(np.float32)
    u_pos = np.array([10, 11], dtype=np.int64)  # one even (in the sample), one odd (not)
    cfg = MiningConfig(tau=0.9, n_negatives=3, block=4096)
    miner = _ExactMiner(emb, n_cand, u_pos, np.full(2, -1), np.arange(2), None, cfg, np.random.default_rng(0))
    assert miner.stride == 2
    _, _, hist, _ = miner(np.arange(2))
    cos = emb[[10, 11]].astype(np.float64) @ emb[::2].T.astype(np.float64)  # (2, 1050)
    sample = np.r_[np.delete(cos[0], 5), cos[1]]  # column 5 of the sample is candidate 10 itself
    _off_edges(sample)
    assert hist.tolist() == np.histogram(sample, bins=HIST_EDGES)[0].tolist()


# --- the last survivors of the mutation run -------------------------------------------------------------------------
def test_each_unit_draws_uniformly_whatever_the_other_units_drew():
    """Units are independent draws (paper §3.4 footnote 8: each positive's negatives uniform over its admissible
    set): on the rejection path a draw is dropped only as a repeat of the *same* unit's column, never because
    another unit drew something. 40 blocks of 128 units, all 128 columns admissible, n = 1: each unit's one
    negative is uniform on 0..127 (mean 63.5, sd 36.9; sd of the mean of 5,120 draws 0.52). A key that lets
    unit u + 128 j collide with unit u (e.g. u / C + c instead of u * C + c) drops the later units' low columns
    and pushes the mean far up."""
    n_cand, units = 128, 128 * 40
    mask = np.ones((1, n_cand), dtype=bool)
    neg, count = draw_negatives(mask, np.zeros(units, dtype=np.int64), 1, np.random.default_rng(11))
    assert (count == n_cand).all() and (neg >= 0).all()
    late = neg[units // 2:, 0]  # the half with the most earlier units to collide with
    assert abs(neg.mean() - 63.5) < 6 * 36.9 / np.sqrt(units)
    assert abs(late.mean() - 63.5) < 6 * 36.9 / np.sqrt(len(late))
    counts = np.bincount(neg[:, 0], minlength=n_cand)  # 40 expected per column
    chi2 = float(((counts - 40.0) ** 2 / 40.0).sum())  # 127 degrees of freedom: mean 127, sd 15.9
    assert chi2 < 127 + 6 * 15.9


def test_sampled_summary_keeps_one_decimal_and_names_the_histogram_edges():
    """The sampled strategy's summary, as triplets' meta and notebook 02 read it: the admissible estimates are
    floats rounded to one decimal (not integers, not two decimals), and each histogram carries its bin `edges`
    (HIST_EDGES) beside its counts, for sim_hist and neg_sim_hist alike."""
    rng = np.random.default_rng(6)
    d, n_cand, n_pos = 16, 2000, 120
    anchor = np.eye(d)[0]
    cands = [_near(anchor, 0.8 if i < 500 else 0.0, rng) for i in range(n_cand)]
    pos = [_near(anchor, 0.9999, rng) for _ in range(n_pos)]
    emb = np.stack(cands + pos).astype(np.float32)
    _, summary = _sample(emb, n_cand, np.arange(n_cand, n_cand + n_pos), MiningConfig(tau=0.5, n_negatives=20),
                         group=8)
    for key in ("mean", "median"):
        v = summary["admissible_estimate"][key]
        assert isinstance(v, float) and v == round(v, 1), (key, v)
        assert v != round(v), (key, v)  # a fractional estimate here: the rounding is visible
    for hist in ("sim_hist", "neg_sim_hist"):
        assert summary[hist]["edges"] == HIST_EDGES.tolist()
        assert len(summary[hist]["counts"]) == len(HIST_EDGES) - 1
