"""The static step (`cezsar.training.static_step`) in CUDA graphs (docs/decisions.md §16): forward, backward and
AdamW(fused, capturable) of `unroll` consecutive steps recorded once and replayed, so an epoch costs a few
hundred graph launches instead of ~200 kernel launches and 4 host syncs per step.

- The epoch's tables live in fixed buffers that the graphs read; a new epoch copies its tables into them.
- A step counter on the device selects each step's batch and is incremented inside the graph: a replay takes
  no host argument. An epoch of S steps replays the unrolled graph S // unroll times, then a one-step graph
  S % unroll times.
- The loss sum stays on the device; it is read once per epoch.
- Warm-up runs on a side stream, as torch's CUDA-graph notes ask; the weights, the optimiser state and the
  counters are restored afterwards, so the warm-up steps do not train.
- Validation is a second, forward-only graph (model in eval mode) whose sums stay on the device.

CUDA only. The eager step (`cezsar.training.eager_step.batch_loss`) stays the CPU path and the reference:
tests/test_cuda.py checks that a graphed epoch equals an eager one.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from cezsar.training.featurebank import TripletTensors
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.static_step import EpochTables, compute_dtype, epoch_tables, static_batch_loss, weighted_loss

WARMUP_STEPS = 3


class GraphedTrainer:
    """Trains `model` with `optimizer` (AdamW with capturable=True, on the model's CUDA device) on `data`, one
    epoch per `train_epoch` call; `evaluate` is `cezsar.training.eager_step.evaluate` as a graph. t: the run's time
    axis."""

    def __init__(self, model: JointEmbedder, data: TripletTensors, optimizer: torch.optim.Optimizer, cfg, t: int,
                 unroll: int = 8) -> None:
        self.device = data.bank.device
        self._check(optimizer)
        if unroll < 1:
            raise ValueError(f"unroll must be >= 1, got {unroll}")
        self.model, self.data, self.opt, self.cfg, self.t, self.unroll = model, data, optimizer, cfg, t, unroll
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.dtype = compute_dtype(self.device, cfg.autocast)
        self.counter = torch.zeros((), dtype=torch.int64, device=self.device)  # () the step the graph reads next
        self.total = torch.zeros((), dtype=torch.float64, device=self.device)  # () the epoch's summed loss
        self.tables: EpochTables | None = None
        self.graphs: tuple[Callable[[], None], Callable[[], None]] | None = None  # replays: unrolled, one step
        self.val_key: int | None = None
        self.val_graph: Callable[[], None] | None = None
        self.val_sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # (loss, correct)
        self.val_counter = torch.zeros((), dtype=torch.int64, device=self.device)
        self.val_tables: EpochTables | None = None

    # --- the CUDA parts (tests/test_graphed_step.py replaces them with plain calls to check the rest on a CPU)
    def _check(self, optimizer: torch.optim.Optimizer) -> None:
        if self.device.type != "cuda":
            raise ValueError("GraphedTrainer needs the data on a CUDA device; on a CPU use the static or eager step")
        if not all(g.get("capturable") for g in optimizer.param_groups):
            raise ValueError("GraphedTrainer needs an optimizer built with capturable=True (make_optimizer(..., "
                             "capturable=True))")

    def _warm_up(self, fn: Callable[[], None], times: int) -> None:
        """`fn` run `times` times on a side stream, as torch's CUDA-graph notes ask before a capture."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(times):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(side)

    def _record(self, fn: Callable[[], None]) -> Callable[[], None]:
        """`fn` captured in a CUDA graph with its own memory pool (recording runs nothing); returns its replay.
        thread_local: a checkpoint write on another thread may wait on a CUDA event during a capture."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            fn()
        return graph.replay

    # --- training ---------------------------------------------------------------------------------------
    def _autocast(self):
        # the autocast cache must be off inside a graph capture (its cached casts would outlive the capture)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False,
                              enabled=bool(self.cfg.autocast) and self.device.type == "cuda")

    def _step(self) -> None:
        """One training step on batch `counter` of the tables; everything stays on the device."""
        tab = self.tables.at(self.counter)
        with self._autocast():
            mean, wsum = weighted_loss(self.model, self.data, tab, self.cfg.margin, self.dtype)
        for p in self.params:  # fresh gradients (allocated from the graph's pool), as zero_grad(set_to_none)
            p.grad = None
        mean.backward()
        self.opt.step()
        self.total.add_(wsum.detach().double())
        self.counter.add_(1)

    def _state(self) -> list[Tensor]:
        """Every tensor a step changes: the weights and the optimiser's state."""
        out = list(self.params)
        for st in self.opt.state.values():
            out.extend(v for v in st.values() if isinstance(v, Tensor))
        return out

    def _capture(self) -> None:
        self.model.train()
        before = [(v, v.detach().clone()) for v in self._state()]  # AdamW may create its state in the warm-up
        self.counter.zero_()
        self._warm_up(self._step, WARMUP_STEPS)
        with torch.no_grad():  # undo the warm-up: saved values back, state born in the warm-up to zero
            known = {id(v) for v, _ in before}
            for v in self._state():
                if id(v) not in known:
                    v.zero_()  # AdamW's fresh state: step 0, both moments 0
            for v, saved in before:
                v.copy_(saved)
        del before
        for p in self.params:
            p.grad = None
        self.counter.zero_()
        self.total.zero_()

        def unrolled() -> None:
            for _ in range(self.unroll):
                self._step()

        # a memory pool each: they replay in any order (a shared pool asks for the capture order), and the
        # model is small
        self.graphs = (self._record(unrolled), self._record(self._step))

    def _load_tables(self, order: np.ndarray) -> None:
        """The epoch's tables into the captured buffers; a larger cap or step count than captured re-captures."""
        new = epoch_tables(self.data, order, self.cfg.batch, self.t)
        old = self.tables
        if old is not None and old.steps == new.steps and all(n <= o for n, o in zip(new.caps, old.caps)):
            if new.caps != old.caps:
                new = epoch_tables(self.data, order, self.cfg.batch, self.t, caps=old.caps)
            old.copy_(new)
            return
        if old is not None and old.steps == new.steps:  # caps only grow, so captures stay few
            caps = tuple(max(n, o) for n, o in zip(new.caps, old.caps))
            new = epoch_tables(self.data, order, self.cfg.batch, self.t, caps=caps)
        self.tables = new
        self._capture()

    def train_epoch(self, order: np.ndarray, limit_steps: int | None = None) -> dict:
        """One epoch over the triplets `order` (`cezsar.training.eager_step.train_one_epoch`'s dict back)."""
        t0 = time.perf_counter()
        self._load_tables(order)
        self.model.train()
        steps = self.tables.steps if limit_steps is None else min(self.tables.steps, limit_steps)
        self.counter.zero_()
        self.total.zero_()
        many, one = self.graphs
        for _ in range(steps // self.unroll):
            many()
        for _ in range(steps % self.unroll):
            one()
        seen = min(len(order), steps * self.cfg.batch)
        loss = float(self.total) / max(seen, 1)  # the epoch's one read of the device
        return {"loss": loss, "steps": steps, "triplets": seen, "seconds": time.perf_counter() - t0}

    # --- validation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def _val_step(self) -> None:
        tab = self.val_tables.at(self.val_counter)
        with self._autocast():
            loss, ok = static_batch_loss(self.model, self.data, tab, self.cfg.margin, self.dtype)
        self.val_sums.add_(torch.stack([(loss.double() * tab.weight).sum(), (ok.double() * tab.weight).sum()]))
        self.val_counter.add_(1)

    def evaluate(self, idx: np.ndarray) -> dict:
        """`cezsar.training.eager_step.evaluate` (one process) as a forward-only graph over the fixed validation
        triplets (in train mode with `cfg.released_validation`, dropout drawn inside the graph)."""
        if len(idx) == 0:
            return {"loss": float("nan"), "acc": float("nan")}
        self.model.train(self.cfg.released_validation)  # the mode is recorded with the graph; as `evaluate`
        key = hash(np.ascontiguousarray(idx, dtype=np.int64).tobytes())
        if self.val_graph is None or key != self.val_key:
            win = self.data.win.cpu().numpy()
            order = idx[np.argsort(win[idx], kind="stable")]  # share windows, as `evaluate`
            self.val_tables = epoch_tables(self.data, order, self.cfg.batch, self.t)
            self.val_counter.zero_()
            self._warm_up(self._val_step, 1)
            self.val_graph = self._record(self._val_step)
            self.val_key = key
        self.val_counter.zero_()
        self.val_sums.zero_()
        for _ in range(self.val_tables.steps):
            self.val_graph()
        total, correct = self.val_sums.tolist()  # one read per validation pass
        self.model.train()
        return {"loss": total / len(idx), "acc": int(round(correct)) / len(idx)}
