"""The paper's rules at their boundaries (issue 31): the τ rule at exactly 1 − τ, and the rules a mutation run
(benchmarks/mutation.sh) found unprotected by the rest of the fast tier."""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from cezsar.formats.captions import Captions, Segment
from cezsar.config import MiningConfig
from cezsar.triplet_mining.mine import mine
from cezsar.triplet_mining.rules import admissible, rule_mask

# τ = 0.75 makes 1 − τ = 0.25 exactly in binary floating point, and every vector below has dyadic components and
# unit norm, so float32 cosines land on 0.25 exactly (no rounding hides the boundary).
TAU = 0.75
DIM = 6


def _boundary_vectors() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Unit vectors whose cosine with e0 is exactly 0.25 ("at") or exactly 0.5 ("above")."""
    at, above = [], []
    for perm in sorted(set(itertools.permutations((0.75, 0.5, 0.25, 0.25)))):  # 1/16 + 9/16 + 4/16 + 1/16 + 1/16
        for signs in itertools.product((1.0, -1.0), repeat=4):
            at.append(np.array((0.25,) + tuple(s * p for s, p in zip(signs, perm)) + (0.0,)))
    for dims in itertools.combinations(range(1, DIM), 3):  # 1/4 * 4 = 1
        for signs in itertools.product((1.0, -1.0), repeat=3):
            v = np.zeros(DIM)
            v[0] = 0.5
            v[list(dims)] = np.array(signs) * 0.5
            above.append(v)
    return at, above


def test_boundary_vectors_are_exactly_at_one_minus_tau():
    at, above = _boundary_vectors()
    e0 = np.eye(DIM, dtype=np.float32)[0]
    assert 1.0 - TAU == 0.25
    for v in at + above:
        assert np.float32(np.linalg.norm(v.astype(np.float32))) == 1.0
    assert {float(np.float32(v).astype(np.float32) @ e0) for v in at} == {0.25}
    assert {float(np.float32(v).astype(np.float32) @ e0) for v in above} == {0.5}


@pytest.mark.parametrize("tau", [0.75, 0.8, 0.7, 0.9, 0.5])
def test_similarity_exactly_at_one_minus_tau_is_not_similar(tau):
    """Paper §3.4: two sentences are similar iff cos > 1 − τ (strict). At exactly 1 − τ a pair is *not* similar:
    the released rule (negatives must be similar) refuses it, the "different" rule (negatives must not be
    similar) takes it, and the two rules split every cosine between them."""
    edge = 1.0 - tau
    sim = np.array([[np.nextafter(edge, -2.0), edge, np.nextafter(edge, 2.0)]])  # (1, 3): below, at, above
    released = rule_mask(sim, tau, "released")
    different = rule_mask(sim, tau, "different")
    assert released.tolist() == [[False, False, True]]
    assert different.tolist() == [[True, True, False]]
    # through `admissible` too (identity exclusion must not change the verdict on other columns)
    ids = np.array([0])
    assert admissible(sim, ids, np.array([1, 2, 3]), tau, "released").tolist() == [[False, False, True]]
    assert admissible(sim, ids, np.array([1, 2, 3]), tau, "different").tolist() == [[True, True, False]]


def test_max_sim_guard_drops_a_cosine_equal_to_max_sim():
    """The paraphrase guard drops cos >= max_sim: a cosine exactly at max_sim is dropped, just below is kept."""
    sim = np.array([[0.5, np.nextafter(0.5, 0.0), 0.25]])
    assert rule_mask(sim, 0.75, "released", max_sim=0.5).tolist() == [[False, True, False]]


def _boundary_corpus():
    at, above = _boundary_vectors()
    vecs = {"anchor": np.eye(DIM)[0]}
    vecs.update({f"at {i}": v for i, v in enumerate(at)})
    vecs.update({f"above {i}": v for i, v in enumerate(above)})
    segs = [Segment(f"v_{i:03d}", 0.0, 5.0, text) for i, text in enumerate(vecs)]
    captions = Captions(segs, {s.video_id: 5.0 for s in segs}, {}, {})
    return captions, (lambda sents: np.stack([vecs[s] for s in sents]).astype(np.float32))


@pytest.mark.parametrize("rule", ["released", "different"])
@pytest.mark.parametrize("strategy", ["exact", "sample"])
def test_mined_negatives_respect_the_boundary(rule, strategy):
    """End to end through `mine` (both strategies): a caption at cosine exactly 1 − τ to the anchor is never its
    negative under the released rule; under the "different" rule it is admissible and cos > 1 − τ is not."""
    captions, emb_fn = _boundary_corpus()
    cfg = replace(MiningConfig(), tau=TAU, rule=rule, n_negatives=5, windows_per_segment=1, object_positives=0,
                  val_fraction=0.0)
    ts = mine(captions, emb_fn, None, cfg, strategy=strategy)
    anchor = ts.sentences.index("anchor")
    negs = {ts.sentences[q] for p, q in zip(ts.pos, ts.neg) if p == anchor}
    assert len(negs) == 5
    want = "above" if rule == "released" else "at"
    assert all(s.startswith(want) for s in negs), sorted(negs)


# --- early stopping and the checkpoint choice (cezsar.training.train.fit) ---------------------------------------------
def _scripted_evaluate(monkeypatch, losses: dict[int, float]) -> list[int]:
    """Replace fit's validation pass by a scripted loss per epoch (the epoch is the number of calls so far plus
    the first epoch of this run); returns the list of epochs evaluated."""
    from cezsar.training import train

    seen: list[int] = []

    def fake(model, data, idx, cfg, device, *static):  # static: the static step's run length
        epoch = min(losses) + len(seen)
        seen.append(epoch)
        return {"loss": losses[epoch], "acc": 0.5}

    monkeypatch.setattr(train, "evaluate", fake)  # the eager step's validation
    monkeypatch.setattr(train, "evaluate_static", fake)  # and the static step's (fit's default)
    return seen


def _weights(path) -> dict:
    import torch

    return {k: v.clone() for k, v in torch.load(path, map_location="cpu", weights_only=False)["model"].items()}


@pytest.mark.usefixtures("one_torch_thread")
def test_best_checkpoint_stays_at_the_best_epoch_when_later_epochs_are_worse(tmp_path, monkeypatch):
    """Early stopping watches the validation loss: best.pt is the model of the epoch with the lowest loss, and
    is not overwritten by later, worse epochs, neither in one run nor after --resume; a later improvement (after
    --resume, against the best score read back from last.pt) does replace it."""
    import torch
    from test_train import TINY, make_toy

    from cezsar.config import ModelConfig, TrainConfig
    from cezsar.training.train import fit

    trip, store, text = make_toy(tmp_path / "feats")
    out = tmp_path / "run"
    mcfg = ModelConfig(**TINY)

    def run(epochs: int, losses: dict[int, float], resume: bool) -> dict:
        seen = _scripted_evaluate(monkeypatch, losses)
        res = fit(trip, store, text, TrainConfig(lr=1e-2, batch=64, epochs=epochs, patience=10, device="cpu"),
                  mcfg, out, progress=False, **({"resume": True} if resume else {}))  # resume is off by default
        assert seen == sorted(losses)  # every scripted epoch was run, no other
        return res

    res = run(3, {0: 2.0, 1: 1.0, 2: 1.5}, resume=False)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert res["best_epoch"] == 1 and best["epoch"] == 1 and best["best_score"] == 1.0
    assert last["epoch"] == 2 and last["best_epoch"] == 1
    w1 = _weights(out / "best.pt")
    assert any(not torch.equal(w1[k], v) for k, v in last["model"].items())  # epoch 2 trained on: other weights

    res = run(5, {3: 1.2, 4: 3.0}, resume=True)  # both worse than epoch 1's 1.0
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert res["best_epoch"] == 1 and best["epoch"] == 1
    assert all(torch.equal(w1[k], v) for k, v in best["model"].items())
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=False)["epoch"] == 4

    res = run(6, {5: 0.5}, resume=True)  # an improvement after a resume replaces it
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert res["best_epoch"] == 5 and best["epoch"] == 5 and best["best_score"] == 0.5
    assert [h["epoch"] for h in res["history"]] == list(range(6))  # the log goes on across resumes
    assert [h["val_loss"] for h in res["history"]] == [2.0, 1.0, 1.5, 1.2, 3.0, 0.5]

    res = run(2, {0: 4.0, 1: 5.0}, resume=False)  # without --resume an existing last.pt is not read
    assert [h["epoch"] for h in res["history"]] == [0, 1] and res["best_epoch"] == 0


@pytest.mark.usefixtures("one_torch_thread")
def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path, monkeypatch):
    """Early stopping: training stops once `patience` epochs in a row did not lower the best validation loss;
    an epoch that only equals the best does not count as an improvement."""
    from test_train import TINY, make_toy

    from cezsar.config import ModelConfig, TrainConfig
    from cezsar.training.train import fit

    trip, store, text = make_toy(tmp_path / "feats")
    seen = _scripted_evaluate(monkeypatch, {0: 2.0, 1: 1.0, 2: 1.0, 3: 1.5, 4: 0.1, 5: 0.1})
    res = fit(trip, store, text, TrainConfig(lr=1e-3, batch=64, epochs=6, patience=2, device="cpu"),
              ModelConfig(**TINY), tmp_path / "run", progress=False)
    assert seen == [0, 1, 2, 3]  # epochs 2 and 3 did not improve on 1.0: stop before epoch 4
    assert res["epochs_run"] == 4 and res["best_epoch"] == 1 and res["stopped_early"] is True
    assert res["best_score"] == 1.0
    # patience counts epochs in a row: an improvement resets the count
    seen = _scripted_evaluate(monkeypatch, {0: 2.0, 1: 3.0, 2: 1.0, 3: 1.5, 4: 0.5, 5: 0.7})
    res = fit(trip, store, text, TrainConfig(lr=1e-3, batch=64, epochs=6, patience=2, device="cpu"),
              ModelConfig(**TINY), tmp_path / "run2", progress=False)
    assert seen == [0, 1, 2, 3, 4, 5] and res["best_epoch"] == 4 and res["stopped_early"] is False
    # patience 1: the first epoch always runs, the first epoch without improvement is the last
    seen = _scripted_evaluate(monkeypatch, {0: 2.0, 1: 3.0, 2: 1.0})
    res = fit(trip, store, text, TrainConfig(lr=1e-3, batch=64, epochs=3, patience=1, device="cpu"),
              ModelConfig(**TINY), tmp_path / "run3", progress=False)
    assert seen == [0, 1] and res["best_epoch"] == 0 and res["stopped_early"] is True
    # patience running out on the last epoch is not an early stop: every epoch ran
    seen = _scripted_evaluate(monkeypatch, {0: 1.0, 1: 2.0})
    res = fit(trip, store, text, TrainConfig(lr=1e-3, batch=64, epochs=2, patience=1, device="cpu"),
              ModelConfig(**TINY), tmp_path / "run4", progress=False)
    assert seen == [0, 1] and res["stopped_early"] is False


@pytest.mark.usefixtures("one_torch_thread")
def test_without_validation_triplets_the_training_loss_chooses_the_checkpoint(tmp_path, monkeypatch):
    """Early stopping watches the validation loss, or the training loss when no triplet is held out: best.pt
    is then the epoch with the lowest training loss. Zero epochs choose nothing. The default output folder is
    the working directory."""
    import torch
    from test_train import TINY, make_toy

    from cezsar.config import ModelConfig, TrainConfig
    from cezsar.training.train import fit

    trip, store, text = make_toy(tmp_path / "feats")
    trip.val = np.zeros_like(trip.val)
    monkeypatch.chdir(tmp_path)
    res = fit(trip, store, text, TrainConfig(lr=1e-3, batch=64, epochs=2, device="cpu"), ModelConfig(**TINY),
              progress=False)
    losses = [h["train_loss"] for h in res["history"]]
    assert all(h["val_loss"] is None for h in res["history"])
    assert res["best_score"] == min(losses) and res["best_epoch"] == int(np.argmin(losses))
    assert torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=False)["epoch"] == res["best_epoch"]
    none = fit(trip, store, text, TrainConfig(epochs=0, device="cpu"), ModelConfig(**TINY), tmp_path / "zero",
               progress=False)
    assert none["best_epoch"] == -1 and none["epochs_run"] == 0 and not (tmp_path / "zero" / "best.pt").exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_resume_refuses_another_model_or_an_incomplete_last_checkpoint(tmp_path):
    """--resume continues only the same run: another model config, or a last.pt without what resuming needs,
    is a CheckpointError naming the file, the entry and the remedy (never a KeyError)."""
    import torch
    from test_train import TINY, make_toy

    from cezsar.errors import CheckpointError
    from cezsar.config import ModelConfig, TrainConfig
    from cezsar.training.train import fit

    trip, store, text = make_toy(tmp_path / "feats")
    out = tmp_path / "run"
    fit(trip, store, text, TrainConfig(batch=64, epochs=1, device="cpu"), ModelConfig(**TINY), out, progress=False)
    last = out / "last.pt"
    fix = "delete it to start over, or use another output folder"
    with pytest.raises(CheckpointError) as err:
        fit(trip, store, text, TrainConfig(batch=64, epochs=2, device="cpu"), ModelConfig(**{**TINY, "emb_dim": 8}),
            out, resume=True, progress=False)
    assert str(err.value).startswith(f"{last}: model_cfg {{") and "differs from this run's" in str(err.value)
    assert str(err.value).endswith("resume with the same triplets and settings, or " + fix)
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    del ckpt["bad_epochs"]
    torch.save(ckpt, last)
    with pytest.raises(CheckpointError) as err:
        fit(trip, store, text, TrainConfig(batch=64, epochs=2, device="cpu"), ModelConfig(**TINY), out, resume=True,
            progress=False)
    assert str(err.value) == f"{last}: lacks bad_epochs needed to resume; {fix}"
    ckpt["bad_epochs"], ckpt["model"] = 0, {"not_a_weight": torch.zeros(1)}
    torch.save(ckpt, last)
    with pytest.raises(CheckpointError, match=r"run/last.pt: model, optimizer or RNG state unusable \("):
        fit(trip, store, text, TrainConfig(batch=64, epochs=2, device="cpu"), ModelConfig(**TINY), out, resume=True,
            progress=False)


# --- Eq. 9's object term and the scores' bookkeeping (cezsar.evaluation.zsar) -----------------------------------------
def test_mean_rows_averages_unit_rows_per_video():
    """SE(O(v)) of Eq. 9 is the mean of the video's object-sentence vectors, each L2-normalised first (the
    default); normalize=False averages them as they are (released); a video without objects is an error."""
    from cezsar.evaluation.zsar import mean_rows

    table = np.array([[3.0, 4.0], [0.0, 2.0], [10.0, 0.0]])  # norms 5, 2, 10
    rows = [np.array([0, 1]), np.array([2])]
    assert np.allclose(mean_rows(table, rows), [[0.3, 0.9], [1.0, 0.0]])
    raw = mean_rows(table, rows, normalize=False)
    assert np.allclose(raw, [[1.5, 3.0], [10.0, 0.0]]) and raw.dtype == np.float32
    empty = mean_rows(table, [])
    assert empty.shape == (0, 2) and empty.dtype == np.float32
    with pytest.raises(ValueError, match=r"mean_rows: video index\(es\) \[1, 2, 3, 4, 5\] have no objects"):
        mean_rows(table, [rows[0]] + [np.array([], np.int64)] * 6)


def test_metrics_refuses_labels_outside_the_columns():
    """Top-k accuracy is defined for labels 0 <= y < C only: a label equal to C, or below 0, is refused with
    the range in the message; so are score rows and labels of different counts."""
    from cezsar.evaluation.zsar import metrics

    scores = np.eye(3)
    assert metrics(scores, np.array([0, 1, 2]))["top1"] == 1.0
    for bad in ([0, 1, 3], [-1, 1, 2]):
        with pytest.raises(ValueError, match=r"metrics: labels must lie in \[0, 3\); got -?\d\.\.\d"):
            metrics(scores, np.array(bad))
    with pytest.raises(ValueError, match="metrics: 3 score rows but 2 labels"):
        metrics(scores, np.array([0, 1]))


# --- the protocols' splits (cezsar.evaluation.protocols) --------------------------------------------------------------
def test_a_supplied_split_tests_its_testing_classes_in_official_order(tmp_path):
    """TruZe-style protocol: the one run tests exactly the split file's *testing* classes, listed in the
    dataset's official order (not the file's), never its training classes."""
    import json

    from cezsar.evaluation import protocols as P

    classes = ["apply eye makeup", "archery", "baby crawling", "balance beam", "band marching"]
    split = tmp_path / "mysplit.json"
    split.write_text(json.dumps({"training": ["archery", "balance beam"],
                                 "testing": ["band marching", "apply eye makeup", "baby crawling"]}))
    proto = P.get_protocol("ucf101", "truze", len(classes), split_file=split)
    s = P.load_or_create_splits(proto, classes, tmp_path / "splits.json")
    assert [r["classes"] for r in s["runs"]] == [["apply eye makeup", "baby crawling", "band marching"]]
    assert s["n_classes"] == 3 and s["runs"][0]["seed"] == 0


# --- Eqs. 1-6: the model's paper path against the equations written out (cezsar.training.model) -----------------------
def _sinusoid(length: int, d: int) -> np.ndarray:
    """Vaswani et al.'s table from its formula: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same)."""
    pe = np.zeros((length, d))
    for p in range(length):
        for i in range(0, d, 2):
            pe[p, i] = np.sin(p / 10000 ** (i / d))
            if i + 1 < d:
                pe[p, i + 1] = np.cos(p / 10000 ** (i / d))
    return pe


