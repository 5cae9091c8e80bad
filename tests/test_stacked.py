"""Stacked multi-seed training (issue 26): K models trained together equal K separate `fit`-style runs — per-step
losses and every gradient — each seed with its own batch order, dropout draws, early stopping and files."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from cezsar.training.checkpoints import load_checkpoint
from cezsar.config import ModelConfig, TrainConfig
from cezsar.training.featurebank import epoch_order
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.stacked import fit_stacked, seed_dir, stack_optimizer
from cezsar.training.stacked_model import StackedEmbedders, stacked_batch_loss
from cezsar.training.train import fit, seed_everything
from cezsar.training.eager_step import batch_loss, make_optimizer
from test_train import TINY, make_toy, toy_fast_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEEDS = [0, 1, 2]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp(min=1e-12))


def test_stacked_steps_equal_separate_runs_losses_and_gradients(tmp_path):
    """Three seeds, each on its own batch order, 6 AdamW steps: stacked losses and every parameter's gradient
    within 1e-5 relative of three separate single-model runs (dropout 0: no random draws to match)."""
    trip, store, text, cfg, data = toy_fast_path(tmp_path)
    tcfg = TrainConfig(lr=1e-3, batch=32, device="cpu")
    train_idx = np.flatnonzero(~np.asarray(trip.val, bool))
    orders = [torch.as_tensor(epoch_order(data.win.numpy(), train_idx, s, 0, 8)) for s in SEEDS]
    steps = 6
    sep_loss, sep_grad = {}, {}
    for s, order in zip(SEEDS, orders):
        seed_everything(s)
        model = JointEmbedder(cfg)
        model.train()
        opt = make_optimizer(model, tcfg)
        for i in range(steps):
            loss, _ = batch_loss(model, data, order[i * 32:(i + 1) * 32], tcfg.margin)
            opt.zero_grad()
            loss.mean().backward()
            sep_loss[s, i] = loss.detach().clone()
            sep_grad[s, i] = {n: p.grad.clone() for n, p in model.named_parameters()}
            opt.step()
    models = []
    for s in SEEDS:
        seed_everything(s)
        models.append(JointEmbedder(cfg))
    net = StackedEmbedders(models)
    opt = stack_optimizer(net, tcfg, [None] * len(SEEDS))
    for i in range(steps):
        loss, _ = stacked_batch_loss(net, [data], [o[i * 32:(i + 1) * 32] for o in orders], tcfg.margin)  # (K, B)
        opt.zero_grad()
        loss.mean(dim=1).sum().backward()
        for j, s in enumerate(SEEDS):
            assert _rel(loss[j].detach(), sep_loss[s, i]) < 1e-5, (s, i)
            for n in net.names:
                assert _rel(net.params[n].grad[j], sep_grad[s, i][n]) < 1e-5, (s, i, n)
        opt.step()


def test_stacked_dropout_draws_differ_between_models(tmp_path):
    """With dropout > 0 two models with the same weights on the same batch get different masks (different losses);
    in eval mode they agree."""
    trip, store, text, cfg, data = toy_fast_path(tmp_path, dropout=0.3)
    seed_everything(0)
    m = JointEmbedder(cfg)
    net = StackedEmbedders([m, m])
    b = torch.arange(32)
    loss, _ = stacked_batch_loss(net, [data], [b, b], 1.0)
    assert not torch.allclose(loss[0], loss[1])
    net.training = False
    loss, _ = stacked_batch_loss(net, [data], [b, b], 1.0)
    assert torch.equal(loss[0], loss[1])


def test_fit_stacked_equals_fit_per_seed_and_writes_each_seeds_files(tmp_path):
    """Two epochs, two seeds: each seed's log and weights match `fit(seed=s)`; each has fit's files in seed<s>/,
    readable by `load_checkpoint`."""
    trip, store, text = make_toy(tmp_path / "feats")
    tcfg = TrainConfig(lr=1e-3, batch=32, epochs=2, device="cpu")
    mcfg = ModelConfig(**TINY)
    res = fit_stacked(trip, store, text, [0, 1], tcfg, mcfg, tmp_path / "stacked")
    for r, s in zip(res, [0, 1]):
        ref = fit(trip, store, text, TrainConfig(lr=1e-3, batch=32, epochs=2, device="cpu", seed=s), mcfg,
                  tmp_path / f"fit{s}", progress=False)
        for a, b in zip(r["history"], ref["history"]):
            assert abs(a["train_loss"] - b["train_loss"]) <= 1e-5 * abs(b["train_loss"])
            assert abs(a["val_loss"] - b["val_loss"]) <= 1e-5 * abs(b["val_loss"])
        out = seed_dir(tmp_path / "stacked", s)
        assert {p.name for p in out.iterdir()} >= {"best.pt", "last.pt", "log.json", "log.csv"}
        assert json.loads((out / "log.json").read_text()) == r["history"]
        model, meta = load_checkpoint(out / "best.pt")
        ref_model, ref_meta = load_checkpoint(tmp_path / f"fit{s}" / "best.pt")
        assert meta["train_cfg"]["seed"] == s
        # the header is fit's: the stacked checkpoints record the training features' manifest too (issue 27)
        assert "features_manifest" in meta and meta["features_manifest"] == ref_meta["features_manifest"]
        # the attention's key bias has a zero gradient in exact arithmetic (softmax ignores it): Adam turns its
        # rounding noise into steps of up to lr, so weights are compared to lr x steps absolute
        steps = len(r["history"]) * int(np.ceil((~np.asarray(trip.val, bool)).sum() / 32))
        for (n, p), q in zip(model.state_dict().items(), ref_model.state_dict().values()):
            assert torch.allclose(p, q, rtol=1e-4, atol=1e-3 * steps), n
            if not n.endswith("in_proj_bias"):
                assert _rel(p, q) < 1e-4, n


def test_the_released_validation_trains_one_fit_per_seed_with_dropout_on_in_validation(tmp_path):
    """`released_validation` (validation in train mode) is honoured by the notebooks' stacked training: it falls
    back to `fit` per seed, whose validation losses differ from the eval-mode ones (dropout on)."""
    trip, store, text = make_toy(tmp_path / "feats")
    mcfg = ModelConfig(**{**TINY, "dropout": 0.3})
    tcfg = TrainConfig(lr=1e-3, batch=32, epochs=1, device="cpu", released_validation=True)
    res = fit_stacked(trip, store, text, [0, 1], tcfg, mcfg, tmp_path / "stacked")
    for r, s in zip(res, [0, 1]):
        ref = fit(trip, store, text, TrainConfig(lr=1e-3, batch=32, epochs=1, device="cpu", seed=s,
                                                 released_validation=True), mcfg, tmp_path / f"fit{s}", progress=False)
        assert [h["val_loss"] for h in r["history"]] == [h["val_loss"] for h in ref["history"]]
    eval_mode = fit_stacked(trip, store, text, [0], TrainConfig(lr=1e-3, batch=32, epochs=1, device="cpu"), mcfg,
                            tmp_path / "eval")
    assert eval_mode[0]["history"][0]["val_loss"] != res[0]["history"][0]["val_loss"]


def test_a_seed_that_stops_early_stops_changing_while_others_train(tmp_path):
    """patience 1 with a learning rate that makes validation worse: a stopped seed's files stop at its stop epoch."""
    trip, store, text = make_toy(tmp_path / "feats")
    res = fit_stacked(trip, store, text, [0, 1], TrainConfig(lr=3e-1, batch=32, epochs=5, patience=1, device="cpu"),
                      ModelConfig(**TINY), tmp_path / "run")
    for r in res:
        last = torch.load(Path(r["out_dir"]) / "last.pt", weights_only=True)
        assert last["epoch"] == len(r["history"]) - 1
        if r["stopped_early"]:
            assert len(r["history"]) < 5 and last["bad_epochs"] == 1


CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from pathlib import Path
    from cezsar.config import ModelConfig, TrainConfig
    from cezsar.training.stacked import fit_stacked
    from test_train import make_toy, TINY
    trip, store, text = make_toy(Path({feats!r}))
    kill_after = int(sys.argv[2])
    def hook(seed, row):
        if seed == 1 and row["epoch"] == kill_after:  # seed 0 has written this epoch, seed 2 has not
            os.kill(os.getpid(), signal.SIGKILL)
    fit_stacked(trip, store, text, [0, 1, 2], TrainConfig(lr=1e-3, batch=32, epochs=3, device="cpu"),
                ModelConfig(**{{**TINY, "dropout": 0.2}}), sys.argv[1], resume=sys.argv[3] == "1", on_epoch_end=hook)
""")


@pytest.mark.slow
def test_sigkill_between_seeds_then_resume_finishes_every_seed(tmp_path):
    """Killed after seed 1's epoch-1 files (seed 2 still at epoch 0): a resumed run brings every seed to the last
    epoch; seed 2 catches up alone, then the three train together again."""
    make_toy(tmp_path / "feats")
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), feats=str(tmp_path / "feats")))

    def child(out: str, kill_after: int, resume: bool) -> int:
        return subprocess.run([sys.executable, str(script), out, str(kill_after), "1" if resume else "0"],
                              capture_output=True, timeout=300).returncode

    cut = tmp_path / "cut"
    assert child(str(cut), 1, False) == -signal.SIGKILL
    epochs = [torch.load(seed_dir(cut, s) / "last.pt", weights_only=True)["epoch"] for s in (0, 1, 2)]
    assert epochs == [1, 1, 0]
    assert child(str(cut), -1, True) == 0
    for s in (0, 1, 2):
        last = torch.load(seed_dir(cut, s) / "last.pt", weights_only=True)
        assert last["epoch"] == 2 and [r["epoch"] for r in last["history"]] == [0, 1, 2]


def test_a_former_single_seed_run_moves_into_its_seed_folder(tmp_path):
    """The one-seed layout (`tau<τ>/last.pt`, best.pt, logs) is migrated to `tau<τ>/seed<its seed>/`, where
    stacked training resumes it (nothing retrained: its epochs are done)."""
    from cezsar.harness.pipeline_training import migrate_single_seed

    trip, store, text = make_toy(tmp_path / "feats")
    tau_dir = tmp_path / "tau0.80"
    tcfg = TrainConfig(lr=1e-3, batch=32, epochs=2, device="cpu", seed=1)
    fit(trip, store, text, tcfg, ModelConfig(**TINY), tau_dir, progress=False)
    before = torch.load(tau_dir / "last.pt", weights_only=True)
    migrate_single_seed(tau_dir)
    assert not (tau_dir / "last.pt").exists()
    assert {"last.pt", "best.pt", "log.json", "log.csv"} <= {p.name for p in seed_dir(tau_dir, 1).iterdir()}
    res = fit_stacked(trip, store, text, [1], tcfg, ModelConfig(**TINY), tau_dir, resume=True)
    after = torch.load(seed_dir(tau_dir, 1) / "last.pt", weights_only=True)
    assert res[0]["epochs_run"] == 2 and after["epoch"] == before["epoch"] == 1
    assert all(torch.equal(after["model"][k], before["model"][k]) for k in before["model"])
