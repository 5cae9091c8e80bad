"""The fidelity measurement trains a variant's seeds together (issue 27 part 5): stacked where the model allows,
with the same per-seed results as one `fit` per seed; and a switch that cannot change anything on the data is
found from the data, not from a list."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cezsar.harness import fidelity
from cezsar.training.checkpoints import load_checkpoint
from cezsar.config import ModelConfig, TrainConfig
from cezsar.harness.fidelity_checks import same_visual_input, unmeasurable
from cezsar.training.stacked import seed_dir, trains_stacked
from test_train import TINY, make_toy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _top1(model, store, trip, text: np.ndarray) -> tuple[float, torch.Tensor]:
    """A tiny stand-in of the measurement's score: each toy video's first 15 rows against its class's mean
    sentence embedding, cosine top-1 (Eq. 8); returns (top-1, the video embeddings)."""
    model.eval()
    with torch.no_grad():
        x = torch.stack([torch.from_numpy(store.load(v)[:12]) for v in trip.video_ids])  # (V, 12, D)
        ve = model.encode_video(x, torch.ones(x.shape[:2], dtype=torch.bool))  # (V, E)
        se = model.encode_text(torch.from_numpy(text)).view(4, 5, -1).mean(dim=1)  # (C, E)
    sim = torch.nn.functional.normalize(ve, dim=1) @ torch.nn.functional.normalize(se, dim=1).T  # (V, C)
    labels = torch.tensor([int(v[1]) for v in trip.video_ids])  # ids "v<class>_<j>"
    return float((sim.argmax(dim=1) == labels).float().mean()), ve


def test_stacked_seeds_give_each_seed_the_result_of_its_own_training(tmp_path, monkeypatch):
    """Seeds 0 and 1 of the paper's model (dropout 0: no random draws to match), 3 epochs: through `train_seeds`
    stacked (one `fit_stacked` call) and one at a time (one `fit` per seed), each seed's losses, best epoch and
    top-1 agree."""
    trip, store, text = make_toy(tmp_path / "feats")
    tcfg, mcfg = TrainConfig(lr=1e-3, batch=32, epochs=3, device="cpu"), ModelConfig(**TINY)
    calls = []
    for name in ("fit", "fit_stacked"):
        real = getattr(fidelity, name)
        monkeypatch.setattr(fidelity, name, lambda *a, _n=name, _f=real, **k: calls.append(_n) or _f(*a, **k))
    assert trains_stacked(mcfg, tcfg)
    both = fidelity.train_seeds(trip, store, text, [0, 1], tcfg, mcfg, tmp_path / "stacked")
    assert calls == ["fit_stacked"]
    alone = fidelity.train_seeds(trip, store, text, [0, 1], tcfg, mcfg, tmp_path / "alone", stacked=False)
    assert calls == ["fit_stacked", "fit", "fit"]
    for s, a, b in zip([0, 1], both, alone):
        assert a["best_epoch"] == b["best_epoch"] and a["epochs_run"] == b["epochs_run"] == 3
        for x, y in zip(a["history"], b["history"]):
            assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5)
            assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-5)
        top_a, ve_a = _top1(load_checkpoint(seed_dir(tmp_path / "stacked", s) / "best.pt")[0], store, trip, text)
        top_b, ve_b = _top1(load_checkpoint(seed_dir(tmp_path / "alone", s) / "best.pt")[0], store, trip, text)
        assert top_a == top_b and torch.allclose(ve_a, ve_b, rtol=1e-3, atol=1e-4)
    assert not torch.allclose(_top1(load_checkpoint(seed_dir(tmp_path / "stacked", 0) / "best.pt")[0], store, trip,
                                    text)[1],
                              _top1(load_checkpoint(seed_dir(tmp_path / "stacked", 1) / "best.pt")[0], store, trip,
                                    text)[1])  # two seeds, two models


def test_variants_the_stacked_path_does_not_compute_train_one_fit_per_seed():
    assert trains_stacked(ModelConfig(), TrainConfig())
    assert not trains_stacked(ModelConfig(released_sem=True), TrainConfig())  # released model variants
    assert not trains_stacked(ModelConfig(), TrainConfig(released_validation=True))  # train-mode validation


class _Lengths:
    """A feature store's `length` over given clip lengths."""

    def __init__(self, lengths: dict[str, int]) -> None:
        self.lengths = lengths

    def length(self, vid: str) -> int:
        return self.lengths[vid]