@pytest.mark.usefixtures("one_torch_thread")
def test_vem_and_sem_compute_eqs_1_to_6():
    """VE(v) = ReLU(W5 · mean_t Transformer(ReLU(W1 x_t + b1) + PE_t) + b5) over the clip's valid seconds
    (Eqs. 1-5, sinusoidal PE of Vaswani et al.), and SE(s) = ReLU(W6 s + b6) (Eq. 6), computed here by hand
    from the module's weights (only the transformer layer itself is torch's)."""
    import torch

    from cezsar.config import ModelConfig
    from cezsar.training.joint_embedder import JointEmbedder

    torch.manual_seed(0)
    cfg = ModelConfig(feat_dim=5, text_dim=7, d_model=8, n_heads=2, emb_dim=4, dropout=0.1)
    model = JointEmbedder(cfg).eval()
    with torch.no_grad():  # biases away from zero, so ReLUs and a missing bias both show
        model.vem.out.bias.fill_(0.3)
        model.sem.net[0].bias.fill_(0.2)
    x = torch.randn(2, 6, 5)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    got = model.encode_video(x, mask).detach().numpy()
    vem = model.vem
    pe = torch.as_tensor(_sinusoid(6, 8), dtype=torch.float32)
    want = []
    for b, n in ((0, 6), (1, 3)):
        h = torch.relu(x[b, :n] @ vem.proj.weight.T + vem.proj.bias) + pe[:n]  # (n, 8)  Eq. 1 + PE
        h = vem.layers[0](h[None])[0]  # (n, 8)  Eqs. 2-4, valid rows only
        want.append(torch.relu(h.mean(0) @ vem.out.weight.T + vem.out.bias).detach().numpy())  # Eq. 5
    assert np.allclose(got, np.stack(want), atol=1e-5)
    assert (got >= 0).all() and (got == 0).any() and (got > 0).any()  # the output ReLU of Eq. 5 is there
    s = torch.randn(3, 7)
    sem = model.sem.net[0]
    want_se = torch.relu(s @ sem.weight.T + sem.bias).detach().numpy()
    assert np.allclose(model.encode_text(s).detach().numpy(), want_se, atol=1e-6)
    assert np.allclose(vem.pe.pe[:40].numpy(), _sinusoid(40, 8), atol=1e-5)
    assert np.allclose(vem.pe._table(300, 8)[299].numpy(), _sinusoid(300, 8)[299], atol=1e-4)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_positional_table_grows_for_long_clips_and_odd_widths():
    """A clip longer than the table gets codes from the same formula (the table is recomputed, not cut), and
    `at` gives the code of each step for packed rows."""
    import torch

    from cezsar.training.model import SinusoidalPositionalEncoding

    enc = SinusoidalPositionalEncoding(6, max_len=4)
    out = enc(torch.zeros(1, 9, 6))  # (1, 9, 6)
    assert np.allclose(out[0].numpy(), _sinusoid(9, 6), atol=1e-6)
    assert np.allclose(enc.at(torch.tensor([0, 10, 3]), 12).numpy(), _sinusoid(12, 6)[[0, 10, 3]], atol=1e-6)
    assert np.allclose(SinusoidalPositionalEncoding(5, max_len=7).pe.numpy(), _sinusoid(7, 5), atol=1e-6)


