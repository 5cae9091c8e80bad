"""Hard negative mining: the vectorised miner against a plain-loop reference, rule properties, split, bytes."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from cezsar.triplet_mining import mine as mining
from cezsar.config import MiningConfig
from cezsar.formats.captions import Captions, Segment
from cezsar.triplet_mining.mine import mine
from cezsar.formats.triplets import TripletSet
from cezsar.triplet_mining.rules import draw_negatives, random_windows

from paper_fixture import REFERENCE

REF = REFERENCE / "activitynet_captions" / "train.json"


def make_corpus(n_videos: int = 30, seed: int = 0, dim: int = 16, pool: int = 60):
    """Captions whose embeddings form topic clusters, with duplicate texts across and within videos."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(5, dim))
    segs, vecs = [], {}
    for v in range(n_videos):
        dur = float(rng.uniform(20, 120))
        for j in range(int(rng.integers(2, 6))):
            a = float(rng.uniform(0, dur - 2))
            b = float(min(dur, a + rng.uniform(1, 40)))
            text = f"topic {v % 5} sentence {int(rng.integers(0, pool))}"  # repeats happen on purpose
            vecs.setdefault(text, topics[v % 5] + rng.normal(scale=1.2, size=dim))
            segs.append(Segment(f"v_{v:03d}", a, b, text))
    durations = {s.video_id: max(x.end for x in segs if x.video_id == s.video_id) for s in segs}
    return Captions(segs, durations, {}, {}), (lambda sents: np.stack([vecs[s] for s in sents]))


def reference_admissible(ts: TripletSet, emb_fn, captions, cfg: MiningConfig) -> dict:
    """Plain loops: per (segment, window, positive), the admissible candidate texts under cfg's rule."""
    cands = list(dict.fromkeys(s.sentence for s in captions.segments))
    in_video: dict[str, set[str]] = {}
    for s in captions.segments:
        in_video.setdefault(s.video_id, set()).add(s.sentence)
    out = {}
    for seg_i, seg in enumerate(captions.segments):
        p = emb_fn([seg.sentence])[0]
        allowed = set()
        for c in cands:
            q = emb_fn([c])[0]
            cos = float(p @ q / (np.linalg.norm(p) * np.linalg.norm(q)))
            ok = cos > 1 - cfg.tau and c != seg.sentence
            if cfg.exclude_same_video and c in in_video[seg.video_id]:
                ok = False
            if cfg.max_sim is not None and cos >= cfg.max_sim:
                ok = False
            if ok:
                allowed.add(c)
        out[seg_i] = allowed
    return out


def grouped(ts: TripletSet) -> dict:
    """(segment, window start) -> set of negative texts, and the list (to check distinctness)."""
    groups: dict = {}
    for seg, st, neg in zip(ts.segment, ts.start, ts.neg):
        groups.setdefault((int(seg), float(st)), []).append(ts.sentences[neg])
    return groups


@pytest.mark.parametrize("switches", [{}, {"exclude_same_video": True}, {"max_sim": 0.9}, {"tau": 0.6}])
def test_miner_equals_loop_reference(switches):
    captions, emb_fn = make_corpus()
    # n larger than any admissible set: the drawn negatives ARE the admissible set
    cfg = replace(MiningConfig(), n_negatives=10_000, block=7, **switches)
    ts = mine(captions, emb_fn, None, cfg)
    ref = reference_admissible(ts, emb_fn, captions, cfg)
    groups = grouped(ts)
    assert len(ts) == sum(cfg.windows_per_segment * len(r) for r in ref.values())
    for (seg_i, _), got in groups.items():
        cnt = Counter(got)  # windows of a short segment share a start: each text then appears once per window
        assert set(cnt) == ref[seg_i], f"segment {seg_i}"
        assert len(set(cnt.values())) == 1
    counts = np.array([len(ref[i]) for i in ref for _ in range(cfg.windows_per_segment)])
    assert ts.summary["admissible"]["max"] == counts.max()
    assert ts.summary["admissible"]["mean"] == pytest.approx(counts.mean(), abs=1e-3)
    assert ts.summary["positives_short"] == cfg.windows_per_segment * len(captions.segments)
    assert 0 < ts.summary["admissible"]["mean"] < ts.summary["candidates"]  # the rule does select


