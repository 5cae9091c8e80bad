"""The CUDA-graph trainer's logic on a CPU (issue 28 part 2): `cezsar.training.graphed_step.GraphedTrainer` with its
three CUDA parts (side-stream warm-up, capture, replay) replaced by plain calls, so what remains (the
epoch's tables in fixed buffers, the step counter read on the device, unrolled and single-step replays, the
warm-up undone, the validation sums) is checked against the eager step. tests/test_cuda.py checks the real
graphs on a GPU."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cezsar.config import TrainConfig
from cezsar.training.featurebank import epoch_order
from cezsar.training.graphed_step import GraphedTrainer
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.static_step import run_length
from cezsar.training.eager_step import evaluate, make_optimizer, train_one_epoch
from test_train import toy_fast_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CallsNotGraphs(GraphedTrainer):
    """GraphedTrainer whose 'graphs' are the recorded functions themselves."""

    recorded = 0

    def _check(self, optimizer) -> None:
        pass

    def _warm_up(self, fn, times: int) -> None:
        for _ in range(times):
            fn()

    def _record(self, fn):
        self.recorded += 1
        return fn


def test_graphed_trainer_refuses_a_cpu_device_and_a_plain_optimizer(tmp_path):
    _, _, _, cfg, data = toy_fast_path(tmp_path)
    model = JointEmbedder(cfg)
    with pytest.raises(ValueError, match="CUDA device"):
        GraphedTrainer(model, data, make_optimizer(model, TrainConfig()), TrainConfig(), run_length(data))


@pytest.mark.parametrize("optim", ["sgd", "adamw"])
def test_graphed_trainer_logic_equals_the_eager_epoch(tmp_path, optim):
    """Two epochs, 300 triplets in batches of 32 (10 steps: unroll 4 -> 4 + 4 + 1 + 1, the tail of 12 last)."""
    trip, _, _, cfg, data = toy_fast_path(tmp_path)
    tcfg = TrainConfig(lr=1e-3, batch=32)
    train_idx = np.flatnonzero(~np.asarray(trip.val))
    torch.manual_seed(0)
    eager = JointEmbedder(cfg)
    graphed, start = copy.deepcopy(eager), copy.deepcopy(eager)

    def opt(m):
        return torch.optim.SGD(m.parameters(), lr=0.5) if optim == "sgd" else make_optimizer(m, tcfg)

    opt_e, opt_g = opt(eager), opt(graphed)
    trainer = CallsNotGraphs(graphed, data, opt_g, tcfg, run_length(data), unroll=4)
    assert trainer.train_epoch(epoch_order(data.win.numpy(), train_idx, 0, 0, 8), limit_steps=0)["steps"] == 0
    assert trainer.recorded == 2  # the unrolled and the one-step 'graph'
    for p, q in zip(graphed.parameters(), start.parameters()):
        assert torch.equal(p, q)  # the warm-up steps were undone
    for st in opt_g.state.values():  # AdamW's state, born in the warm-up, back to a fresh one
        assert all(not v.any() for v in st.values())
    for epoch in range(2):
        order = epoch_order(data.win.numpy(), train_idx, 0, epoch, 8)
        re, rg = train_one_epoch(eager, data, opt_e, order, tcfg, torch.device("cpu")), trainer.train_epoch(order)
        assert re["steps"] == rg["steps"] == 10 and re["triplets"] == rg["triplets"] == 300
        assert abs(re["loss"] - rg["loss"]) <= 1e-5 * re["loss"]
        assert int(trainer.counter) == 10
    for (name, p), q in zip(graphed.named_parameters(), eager.parameters()):
        if optim == "adamw" and name.endswith("in_proj_bias"):
            # AdamW turns the rounding noise of the key bias's zero gradient (softmax ignores a shift) into
            # lr-sized steps: that slice is left out
            d = p.shape[0] // 3
            p, q = torch.cat([p[:d], p[2 * d:]]), torch.cat([q[:d], q[2 * d:]])
        scale = float(q.detach().abs().max())
        assert float((p - q).detach().abs().max()) <= 1e-4 * scale, name
    assert not torch.allclose(graphed.vem.proj.weight, start.vem.proj.weight, atol=1e-4)


def test_graphed_validation_logic_equals_evaluate(tmp_path):
    trip, _, _, cfg, data = toy_fast_path(tmp_path, dropout=0.2)
    tcfg = TrainConfig(batch=32)
    val = np.flatnonzero(np.asarray(trip.val))
    torch.manual_seed(0)
    model = JointEmbedder(cfg)
    trainer = CallsNotGraphs(model, data, make_optimizer(model, tcfg), tcfg, run_length(data))
    ref = evaluate(model, data, val, tcfg, torch.device("cpu"))
    for _ in range(2):
        got = trainer.evaluate(val)
        assert abs(got["loss"] - ref["loss"]) <= 1e-6 * ref["loss"] and got["acc"] == ref["acc"]
    assert trainer.recorded == 1 and model.training  # recorded once; the model is back in training mode