def test_eq9_defaults_and_the_unnormalised_visual_term():
    """Eq. 9's weights default to the paper's α = 0.8, β = 0.2 (§4); with no object term and normalize_terms
    off, VidE(v) is VE(v) as given; outputs are float32 whatever the input precision."""
    from cezsar.evaluation.zsar import l2_normalize, video_embedding

    rng = np.random.default_rng(0)
    ve, obj = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))  # float64 in
    got = video_embedding(ve, obj)
    assert got.dtype == np.float32
    assert np.allclose(got, 0.8 * l2_normalize(ve) + 0.2 * l2_normalize(obj), atol=1e-6)
    raw = video_embedding(ve, None, normalize_terms=False)
    assert raw.dtype == np.float32 and np.allclose(raw, ve, atol=1e-6)
    assert np.allclose(video_embedding(ve, None), l2_normalize(ve))
    released = video_embedding(ve, obj, normalize_terms=False)  # the released sum of raw terms
    assert released.dtype == np.float32 and np.allclose(released, 0.8 * ve + 0.2 * obj, atol=1e-6)


def test_metrics_bookkeeping_on_edge_inputs():
    """The metrics dict: integer confusion counts, default class names "0".."C-1", the video count, and NaN
    accuracies (no warning) when there is no video; labels given as floats index the same classes."""
    import math
    import warnings

    from cezsar.evaluation.zsar import metrics

    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.3, 0.5, 0.2]])
    m = metrics(scores, np.array([0, 1, 2]))
    assert m["classes"] == ["0", "1", "2"] and m["n_videos"] == 3 and m["n_classes"] == 3
    assert m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert all(type(x) is int for row in m["confusion"] for x in row)
    assert metrics(scores, np.array([0.0, 1.0, 2.0]))["confusion"] == m["confusion"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = metrics(np.zeros((0, 3)), np.zeros(0, np.int64))
    assert math.isnan(empty["top1"]) and math.isnan(empty["top5"]) and empty["n_videos"] == 0


def test_encode_per_class_splits_one_call_into_the_classes():
    """Prototypes (Eq. 8) need each class's own sentences: one encoder call, cut back into per-class float32
    arrays in the classes' order."""
    from cezsar.evaluation.prototypes import encode_per_class

    calls = []

    def encode(sents):
        calls.append(list(sents))
        return np.array([[float(len(s)), 1.0] for s in sents])  # float64 out

    got = encode_per_class(encode, [["a", "bb"], ["ccc"], ["dddd", "eeeee", "f"]])
    assert len(calls) == 1 and calls[0] == ["a", "bb", "ccc", "dddd", "eeeee", "f"]
    assert [g[:, 0].tolist() for g in got] == [[1.0, 2.0], [3.0], [4.0, 5.0, 1.0]]
    assert all(g.dtype == np.float32 for g in got)


# --- object positives come from the window's own seconds (cezsar.triplet_mining.mine, paper §3.4) ---------------------
def test_object_positives_are_the_top_objects_of_their_own_window(monkeypatch):
    """Paper §3.4: a window's object positives are object sentences of the objects seen *in that window*
    (per-second top-K summed over the window's seconds, the best `objects_per_window` kept), described with the
    store's label space."""
    from cezsar.triplet_mining import mine as mining

    labels = [f"object {i}: a thing" for i in range(6)]
    monkeypatch.setattr(mining, "object_sentences", lambda space: {"imagenet1k": labels}[space])

    class Store:
        label_space = "imagenet1k"

        def objects(self, vid):
            idx = np.zeros((40, 3), np.int32)
            idx[:20], idx[20:] = [0, 1, 2], [3, 4, 5]  # the first 20 s show objects 0-2, the last 20 s 3-5
            sc = np.tile(np.array([0.9, 0.5, 0.1], np.float16), (40, 1))
            return idx, sc

    segs = [Segment("v_000", 0.0, 8.0, "first caption"), Segment("v_000", 25.0, 33.0, "second caption"),
            Segment("v_001", 0.0, 8.0, "other caption")]
    captions = Captions(segs, {"v_000": 40.0, "v_001": 40.0}, {}, {})
    rng = np.random.default_rng(0)
    vecs = {t: rng.normal(size=8) for t in labels + [s.sentence for s in segs]}
    cfg = replace(MiningConfig(), n_negatives=1, windows_per_segment=1, objects_per_window=2, object_positives=2,
                  object_negatives=False, tau=1.5, val_fraction=0.0)
    ts = mine(captions, lambda s: np.stack([vecs[x] for x in s]), Store(), cfg, strategy="exact")
    got: dict[int, set] = {}
    for seg, p in zip(ts.segment, ts.pos):
        if ts.sentences[p] in labels:
            got.setdefault(int(seg), set()).add(ts.sentences[p])
    assert got[0] == {labels[0], labels[1]} and got[1] == {labels[3], labels[4]}
    assert got[2] == {labels[0], labels[1]}  # every video of this store shows the same objects


def test_one_sentence_prototypes_are_unit_vectors_in_the_encoder_space():
    """Eq. 8 with one sentence per class: a (C, d) array of sentence vectors gives its rows L2-normalised
    (no projection), or the projection's output as it is."""
    from cezsar.evaluation.prototypes import class_prototypes

    per_class = np.array([[3.0, 4.0], [0.0, 2.0]])
    assert np.allclose(class_prototypes(per_class), [[0.6, 0.8], [0.0, 1.0]])
    assert np.allclose(class_prototypes(per_class, project=lambda x: 2 * x), 2 * per_class)
    several = class_prototypes([np.array([[3.0, 4.0], [0.0, 5.0]]), np.array([[0.0, 2.0]])])  # no projection
    assert np.allclose(several, [[0.3, 0.9], [0.0, 1.0]])  # mean of the unit vectors


def test_summary_statistics_of_no_run():
    """Mean and std over runs: no run gives NaN means and no std, without a warning."""
    import math
    import warnings

    from cezsar.evaluation import protocols as P

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = P.summarize([])
    assert math.isnan(s["top1_mean"]) and math.isnan(s["top5_mean"]) and s["top1_std"] is None


def _tiny_emb(n_classes: int = 6, per_class: int = 3) -> dict:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(n_classes), per_class)  # (V,)
    return {"classes": [f"class {i}" for i in range(n_classes)], "labels": labels,
            "scores": rng.normal(size=(len(labels), n_classes)) + 0.8 * np.eye(n_classes)[labels]}  # (V, C)