def _triplets(bounds: np.ndarray) -> SimpleNamespace:
    """One triplet per segment of one 40-s video, its mined window the whole segment."""
    n = len(bounds)
    return SimpleNamespace(video_ids=["a"], video=np.zeros(n, np.int32), start=bounds[:, 0].astype(np.float32),
                           end=bounds[:, 1].astype(np.float32), segment=np.arange(n))


def test_the_released_window_is_not_measurable_only_when_it_takes_the_mined_windows_rows():
    store, window = _Lengths({"a": 40}), {"window": "released", "max_len": 16}
    base = {"window": "paper", "max_len": 15, "epochs": 25}
    whole = np.array([[2.0, 10.0], [12.0, 21.0]])  # whole-second bounds: int() and ceil() agree
    assert same_visual_input(_triplets(whole), store, whole, ("paper", 15), ("released", 16))
    short = {"ucf101": (_Lengths({"u": 15}), ["u"])}  # one window under max_len 15 and 16
    reason = unmeasurable(base, {**base, **window}, "SynthActions", triplets=_triplets(whole), store=store,
                          bounds=whole, test_clips=short)
    assert reason.startswith("not measurable on SynthActions") and "2 mined triplets" in reason
    # max_len 16 also cuts a 16-s test clip into one window instead of 15 + 1: measurable, or unknown without clips
    sixteen = {"ucf101": (_Lengths({"u": 16}), ["u"])}
    for clips in (sixteen, None):
        assert unmeasurable(base, {**base, **window}, "SynthActions", triplets=_triplets(whole), store=store,
                            bounds=whole, test_clips=clips) is None
    shifted = np.array([[2.4, 10.4], [12.0, 21.0]])  # released rows 2..9, the window's 3..10
    assert not same_visual_input(_triplets(shifted), store, shifted, ("paper", 15), ("released", 16))
    assert unmeasurable(base, {**base, **window}, "SynthActions", triplets=_triplets(shifted), store=store,
                        bounds=shifted, test_clips=short) is None
    longer = np.array([[2.0, 30.0]])  # a 28-s segment: the released first 16 s, the mined window its rows to 30
    assert not same_visual_input(_triplets(longer), store, longer, ("paper", 30), ("released", 16))


def test_the_first_16_s_cut_is_not_measurable_only_when_no_test_clip_is_longer():
    short = {"ucf101": (_Lengths({"u1": 9, "u2": 16}), ["u1", "u2"]), "kinetics400": (_Lengths({"k": 10}), ["k"])}
    reason = unmeasurable({"max_seconds": None}, {"max_seconds": 16}, "SynthActions", test_clips=short)
    assert "every test clip is at most 16 s long (longest: ucf101 16 s, kinetics400 10 s)" in reason
    long = {**short, "kinetics400": (_Lengths({"k": 17}), ["k"])}
    assert unmeasurable({"max_seconds": None}, {"max_seconds": 16}, "SynthActions", test_clips=long) is None
    # a switch of another kind is never declared unmeasurable by these checks
    assert unmeasurable({"max_seconds": None, "d_model": 512}, {"max_seconds": 16, "d_model": 1024}, "SynthActions",
                        test_clips=short) is None


def test_fp32_is_measured_on_cuda_only():
    """bf16 autocast runs on CUDA only: turning it off changes nothing on a CPU."""
    reason = unmeasurable({"autocast": True}, {"autocast": False}, "SynthActions", device="cpu")
    assert reason == "not measurable on CPU: bf16 autocast runs on CUDA only, so there is none to turn off"
    assert unmeasurable({"autocast": True}, {"autocast": False}, "SynthActions", device="cuda") is None
