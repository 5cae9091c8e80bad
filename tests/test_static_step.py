"""The static-shape training step (issue 28 part 1): its epoch tables, its equality with the eager step over a
whole epoch (ragged tail included), a trace with no data-dependent shape, and `fit` with either step; the
background epoch order and checkpoint writes (issue 28 part 2, the CPU side)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from cezsar.training.background import CheckpointWriter, OrderAhead, snapshot
from cezsar.config import FastPathConfig, ModelConfig, TrainConfig
from cezsar.training.featurebank import epoch_order
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.static_step import (epoch_tables, evaluate_static, run_length,
                                train_one_epoch_static, weighted_loss, window_cap)
from cezsar.training.train import fit
from cezsar.training.eager_step import batch_loss, evaluate, make_optimizer, train_one_epoch
from test_train import TINY, make_toy, toy_fast_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BATCH = 32  # the toy set has 360 triplets: 11 full batches and a tail of 8


def assert_rel_close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5, what: str = "") -> None:
    """|a - b| <= rel * max|b| elementwise: equal to `rel` of the tensor's scale."""
    scale = float(b.detach().abs().max().clamp(min=1e-12))
    err = float((a.detach() - b.detach()).abs().max())
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel} x scale {scale:.3g}"


# --- the tables ----------------------------------------------------------------------------------
def test_window_cap_buckets():
    assert [window_cap(n) for n in (1, 16, 17, 32, 33, 64, 65, 128, 129, 300)] == [16, 16, 32, 32, 64, 64, 128,
                                                                                     128, 256, 384]