def test_evaluate_protocol_statistics_chance_and_ddof(tmp_path):
    """A protocol's result: chance is 1 / (test classes), the std over runs uses the ddof asked for."""
    from cezsar.evaluation import protocols as P

    emb = _tiny_emb()
    proto = P.get_protocol("mine", "0/3", 6, runs=4)
    r1 = P.evaluate_protocol(emb, proto, P.split_path(proto, tmp_path))
    r0 = P.evaluate_protocol(emb, proto, P.split_path(proto, tmp_path), ddof=0)
    top1 = np.array([r["top1"] for r in r1["runs"]])
    assert r1["chance"] == pytest.approx(1 / 3) and r1["std_ddof"] == 1 and r0["std_ddof"] == 0
    assert r1["top1_std"] == pytest.approx(top1.std(ddof=1)) and r0["top1_std"] == pytest.approx(top1.std(ddof=0))
    assert top1.std(ddof=1) != pytest.approx(top1.std(ddof=0))


def test_a_single_run_confusion_covers_only_its_classes_and_videos(tmp_path):
    """A one-run protocol (a supplied split) reports the confusion matrix and per-class accuracy of the run's
    classes only, keyed by class name: videos of other classes are not scored, other columns not competed."""
    import json

    from cezsar.evaluation import protocols as P
    from cezsar.evaluation.zsar import metrics

    emb = _tiny_emb()
    split = tmp_path / "s.json"
    split.write_text(json.dumps({"training": ["class 0", "class 2", "class 4"],
                                 "testing": ["class 5", "class 1", "class 3"]}))
    proto = P.get_protocol("mine", "split", 6, split_file=split)
    res = P.evaluate_protocol(emb, proto, tmp_path / "splits.json")
    assert res["chance"] == pytest.approx(1 / 3)
    cols = [1, 3, 5]
    rows = np.flatnonzero(np.isin(emb["labels"], cols))
    want = metrics(emb["scores"][np.ix_(rows, cols)], np.searchsorted(cols, emb["labels"][rows]))
    assert res["confusion"] == want["confusion"] and np.array(res["confusion"]).sum() == 9
    assert list(res["per_class"]) == ["class 1", "class 3", "class 5"]
    assert list(res["per_class"].values()) == list(want["per_class"].values())
    split.write_text(json.dumps({"training": ["class 0"], "testing": ["class 4"]}))
    with pytest.raises(ValueError, match="at least 2 classes"):  # one test class is always right: refused (issue 30)
        P.evaluate_protocol(emb, P.get_protocol("mine", "split", 6, split_file=split), tmp_path / "one.json")