@pytest.mark.parametrize("switches", [{}, {"exclude_same_video": True, "max_sim": 0.95}])
def test_small_n_draws_from_the_reference_set(switches):
    """n = 2 of 75-185 admissible: both sampling paths (rejection draws when (1.5n + 6) C / k <= C // 16)."""
    captions, emb_fn = make_corpus(n_videos=100, seed=1, pool=100)
    n = 2
    cfg = replace(MiningConfig(), n_negatives=n, tau=1.0, block=16, **switches)
    ts = mine(captions, emb_fn, None, cfg)
    c = ts.summary["candidates"]
    assert ts.summary["admissible"]["min"] < (1.5 * n + 6) * c / (c // 16) < ts.summary["admissible"]["max"]
    ref = reference_admissible(ts, emb_fn, captions, cfg)
    for (seg_i, _), negs in grouped(ts).items():
        k = min(n, len(ref[seg_i]))  # triplets are unit-major: windows sharing a start follow each other
        assert k > 0 and len(negs) % k == 0
        for i in range(0, len(negs), k):
            assert len(set(negs[i:i + k])) == k
        assert set(negs) <= ref[seg_i]
    assert all(ts.sentences[p] != ts.sentences[q] for p, q in zip(ts.pos, ts.neg))


def test_rejection_path_is_uniform_and_exact_path_agrees():
    rng = np.random.default_rng(0)
    cols = 800
    row = np.zeros(cols, dtype=bool)
    row[rng.choice(cols, 400, replace=False)] = True  # dense: (1.5n + 6) C / k = 27 <= C // 16 rejection draws
    sparse = np.zeros(cols, dtype=bool)
    sparse[rng.choice(cols, 30, replace=False)] = True  # few admissible: exact masked sampling
    mask = np.stack([row, sparse])
    units = np.r_[np.zeros(8000, int), np.ones(2000, int)]
    neg, count = draw_negatives(mask, units, 5, np.random.default_rng(1))
    assert (count == np.where(units == 0, 400, 30)).all() and (neg >= 0).all()
    assert all(len(set(r)) == 5 for r in neg)
    for r, n_adm, draws in ((0, 400, 8000), (1, 30, 2000)):
        freq = np.bincount(neg[units == r].ravel(), minlength=cols)
        assert (freq[~mask[r]] == 0).all()
        expect = draws * 5 / n_adm  # 100 and 333 per admissible column under uniform sampling
        assert freq[mask[r]].min() > 0.5 * expect and freq[mask[r]].max() < 1.5 * expect


def test_tau_monotone_and_no_self_negative():
    captions, emb_fn = make_corpus(seed=2)
    totals = []
    for tau in (0.5, 0.7, 0.9, 1.1):
        ts = mine(captions, emb_fn, None, replace(MiningConfig(), tau=tau, n_negatives=10_000))
        totals.append(len(ts))
        assert not np.any(np.array(ts.sentences)[ts.pos] == np.array(ts.sentences)[ts.neg])
    assert totals == sorted(totals) and totals[0] < totals[-1]


def test_exclude_same_video():
    captions, emb_fn = make_corpus(seed=3)
    texts_of = {}
    for s in captions.segments:
        texts_of.setdefault(s.video_id, set()).add(s.sentence)
    base = mine(captions, emb_fn, None, replace(MiningConfig(), tau=1.0, n_negatives=10_000))
    leaks = sum(base.sentences[n] in texts_of[base.video_ids[v]] for v, n in zip(base.video, base.neg))
    assert leaks > 0  # the released rule does draw captions of the anchor's own video
    ts = mine(captions, emb_fn, None, replace(MiningConfig(), tau=1.0, exclude_same_video=True))
    assert all(ts.sentences[n] not in texts_of[ts.video_ids[v]] for v, n in zip(ts.video, ts.neg))


def test_video_split_and_windows():
    n_videos = 40
    captions, emb_fn = make_corpus(n_videos=n_videos, seed=4)
    cfg = replace(MiningConfig(), val_fraction=0.25)
    ts = mine(captions, emb_fn, None, cfg)
    val_v, train_v = set(ts.video[ts.val]), set(ts.video[~ts.val])
    n_val = round(n_videos * cfg.val_fraction)
    assert not val_v & train_v and len(val_v) == n_val and len(train_v) == n_videos - n_val
    seg = captions.segments
    s0 = np.array([seg[i].start for i in ts.segment])
    s1 = np.array([seg[i].end for i in ts.segment])
    assert (ts.start >= s0 - 1e-4).all() and (ts.end <= s1 + 1e-4).all()
    assert (ts.end - ts.start <= cfg.window_seconds + 1e-4).all()
    short = s1 - s0 <= cfg.window_seconds
    np.testing.assert_allclose(ts.start[short], s0[short], atol=1e-4)
    n_windows, seconds = 50, 10.0
    w0, w1 = random_windows(np.array([0.0]), np.array([100.0]), n_windows, seconds, np.random.default_rng(0))
    assert len(np.unique(w0)) == n_windows and np.allclose(w1 - w0, seconds)


def test_same_seed_same_bytes(tmp_path):
    captions, emb_fn = make_corpus(seed=5)
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    mine(captions, emb_fn, None, MiningConfig(seed=3)).save(a)
    mine(captions, emb_fn, None, MiningConfig(seed=3)).save(b)
    mine(captions, emb_fn, None, MiningConfig(seed=4)).save(c)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    ts = TripletSet.load(a)
    assert ts.pos.dtype == np.int32 and ts.val.dtype == bool and len(ts) == ts.summary["triplets"]
    assert ts.sentences[0] == captions.segments[0].sentence


@pytest.mark.parametrize("strategy", ["auto", "sample"])  # auto = exact here; sample: the banned-caption path
def test_object_positives(monkeypatch, strategy):
    captions, emb_fn = make_corpus(n_videos=10, seed=6)
    labels = [f"object {i}: a thing" for i in range(8)]
    vecs = {t: np.random.default_rng(i).normal(size=16) for i, t in enumerate(labels)}

    def window_objects(indices, scores, start, end, k):
        return [int(i) for i in indices[int(start), :k]]

    monkeypatch.setattr(mining, "object_sentences", lambda space: labels)
    monkeypatch.setattr(mining, "window_objects", window_objects)

    class Store:
        label_space = "imagenet1k"

        def objects(self, vid):  # video 0 has no object data: captions-only there
            if vid == "v_000":
                return None
            idx = np.tile(np.arange(8, dtype=np.int32)[None, :3], (200, 1))
            return idx, np.ones_like(idx, dtype=np.float16)

    both = lambda s: np.stack([vecs[x] if x in vecs else emb_fn([x])[0] for x in s])  # noqa: E731
    ts = mine(captions, both, Store(), MiningConfig(n_negatives=3, object_negatives=False, object_positives=2), strategy=strategy)
    n_seg0 = sum(s.video_id == "v_000" for s in captions.segments)
    s = ts.summary
    assert s["object_positives"] == 2 * 3 * (len(captions.segments) - n_seg0)
    assert s["caption_positives"] == 3 * len(captions.segments)
    if strategy == "sample":
        assert s["strategy"] == "sample" and s["sample"]["fallback_positives"] < s["positives"] // 4
    obj = np.array([ts.sentences[p] in vecs for p in ts.pos])
    assert obj.any() and not any(ts.sentences[n] in vecs for n in ts.neg)  # negatives are captions only
    own = [captions.segments[g].sentence for g in ts.segment]
    assert all(ts.sentences[n] != o for n, o in zip(ts.neg, own))  # never the segment's own caption

    # default: object sentences are candidates too, so both kinds of sentence occur as positives and negatives
    ts = mine(captions, both, Store(), MiningConfig(n_negatives=3, tau=1.5, object_positives=2), strategy=strategy)  # tau > 1: all admissible
    assert ts.summary["candidates"] == len(ts.sentences)
    assert any(ts.sentences[n] in vecs for n in ts.neg) and any(ts.sentences[n] not in vecs for n in ts.neg)
    assert all(n != p for n, p in zip(ts.neg, ts.pos))
    own = [captions.segments[g].sentence for g in ts.segment]
    assert all(ts.sentences[n] != o for n, o in zip(ts.neg, own))


@pytest.mark.slow
def test_real_captions_subset():
    """Real ActivityNet captions + real MiniLM on a 2,000-sentence slice (the full 37k run is the benchmark)."""
    if not REF.exists():
        pytest.skip("reference data absent")
    from cezsar.formats.captions import read_activitynet
    from cezsar.encoders.text import SentenceEncoder

    n_segments = 2000
    cap = read_activitynet(REF)
    sub = Captions(cap.segments[:n_segments], cap.durations, {}, {})
    enc = SentenceEncoder("minilm")
    means = []
    for tau in (0.7, 0.8, 0.9):
        cfg = MiningConfig(tau=tau)
        ts = mine(sub, enc, None, cfg)
        s = ts.summary
        positives = n_segments * cfg.windows_per_segment  # one caption positive per window
        assert s["segments"] == n_segments and s["caption_positives"] == positives
        means.append(s["admissible"]["mean"])
        # n negatives per positive, fewer only for the positives whose admissible set is short of n
        assert cfg.n_negatives * (positives - s["positives_short"]) <= s["triplets"] == len(ts)
        assert s["triplets"] <= cfg.n_negatives * positives
        assert not np.any(np.array(ts.sentences)[ts.pos] == np.array(ts.sentences)[ts.neg])
    assert means[0] < means[1] < means[2]
    ts = mine(sub, enc, None, MiningConfig(tau=0.8), strategy="sample")  # the sampled path on real text
    e = enc.encode(ts.sentences)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    assert ts.summary["strategy"] == "sample" and ts.summary["triplets"] >= 10 * (6000 - ts.summary["positives_short"])
    assert (np.einsum("nd,nd->n", e[ts.pos], e[ts.neg]) > 0.2).all() and not (ts.pos == ts.neg).any()
    assert ts.summary["admissible_estimate"]["mean"] == pytest.approx(means[1], rel=0.1)


@pytest.mark.slow
def test_cli_mine_real_minilm(tmp_path, capsys):
    """`cezsar mine` end to end on a tiny ActivityNet-form file with the real MiniLM encoder."""
    import json

    from cezsar.cli import main

    data = {
        "v_a": {"duration": 30.0, "timestamps": [[0, 25], [5, 9]],
                "sentences": ["A man rides a horse on a beach.", " A man is riding a brown horse."]},
        "v_b": {"duration": 40.0, "timestamps": [[2, 30], [10, 38]],
                "sentences": ["A woman chops onions in a kitchen.", "A cook slices vegetables on a board."]},
        "v_c": {"duration": 20.0, "timestamps": [[0, 20]], "sentences": ["Two kids play football in a park."]},
    }
    src, out = tmp_path / "train.json", tmp_path / "trip.npz"
    src.write_text(json.dumps(data))
    argv = ["mine", "--captions", str(src), "--out", str(out), "--negatives", "2", "--tau", "0.95",
            "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    ts = TripletSet.load(out)
    assert summary["triplets"] == len(ts) > 0 and summary["encoded_now"] == 5
    assert "384d" in ts.text_model and summary["segments"] == 5
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["encoded_now"] == 0  # the second run reads the cache
    # a path that does not exist is a usage error (exit 2, docs/errors.md), named on one line
    assert main(["mine", "--captions", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "missing.json: no such captions file" in capsys.readouterr().err


# --- the sampled strategy (mining_sample): same rule, random candidate batches, exact fallback -------------
def _units(ts: TripletSet, ref: dict, n: int) -> list:
    """Split each (segment, window start) run into units of min(n, |admissible|) negatives (unit-major)."""
    out = []
    for (seg_i, _), negs in grouped(ts).items():
        k = min(n, len(ref[seg_i]))
        assert k > 0 and len(negs) % k == 0
        out += [(seg_i, negs[i:i + k]) for i in range(0, len(negs), k)]
    return out


@pytest.mark.parametrize("switches", [{}, {"exclude_same_video": True, "max_sim": 0.95}])
def test_sample_strategy_obeys_the_rule(switches):
    captions, emb_fn = make_corpus(n_videos=100, seed=1, pool=100)
    cfg = replace(MiningConfig(), n_negatives=5, tau=0.9, **switches)
    ts = mine(captions, emb_fn, None, cfg, strategy="sample")
    s = ts.summary
    assert s["strategy"] == "sample" and s["sim_hist_source"] == "sampled pairs"
    assert s["sample"]["fallback_positives"] < s["positives"] // 4  # most positives took the sampled path
    ref = reference_admissible(ts, emb_fn, captions, cfg)
    units = _units(ts, ref, 5)
    assert len(units) == s["positives"]
    for seg_i, negs in units:
        assert len(set(negs)) == len(negs) == 5  # distinct, and every positive has >= 53 admissible here
        assert set(negs) <= ref[seg_i]  # brute-force rule, exclusions included
    assert all(ts.sentences[p] != ts.sentences[q] for p, q in zip(ts.pos, ts.neg))
    exact = mine(captions, emb_fn, None, cfg, strategy="exact").summary["admissible"]["mean"]
    assert s["admissible_estimate"]["mean"] == pytest.approx(exact, rel=0.15)


def test_sample_fallback_gives_exact_sets_to_short_positives():
    captions, emb_fn = make_corpus(n_videos=100, seed=1, pool=100)
    cfg = replace(MiningConfig(), n_negatives=60, tau=0.9)  # admissible sets span 53..155: some short of n
    ts = mine(captions, emb_fn, None, cfg, strategy="sample")
    ref = reference_admissible(ts, emb_fn, captions, cfg)
    n = cfg.n_negatives
    short = sum(cfg.windows_per_segment for r in ref.values() if len(r) < n)
    assert 0 < short == ts.summary["positives_short"] < ts.summary["positives"]
    for seg_i, negs in _units(ts, ref, n):
        assert len(set(negs)) == len(negs)
        if len(ref[seg_i]) < n:
            assert set(negs) == ref[seg_i]  # a short positive gets its whole (exact) admissible set
        else:
            assert len(negs) == n and set(negs) <= ref[seg_i]


def test_sample_same_seed_same_bytes(tmp_path):
    captions, emb_fn = make_corpus(seed=5)
    paths = [tmp_path / f"{i}.npz" for i in range(3)]
    for p, seed in zip(paths, (3, 3, 4)):
        mine(captions, emb_fn, None, MiningConfig(seed=seed, tau=1.0), strategy="sample").save(p)
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()
    assert TripletSet.load(paths[0]).summary["strategy"] == "sample"


def test_sample_draws_uniformly_from_the_admissible_set(monkeypatch):
    """One positive text in 400 segments (1,200 units) with 300 admissible of 2,300 candidates: 20 hits each."""
    rng = np.random.default_rng(7)
    d = 12
    anchor = np.eye(d)[0]
    vecs = {"anchor": anchor}
    n_anchor_segments = 400
    segs = [Segment(f"a{i}", 0.0, 5.0, "anchor") for i in range(n_anchor_segments)]
    for i in range(2300):
        noise = rng.normal(size=d)
        noise[0] = 0.0
        noise /= np.linalg.norm(noise)
        c = 0.8 if i < 300 else rng.uniform(-0.3, 0.3)  # admissible (cos > 0.5) iff i < 300
        vecs[f"cand {i}"] = c * anchor + np.sqrt(1 - c * c) * noise
        segs.append(Segment(f"c{i}", 0.0, 5.0, f"cand {i}"))
    captions = Captions(segs, {s.video_id: 5.0 for s in segs}, {}, {})
    n = 5

    exact_units = []
    real_call = mining._ExactMiner.__call__
    monkeypatch.setattr(mining._ExactMiner, "__call__",
                        lambda self, units: exact_units.append(units.copy()) or real_call(self, units))
    cfg = MiningConfig(tau=0.5, n_negatives=n)
    ts = mine(captions, lambda s: np.stack([vecs[x] for x in s]), None, cfg, strategy="sample")
    units = n_anchor_segments * cfg.windows_per_segment  # the anchor text's units come first
    fell_back = np.concatenate(exact_units) if exact_units else np.zeros(0, int)
    assert (fell_back < units).sum() < units // 20  # (nearly) all of the anchor's units took the sampled path
    is_anchor = np.array(ts.sentences)[ts.pos] == "anchor"
    assert is_anchor.sum() == units * n
    negs = ts.neg[is_anchor].reshape(units, n)
    assert all(len(set(r)) == n for r in negs)
    freq = Counter(ts.sentences[j] for j in negs.ravel())
    assert set(freq) <= {f"cand {i}" for i in range(300)}
    f = np.array([freq.get(f"cand {i}", 0) for i in range(300)])
    expect = units * n / 300
    chi2 = float(((f - expect) ** 2 / expect).sum())  # ~ chi-square, 299 dof: mean 299, sd 24.5
    assert f.min() > 0.25 * expect and f.max() < 2.5 * expect and chi2 < 299 + 6 * 24.5


def test_auto_strategy_threshold(monkeypatch):
    import cezsar.triplet_mining.sample as ms

    captions, emb_fn = make_corpus(seed=8)
    assert ms.pick_strategy("auto", ms.AUTO_EXACT_MAX) == "exact"
    assert ms.pick_strategy("auto", ms.AUTO_EXACT_MAX + 1) == "sample"
    assert mine(captions, emb_fn, None, MiningConfig()).summary["strategy"] == "exact"
    monkeypatch.setattr(ms, "AUTO_EXACT_MAX", 10)
    assert mine(captions, emb_fn, None, MiningConfig()).summary["strategy"] == "sample"
    with pytest.raises(ValueError, match="strategy"):
        mine(captions, emb_fn, None, MiningConfig(), strategy="fast")