def test_epoch_tables_hold_each_batch_its_distinct_windows_and_sentences(tmp_path):
    _, _, _, _, data = toy_fast_path(tmp_path)
    order = np.random.default_rng(0).permutation(len(data.win))  # i.i.d.: many windows per batch
    t = run_length(data)
    tab = epoch_tables(data, order, BATCH, t)
    steps = -(-len(order) // BATCH)
    # make_toy's windows last up to 10 s, one feature row per second: the longest window has 10 rows
    assert tab.steps == steps and t == int(data.mask.sum(1).max()) == 10
    uc, nc = tab.caps
    assert uc in (16, 32) and nc % 16 == 0 and tab.mask.shape == (steps, uc, t)
    assert tab.weight.sum() == len(order) and tab.weight[-1].sum() == len(order) % BATCH == 8
    for i in range(steps):
        b = torch.as_tensor(order[i * BATCH:(i + 1) * BATCH])
        s = tab.step(i)
        n = len(b)
        assert float(s.n_valid) == n and torch.equal(s.weight[:n], torch.ones(n)) and not s.weight[n:].any()
        # the real triplets read their own window and sentences through the slots
        uw = data.win[b].unique()
        slots = torch.zeros(uc, dtype=torch.int64)
        slots.scatter_(0, s.inv_v[:n], data.win[b])
        assert torch.equal(slots[:len(uw)], uw)  # ascending, as torch.unique
        assert torch.equal(s.sent[s.inv_p[:n]], data.pos[b]) and torch.equal(s.sent[s.inv_n[:n]], data.neg[b])
        # padding triplets repeat the batch's first one: no window or sentence beyond the real ones
        assert set(s.inv_v.tolist()) == set(s.inv_v[:n].tolist())
        # the packed rows are the eager path's rows, in its order; padding rows go to the spare slot
        x, mask, index, _ = data.packed_video_batch(b)
        k = len(index)
        assert torch.equal(data.bank[s.rows[:k]], x)
        assert torch.equal(s.mask[:len(uw), :mask.shape[1]], mask) and not s.mask[:len(uw), mask.shape[1]:].any()
        assert torch.equal(s.scatter[:k] // t * mask.shape[1] + s.scatter[:k] % t, index)
        assert (s.scatter[k:] == uc * t).all() and torch.equal(s.gather[:k], s.scatter[:k])
        # a CPU batch's own sizes are the eager step's
        n_sent = len(torch.cat([data.pos[b], data.neg[b]]).unique())
        assert tab.own_sizes()[i] == (len(uw), k, n_sent, mask.shape[1])
        own = tab.step(i, tab.own_sizes()[i])
        assert torch.equal(own.mask, mask) and torch.equal(own.scatter, index) and torch.equal(own.rows, s.rows[:k])


def test_epoch_tables_refuse_caps_too_small(tmp_path):
    _, _, _, _, data = toy_fast_path(tmp_path)
    order = np.random.default_rng(0).permutation(len(data.win))
    t = run_length(data)
    uc, nc = epoch_tables(data, order, BATCH, t).caps
    with pytest.raises(ValueError, match="distinct windows, more than the cap"):
        epoch_tables(data, order, BATCH, t, caps=(4, nc))
    with pytest.raises(ValueError, match="window rows, more than the cap"):
        epoch_tables(data, order, BATCH, t, caps=(uc, 16))
    bigger = epoch_tables(data, order, BATCH, t, caps=(uc * 2, nc + 16))
    assert bigger.caps == (uc * 2, nc + 16)


# --- equality with the eager step ----------------------------------------------------------------
@pytest.mark.parametrize("group", [8, 1])
def test_static_step_equals_eager_step_over_a_whole_epoch(tmp_path, group):
    """Every batch of an epoch (grouped or i.i.d., the last one ragged): loss and every parameter's gradient
    within 1e-5 relative of the eager step's at the same weights; then a whole epoch of AdamW steps each way
    ends at the same weights and epoch loss."""
    _, _, _, cfg, data = toy_fast_path(tmp_path)  # dropout 0: both steps compute one function
    order = epoch_order(data.win.numpy(), np.arange(len(data.win)), 0, 3, group)
    t = run_length(data)
    tab = epoch_tables(data, order, BATCH, t)
    torch.manual_seed(0)
    model = JointEmbedder(cfg).train()
    opt = make_optimizer(model, TrainConfig(lr=1e-3))
    params = list(model.parameters())
    for i in range(tab.steps):
        b = torch.as_tensor(order[i * BATCH:(i + 1) * BATCH])
        eager = batch_loss(model, data, b, 1.0)[0].mean()
        g_eager = torch.autograd.grad(eager, params)
        static, _ = weighted_loss(model, data, tab.step(i), 1.0)
        g_static = torch.autograd.grad(static, params)
        assert_rel_close(static, eager, what=f"loss of batch {i}")
        for (name, _), a, c in zip(model.named_parameters(), g_static, g_eager):
            assert_rel_close(a, c, what=f"grad {name} of batch {i}")
        for p, g in zip(params, g_eager):  # advance the weights, so later batches are checked elsewhere
            p.grad = g
        opt.step()
    assert len(b) == len(order) % BATCH  # the ragged tail was among them

    # SGD here: AdamW divides by sqrt(v), which turns the rounding noise of a zero gradient (the attention's key
    # bias has one: softmax ignores a shift) into steps of size lr
    torch.manual_seed(0)
    a = JointEmbedder(cfg)
    b_model, before = copy.deepcopy(a), copy.deepcopy(a)
    tcfg = TrainConfig(batch=BATCH)
    ra = train_one_epoch(a, data, torch.optim.SGD(a.parameters(), lr=0.5), order, tcfg, torch.device("cpu"))
    rb = train_one_epoch_static(b_model, data, torch.optim.SGD(b_model.parameters(), lr=0.5), order, tcfg,
                                torch.device("cpu"), t)
    assert ra["steps"] == rb["steps"] and ra["triplets"] == rb["triplets"] == len(order)
    assert abs(ra["loss"] - rb["loss"]) <= 1e-5 * abs(ra["loss"])
    for (name, p), q in zip(a.named_parameters(), b_model.parameters()):
        assert_rel_close(q, p, what=f"weights {name} after an epoch")
    assert not torch.allclose(a.vem.proj.weight, before.vem.proj.weight, atol=1e-4)  # it did train


@pytest.mark.parametrize("variant", ["released_head", "released_sem", "xavier_init"])
def test_static_step_equals_eager_step_for_the_released_variants_it_serves(tmp_path, variant):
    """The released switches that keep the packed layout (`fit` uses the eager step for released_padding and
    released_attention): a full batch and the ragged tail, at the caps, equal to the eager step."""
    import dataclasses

    _, _, _, cfg, data = toy_fast_path(tmp_path)
    cfg = dataclasses.replace(cfg, **{variant: True})
    order = np.random.default_rng(2).permutation(len(data.win))
    tab = epoch_tables(data, order, BATCH, run_length(data))
    torch.manual_seed(0)
    model = JointEmbedder(cfg).train()
    params = list(model.parameters())
    for i in (0, tab.steps - 1):
        eager = batch_loss(model, data, torch.as_tensor(order[i * BATCH:(i + 1) * BATCH]), 1.0)[0].mean()
        static, _ = weighted_loss(model, data, tab.step(i), 1.0)
        assert_rel_close(static, eager, what=f"{variant} loss {i}")
        for p, a, c in zip(params, torch.autograd.grad(static, params), torch.autograd.grad(eager, params)):
            assert_rel_close(a, c, what=f"{variant} grad {tuple(p.shape)} {i}")


def test_cpu_static_epoch_draws_the_eager_epochs_dropout(tmp_path):
    """On a CPU the static step forwards each batch at its own sizes (`EpochTables.own_sizes`): the eager
    step's shapes, so with dropout on and the same seed it draws the same masks and trains the same weights."""
    _, _, _, cfg, data = toy_fast_path(tmp_path, dropout=0.3)
    order = epoch_order(data.win.numpy(), np.arange(len(data.win)), 0, 1, 1)  # i.i.d.: ragged windows per batch
    torch.manual_seed(0)
    a = JointEmbedder(cfg)
    b = copy.deepcopy(a)
    tcfg = TrainConfig(batch=BATCH)
    torch.manual_seed(5)
    ra = train_one_epoch(a, data, torch.optim.SGD(a.parameters(), lr=0.5), order, tcfg, torch.device("cpu"))
    torch.manual_seed(5)
    rb = train_one_epoch_static(b, data, torch.optim.SGD(b.parameters(), lr=0.5), order, tcfg, torch.device("cpu"),
                                run_length(data))
    assert abs(ra["loss"] - rb["loss"]) <= 1e-5 * ra["loss"]
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert_rel_close(q, p, what=f"weights {name}")
    torch.manual_seed(6)  # another seed, other masks: the equality above is the draws', not dropout's absence
    c = copy.deepcopy(b)
    train_one_epoch_static(c, data, torch.optim.SGD(c.parameters(), lr=0.5), order, tcfg, torch.device("cpu"),
                           run_length(data))
    torch.manual_seed(5)
    train_one_epoch_static(b, data, torch.optim.SGD(b.parameters(), lr=0.5), order, tcfg, torch.device("cpu"),
                           run_length(data))
    assert not torch.allclose(b.vem.proj.weight, c.vem.proj.weight, atol=1e-6)


def test_static_evaluation_equals_eager_evaluation(tmp_path):
    trip, _, _, cfg, data = toy_fast_path(tmp_path)
    val = np.flatnonzero(trip.val)
    torch.manual_seed(0)
    model = JointEmbedder(cfg)
    tcfg = TrainConfig(batch=BATCH)
    eager = evaluate(model, data, val, tcfg, torch.device("cpu"))
    static = evaluate_static(model, data, val, tcfg, torch.device("cpu"), run_length(data))
    assert abs(static["loss"] - eager["loss"]) <= 1e-6 * eager["loss"] and static["acc"] == eager["acc"]
    assert 0 < eager["acc"] < 1  # an untrained model: both outcomes occur, so the counts are compared


def test_static_step_with_dropout_trains_on_finite_values(tmp_path):
    """Dropout on: the spare slot and the unused window slots never put a NaN into the loss or a gradient."""
    _, _, _, cfg, data = toy_fast_path(tmp_path, dropout=0.3)
    order = np.random.default_rng(1).permutation(len(data.win))
    tab = epoch_tables(data, order, BATCH, run_length(data))
    model = JointEmbedder(cfg).train()
    for i in (0, tab.steps - 1):
        loss, _ = weighted_loss(model, data, tab.step(i), 1.0)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


# --- a trace with no sync and no data-dependent shape --------------------------------------------
def traced_graph(fn, *args) -> list:
    """Compile `fn` with fullgraph=True (a graph break or a host sync raises), through aot_eager (forward and
    backward traced); returns the data-dependent (unbacked) size symbols of every traced value."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    aot = torch._dynamo.lookup_backend("aot_eager")
    found = []

    def backend(gm, example_inputs):
        for node in gm.graph.nodes:
            val = node.meta.get("example_value")
            if val is not None:
                found.extend(free_unbacked_symbols(val))
        return aot(gm, example_inputs)

    torch._dynamo.reset()
    out = torch.compile(fn, fullgraph=True, backend=backend)(*args)
    out.backward()
    return found


@pytest.mark.slow
def test_static_step_traces_whole_without_data_dependent_shapes_and_the_eager_one_does_not(tmp_path):
    _, _, _, cfg, data = toy_fast_path(tmp_path, dropout=0.1)
    order = epoch_order(data.win.numpy(), np.arange(len(data.win)), 0, 0, 8)
    tab = epoch_tables(data, order, BATCH, run_length(data))
    model = JointEmbedder(cfg).train()

    def static(k: torch.Tensor) -> torch.Tensor:  # k: () the batch number, read on the device
        return weighted_loss(model, data, tab.at(k), 1.0)[0]

    def eager(b: torch.Tensor) -> torch.Tensor:
        return batch_loss(model, data, b, 1.0)[0].mean()

    assert traced_graph(static, torch.tensor(tab.steps - 1)) == []
    assert model.vem.proj.weight.grad is not None and torch.isfinite(model.vem.proj.weight.grad).all()
    # today's step: torch.unique and the longest-window read make sizes that depend on the data
    assert len(traced_graph(eager, torch.as_tensor(order[:BATCH]))) >= 2


# --- fit -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fit_with_the_static_step_matches_fit_with_the_eager_step(tmp_path):
    trip, store, text = make_toy(tmp_path / "feats")
    runs = {}
    for step in ("eager", "static"):
        runs[step] = fit(trip, store, text, TrainConfig(lr=1e-3, batch=BATCH, epochs=3, device="cpu"),
                         ModelConfig(**TINY), tmp_path / step, progress=False,
                         fast=FastPathConfig(bank_dtype="float32", step=step))
    for a, b in zip(runs["eager"]["history"], runs["static"]["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) <= 1e-5 * a["train_loss"]
        assert abs(a["val_loss"] - b["val_loss"]) <= 1e-5 * a["val_loss"] and a["val_acc"] == b["val_acc"]
    with pytest.raises(ValueError, match="FastPathConfig.step"):
        fit(trip, store, text, TrainConfig(epochs=1, device="cpu"), ModelConfig(**TINY), tmp_path / "bad",
            progress=False, fast=FastPathConfig(step="graph"))


# --- background work -----------------------------------------------------------------------------
def test_order_ahead_returns_the_same_orders_drawn_on_a_thread():
    win = np.repeat(np.arange(50), 7)
    idx = np.arange(len(win))
    threads = []

    def order(epoch: int) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return epoch_order(win, idx, 5, epoch, 8)

    ahead = OrderAhead(order, enabled=True)
    got = [ahead.get(e, e + 1 if e < 3 else None) for e in range(4)]
    ahead.close()
    for e, o in enumerate(got):
        assert np.array_equal(o, epoch_order(win, idx, 5, e, 8))
    assert threads[0] == threading.current_thread().name and all(n.startswith("epoch-order") for n in threads[1:])


def test_snapshot_is_not_changed_by_later_steps():
    w = torch.ones(3)
    hist = [{"epoch": 0}]
    snap = snapshot({"model": {"w": w}, "history": hist, "step": (torch.zeros(()),)})
    w.add_(1.0)
    hist.append({"epoch": 1})
    assert torch.equal(snap["model"]["w"], torch.ones(3)) and snap["history"] == [{"epoch": 0}]


def test_checkpoint_writer_runs_writes_in_order_and_hooks_after_them(tmp_path):
    log = []
    gate = threading.Event()

    def write(i: int):
        def job():
            if i == 0:
                gate.wait(5)  # the first write is slow: the second must wait for it
            (tmp_path / f"{i}").write_text(str(i))
            log.append(("write", i))
        return job

    writer = CheckpointWriter(enabled=True)
    writer.submit(write(0), lambda: log.append(("hook", 0)))
    assert log == []  # returned while the write is in flight
    gate.set()
    writer.submit(write(1), lambda: log.append(("hook", 1)))
    writer.close()
    assert log == [("write", 0), ("hook", 0), ("write", 1), ("hook", 1)]

    def fail():
        raise OSError("disk full")

    writer = CheckpointWriter(enabled=True)
    writer.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        writer.close()


@pytest.mark.slow
def test_background_writes_equal_inline_writes(tmp_path):
    """Checkpoints and logs written on a thread hold the state of their own epoch: the same files as inline."""
    trip, store, text = make_toy(tmp_path / "feats")
    rows = {}
    for mode in ("off", "on"):
        seen = []
        fit(trip, store, text, TrainConfig(lr=1e-3, batch=BATCH, epochs=3, device="cpu"),
            ModelConfig(**{**TINY, "dropout": 0.1}), tmp_path / mode, progress=False, on_epoch_end=seen.append,
            fast=FastPathConfig(bank_dtype="float32", background=mode))
        rows[mode] = seen
    a = torch.load(tmp_path / "off" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "on" / "last.pt", weights_only=True)
    def results(history: list) -> list:  # the rows without their timings
        return [{k: v for k, v in r.items() if k not in ("seconds", "triplets_per_s")} for r in history]

    assert a["epoch"] == b["epoch"] == 2 and len(a["history"]) == 3
    assert results(a["history"]) == results(b["history"]) == results(rows["off"]) == results(rows["on"])
    assert b["history"] == rows["on"] == json.loads((tmp_path / "on" / "log.json").read_text())
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    for st_a, st_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(st_a[k], st_b[k]) for k in st_a)


CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from pathlib import Path
    from cezsar.config import FastPathConfig, ModelConfig, TrainConfig
    from cezsar.training.train import fit
    from test_train import make_toy, TINY
    trip, store, text = make_toy(Path({feats!r}))
    kill_after = int(sys.argv[2])
    def hook(row):
        if row["epoch"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    fit(trip, store, text, TrainConfig(lr=1e-3, batch=32, epochs=4, device="cpu", seed=3),
        ModelConfig(**{{**TINY, "dropout": 0.2}}), sys.argv[1], resume=sys.argv[3] == "1", progress=False,
        on_epoch_end=hook, fast=FastPathConfig(background="on", step="static"))
""")


@pytest.mark.slow
def test_background_writes_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    """Checkpoints written on a thread, the static step: kill -9 in epoch 1's hook (it runs once epoch 1's files
    are on disk, while epoch 2 trains), resume, and the run ends where an uninterrupted one does."""
    make_toy(tmp_path / "feats")
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), feats=str(tmp_path / "feats")))

    def child(out: str, kill_after: int, resume: bool) -> int:
        return subprocess.run([sys.executable, str(script), out, str(kill_after), "1" if resume else "0"],
                              capture_output=True, timeout=300).returncode

    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    assert child(full, -1, False) == 0
    assert child(cut, 1, False) == -9
    assert torch.load(Path(cut) / "last.pt", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in json.loads((Path(cut) / "log.json").read_text())] == [0, 1]
    assert child(cut, -1, True) == 0
    a = torch.load(Path(full) / "last.pt", weights_only=True)
    b = torch.load(Path(cut) / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["val_loss"] for r in a["history"]] == [r["val_loss"] for r in b["history"]]