def test_evaluate_runs_of_an_empty_run_and_of_classes_without_videos():
    """A run scores the videos of its classes only: a run with no class, or whose classes have no video, has 0
    videos and NaN accuracies (no warning), and does not disturb the other runs."""
    import math
    import warnings

    from cezsar.evaluation import protocols as P

    emb = _tiny_emb(n_classes=4)
    keep = emb["labels"] != 3  # class 3 has no video
    scores, labels = emb["scores"][keep], emb["labels"][keep]
    runs = [{"seed": 0, "classes": []}, {"seed": 1, "classes": ["class 3"]}, {"seed": 2, "classes": ["class 0"]}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = P.evaluate_runs(scores, labels, emb["classes"], runs)
    for r in out[:2]:
        assert r["n_videos"] == 0 and math.isnan(r["top1"]) and math.isnan(r["top5"])
    assert out[2]["n_videos"] == 3 and out[2]["top1"] == 1.0  # one class: every video is right


@pytest.mark.usefixtures("one_torch_thread")
def test_encode_videos_uses_15_second_stacks_and_max_seconds():
    """VE(v) at test time (Eq. 9): consecutive stacks of up to 15 features (paper §4) by default, their unit
    embeddings averaged by length; `max_seconds` keeps only the clip's first seconds; an empty clip is an
    error naming it."""
    import torch
    from test_zsar import ArrayStore, tiny_model

    from cezsar.evaluation.zsar import encode_videos, l2_normalize

    model = tiny_model()
    x = np.random.default_rng(3).normal(size=(20, 8)).astype(np.float32)

    def ref(rows):
        with torch.no_grad():
            return l2_normalize(model.encode_video(torch.from_numpy(rows[None]), None).numpy())[0]

    store = ArrayStore({"v": x, "empty": np.zeros((0, 8), np.float32)})
    np.testing.assert_allclose(encode_videos(model, store, ["v"])[0], (15 * ref(x[:15]) + 5 * ref(x[15:])) / 20,
                               atol=1e-5)
    np.testing.assert_allclose(encode_videos(model, store, ["v"], max_seconds=10)[0], ref(x[:10]), atol=1e-5)
    with pytest.raises(ValueError, match="encode_videos: video 'empty' has no feature rows"):
        encode_videos(model, store, ["v", "empty"])
    assert encode_videos(model, store, ["v", "v"]).dtype == np.float32
    none = encode_videos(model, store, [])
    assert none.shape == (0, 0) and none.dtype == np.float32


def test_true_class_rank_counts_ties_as_argmax_does():
    """Eq. 8's 1-NN takes the first maximum: a class beats the true class when it scores higher, or the same
    with a lower index; checked against a brute-force count on scores full of exact ties, and rank 0 is
    exactly `predict == label`."""
    from cezsar.evaluation.zsar import predict, topk_correct, true_class_rank

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(60, 6)).astype(np.float32)  # (V, C) values 0, 1, 2: ties everywhere
    labels = rng.integers(0, 6, size=60)
    want = [sum(1 for j in range(6) if s[j] > s[y] or (s[j] == s[y] and j < y)) for s, y in zip(scores, labels)]
    got = true_class_rank(scores, labels)
    assert got.tolist() == want
    assert np.array_equal(got == 0, predict(scores) == labels)
    assert np.array_equal(topk_correct(scores, labels, 3), np.array(want) < 3)
    # one tie of exactly two classes, on a row other than the first
    two = np.array([[0.9, 0.1, 0.0], [0.5, 0.7, 0.5]], np.float32)
    assert true_class_rank(two, np.array([0, 2])).tolist() == [0, 2]


def test_test_time_stacks_default_to_15_seconds():
    """Paper §4: stacks of up to 15 features; a clip is cut into consecutive stacks of 15 seconds."""
    from cezsar.evaluation.zsar import clip_windows

    assert clip_windows(31) == [(0, 15), (15, 30), (30, 31)]


def test_split_files_are_checked_before_use(tmp_path):
    """A split file is read, never regenerated, so a broken one is refused with its path and reason: not JSON,
    no runs, or unknown classes (at most five named); a generated one says where its classes came from."""
    import json

    from cezsar.evaluation import protocols as P

    classes = [f"class {i}" for i in range(10)]
    proto = P.get_protocol("mine", "0/3", 10, runs=2)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json: malformed JSON at line 1"):
        P.load_or_create_splits(proto, classes, bad)
    bad.write_text(json.dumps({"dataset": "mine", "protocol": "0/3"}))
    with pytest.raises(ValueError, match=r"holds 0 runs, 2 requested"):
        P.load_or_create_splits(proto, classes, bad)
    ghosts = [f"ghost {i}" for i in range(7)]
    bad.write_text(json.dumps({"dataset": "mine", "protocol": "0/3", "runs": [{"seed": 0, "classes": ghosts}] * 2}))
    with pytest.raises(ValueError, match="run seed 0: unknown class") as err:
        P.load_or_create_splits(proto, classes, bad)
    assert str(ghosts[:5]) in str(err.value) and "ghost 5" not in str(err.value)
    split = tmp_path / "truze_like.json"
    split.write_text(json.dumps({"training": classes[:5], "testing": classes[5:]}))
    s = P.load_or_create_splits(P.get_protocol("mine", "split", 10, split_file=split), classes, tmp_path / "s.json")
    assert s["generator"] == "testing part of truze_like.json"


def test_admissible_defaults_to_the_released_rule_and_applies_max_sim():
    """`admissible` without a rule is the released τ rule (cos > 1 − τ), and its max_sim guard drops
    paraphrases (cos >= max_sim) besides the same-sentence exclusion."""
    sim = np.array([[0.1, 0.5, 0.97, 0.6]])  # (1, 4)
    ids = np.array([3])
    assert admissible(sim, ids, None, 0.8).tolist() == [[False, True, True, False]]  # column 3 is itself
    assert admissible(sim, ids, None, 0.8, max_sim=0.95).tolist() == [[False, True, False, False]]
    assert admissible(sim, ids, np.array([0, 1, 2, 4]), 0.8, max_sim=0.95).tolist() == [[False, True, False, True]]


def test_video_split_holds_out_at_least_one_video_and_never_all():
    """Validation by video (docs/fidelity.md "optimiser"): fraction 0 or a single video holds out nothing;
    otherwise round(fraction x videos) videos, at least one and never every video."""
    from cezsar.triplet_mining.rules import video_split

    assert video_split(10, 0.0, 0).sum() == 0 and video_split(1, 0.5, 0).sum() == 0
    assert video_split(2, 0.1, 0).sum() == 1 and video_split(2, 0.9, 0).sum() == 1
    assert video_split(10, 0.01, 0).sum() == 1 and video_split(10, 0.3, 0).sum() == 3
    assert video_split(3, 0.5, 0).sum() == 2


def test_unit_rows_and_the_vem_keep_the_input_precision():
    """L2-normalised rows are float32 whatever comes in; the VEM (with its positional table and masking)
    runs in the model's own dtype, here bfloat16, without promoting to float32."""
    import torch

    from cezsar.config import ModelConfig
    from cezsar.training.joint_embedder import JointEmbedder
    from cezsar.training.model import SinusoidalPositionalEncoding
    from cezsar.evaluation.zsar import l2_normalize

    assert l2_normalize(np.array([[3.0, 4.0]])).dtype == np.float32
    enc = SinusoidalPositionalEncoding(6)
    assert enc(torch.zeros(1, 3, 6, dtype=torch.bfloat16)).dtype == torch.bfloat16
    torch.manual_seed(0)
    model = JointEmbedder(ModelConfig(feat_dim=5, text_dim=7, d_model=8, n_heads=2, emb_dim=4)).eval()
    x = torch.randn(2, 4, 5)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    want = model.encode_video(x, mask)
    got = model.to(torch.bfloat16).encode_video(x.to(torch.bfloat16), mask)
    assert got.dtype == torch.bfloat16 and torch.allclose(got.float(), want, atol=0.1)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("released_padding", [False, True])
def test_batch_loss_is_eq7_on_each_triplets_own_window(tmp_path, released_padding):
    """The batched Eq. 7 loss (with the margin asked for) and its accuracy flag d+ < d- equal those of each
    triplet's window encoded alone. With the released padding (docs/fidelity.md) the model feeds max_len rows,
    zeros included, to attention and the mean, and encodes a lone window the same way; the default packed path
    would give another value."""
    import dataclasses

    import torch
    from test_train import toy_fast_path

    from cezsar.training.joint_embedder import JointEmbedder
    from cezsar.training.eager_step import batch_loss
    from cezsar.training.loss import triplet_loss

    trip, store, text, cfg, data = toy_fast_path(tmp_path)
    cfg = dataclasses.replace(cfg, released_padding=released_padding)
    torch.manual_seed(1)
    model = JointEmbedder(cfg).eval()
    b = np.arange(0, 60, 3)
    fast, ok = batch_loss(model, data, torch.as_tensor(b), 0.5)  # (B,), (B,)
    naive, flags = [], []
    for i in b:
        feats = store.load(trip.video_ids[trip.video[i]])
        lo = min(int(np.ceil(trip.start[i])), len(feats) - 1)  # frame i is at second i
        hi = min(max(int(np.ceil(trip.end[i])), lo + 1), len(feats), lo + cfg.max_len)
        v = model.encode_video(torch.from_numpy(feats[lo:hi])[None])
        sp, sn = model.encode_text(torch.from_numpy(text[[trip.pos[i]]])), model.encode_text(torch.from_numpy(text[[trip.neg[i]]]))
        naive.append(triplet_loss(v, sp, sn, 0.5))
        flags.append(bool(torch.linalg.vector_norm(v - sp) < torch.linalg.vector_norm(v - sn)))
    torch.testing.assert_close(fast, torch.cat(naive).detach(), atol=1e-5, rtol=1e-5)
    assert ok.tolist() == flags and 0 < sum(flags) < len(flags)


def test_rule_mask_defaults_to_the_released_rule_and_names_an_unknown_rule():
    """rule_mask without a rule is the released τ rule; an unknown rule is refused by name."""
    sim = np.array([0.1, 0.3])
    assert rule_mask(sim, 0.8).tolist() == [False, True]
    with pytest.raises(ValueError, match=r"unknown negative rule 'similar' \(expected 'released' or 'different'\)"):
        rule_mask(sim, 0.8, "similar")


def test_mined_windows_are_stored_as_float32_seconds():
    """The triplet file stores each window's start and end seconds as float32 (the TripletSet format)."""
    captions, emb_fn = _boundary_corpus()
    cfg = replace(MiningConfig(), tau=TAU, n_negatives=2, windows_per_segment=2, object_positives=0)
    ts = mine(captions, emb_fn, None, cfg, strategy="exact")
    assert ts.start.dtype == np.float32 and ts.end.dtype == np.float32 and (ts.end > ts.start).all()


def test_window_index_rows_at_the_edges_of_a_video():
    """Paper §4 stacks: a window [start, end) takes rows ceil(start) .. ceil(end) - 1 of its own video, clipped
    into the video: a start before 0 begins at row 0, a window at or past the end keeps the last second (and is
    counted), an empty window keeps one row; rows are int64 bank rows; a video index outside the bank is refused."""
    from cezsar.training.featurebank import window_index

    offsets = np.array([0, 6, 16])  # video 0: rows 0-5 (6 s), video 1: rows 6-15 (10 s)
    video = np.array([1, 1, 1, 0, 1])
    start = np.array([-1.5, 10.0, 3.2, 2.0, 12.0], np.float32)
    end = np.array([2.0, 14.0, 3.2, 4.0, 30.0], np.float32)
    rows, mask, win, stats = window_index(video, start, end, offsets, 15)
    got = [rows[w][mask[w]].tolist() for w in win]
    assert got == [[6, 7], [15], [10], [2, 3], [15]]
    assert rows.dtype == np.int64 and win.dtype == np.int64
    assert stats == {"windows": 5, "past_end": 2, "truncated": 0}
    for bad in (np.array([2]), np.array([-1])):
        with pytest.raises(ValueError, match=r"^triplet video index out of range \[0, 2\)$"):
            window_index(bad, np.zeros(1), np.ones(1), offsets, 15)


def test_eq7_margin_defaults_to_one():
    """Eq. 7 with the default margin 1: max(d+ - d- + 1, 0)."""
    import torch

    from cezsar.training.loss import triplet_loss

    v, p, n = torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 4.5]])  # d+ 5, d- 4.5
    assert float(triplet_loss(v, p, n)) == pytest.approx(1.5)


def test_a_supplied_split_is_one_run_named_after_its_file_and_protocol_errors_say_what_is_known(tmp_path):
    """Protocol "truze"/"split": one run over the split file's testing classes, named split:<file stem>; without
    the file, or with an unknown spec, the error says what to give (the known protocols of the dataset)."""
    from cezsar.evaluation import protocols as P

    p = P.get_protocol("ucf101", "TruZe", 101, split_file=tmp_path / "my_split.json")
    assert (p.dataset, p.name, p.n_classes, p.runs, p.split_file) == \
        ("ucf101", "split:my_split", -1, 1, str(tmp_path / "my_split.json"))
    with pytest.raises(ValueError, match=r"needs a split file \(e\.g\. ucf101_truezsl_splits\.json: the TruZe 67/34 "
                                         r"split, whose 34 testing classes are evaluated\)"):
        P.get_protocol("ucf101", "truze", 101)
    with pytest.raises(ValueError, match=r"unknown protocol '1/5': use 0/N, 0/all or truze \(known for ucf101: "
                                         r"0/101, 0/50, 0/20\)"):
        P.get_protocol("ucf101", "1/5", 101)
    with pytest.raises(ValueError, match=r"\(known for mine: generic 0/N\)"):
        P.get_protocol("mine", "1/5", 10)


def test_a_generated_split_file_records_how_and_from_how_many_classes(tmp_path):
    """A generated split file says how its classes were drawn and from how many dataset classes."""
    from cezsar.evaluation import protocols as P

    classes = [f"c{i}" for i in range(10)]
    s = P.load_or_create_splits(P.get_protocol("mine", "0/3", len(classes), runs=2), classes, tmp_path / "s.json")
    assert s["n_dataset_classes"] == len(classes)
    assert s["generator"] == "seed s: numpy.random.default_rng(s).choice(C, n, replace=False), kept in official order"


@pytest.mark.usefixtures("one_torch_thread")
def test_the_joint_embedder_refuses_inputs_of_the_wrong_shape():
    """Eqs. 1-6 take (B, T, feat_dim) features with a (B, T) mask, packed (N, feat_dim) rows with a (U, T) mask
    and an optional (N,) index, and (B, text_dim) sentence vectors; anything else is refused with the shapes."""
    import torch

    from cezsar.config import ModelConfig
    from cezsar.training.joint_embedder import JointEmbedder
    from cezsar.training.model import SinusoidalPositionalEncoding

    m = JointEmbedder(ModelConfig(feat_dim=5, text_dim=7, d_model=8, n_heads=2, emb_dim=4)).eval()
    with pytest.raises(ValueError, match=r"encode_text expects \(B, 7\) sentence vectors, got \(2, 5\)"):
        m.encode_text(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"mask shape \(2, 3\) does not match features \(2, 4\)"):
        m.encode_video(torch.zeros(2, 4, 5), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"encode_video_packed expects \(N, 5\) rows, got \(1, 3, 5\)"):
        m.encode_video_packed(torch.zeros(1, 3, 5), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"encode_video_packed expects \(N, 5\) rows, got \(3, 4\)"):
        m.encode_video_packed(torch.zeros(3, 4), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask \(3,\) / index must be \(U, T\) / \(3,\)"):
        m.encode_video_packed(torch.zeros(3, 5), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask \(1, 3\) / index must be \(U, T\) / \(3,\)"):
        m.encode_video_packed(torch.zeros(3, 5), torch.ones(1, 3, dtype=torch.bool), torch.arange(2))
    x, mask = torch.randn(2, 4, 5), torch.tensor([[True] * 4, [True, True, False, False]])
    rows = x[mask]  # (6, 5) the valid rows
    torch.testing.assert_close(m.encode_video_packed(rows, mask, torch.nonzero(mask.reshape(-1)).reshape(-1)),
                               m.encode_video(x, mask), atol=1e-5, rtol=1e-5)
    pe = SinusoidalPositionalEncoding(8)
    assert pe.pe.shape == (256, 8) and "pe" not in pe.state_dict()  # a pure function of (d, length): not saved


def test_protocol_specs_name_the_classes_and_runs_of_the_paper():
    """0/all and 0/N with N = every class are one run over all classes; 0/N takes the paper's run count for a
    known dataset and protocol (ucf101 0/50: 50 runs); a malformed count is refused saying what is expected."""
    from cezsar.evaluation import protocols as P

    a = P.get_protocol("ucf101", "0/all", 101)
    assert (a.dataset, a.name, a.n_classes, a.runs) == ("ucf101", "0/all", 101, 1)
    b = P.get_protocol("ucf101", "0/101", 101)
    assert (b.dataset, b.name, b.n_classes, b.runs) == ("ucf101", "0/101", 101, 1)
    c = P.get_protocol("ucf101", "0/50", 101)
    assert (c.dataset, c.name, c.n_classes, c.runs) == ("ucf101", "0/50", 50, P.PROTOCOLS["ucf101"]["0/50"][1])
    assert P.get_protocol("ucf101", "0/50", 101, runs=3).runs == 3
    with pytest.raises(ValueError, match=r"^protocol '0/x': the part after '0/' must be a class count or 'all'$"):
        P.get_protocol("ucf101", "0/x", 101)
