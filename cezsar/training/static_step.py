"""The static-shape training step (docs/decisions.md §16): every tensor of a step has a shape fixed for the run,
and nothing in it waits for the device, so a step can be traced once (`torch.compile(fullgraph=True)`) or
captured in a CUDA graph (`cezsar.training.graphed_step`).

The eager step (`cezsar.training.eager_step.batch_loss`) finds a batch's distinct windows and sentences with
`torch.unique`, its longest window with `.item()` and its valid rows with `nonzero`: four host syncs and shapes that
change from batch to batch. Here those are computed once per epoch, for every batch at once, into `EpochTables`:

- every batch has `batch` triplets; the last, partial one is padded with copies of its first triplet that
  carry weight 0, and the loss is sum(w * l) / n_valid: the same value and gradient as the eager mean;
- a batch's distinct windows fill `windows_cap` slots (16, 32, 64 or 128: the smallest that holds the
  epoch's busiest batch), their valid rows `rows_cap` packed rows (a multiple of 16), its distinct sentences
  2 x batch slots; unused slots repeat a real window or sentence and are never read back;
- the time axis is the run's longest window (`TripletTensors.mask`), fixed once.

A trace (`torch.compile`) or a CUDA graph (`cezsar.training.graphed_step`) runs every batch at the caps. On a CPU,
where fixed shapes buy nothing and padding costs compute, `train_one_epoch_static` cuts each batch to its own
sizes, read once per epoch (`EpochTables.own_sizes`): no per-batch unique, nonzero or host read remains.

Windows and sentences keep torch.unique's ascending order, so the packed rows are the eager step's rows in
the eager step's order: with dropout 0 the two steps agree to float rounding (tests/test_static_step.py).
With dropout on, the masks are drawn over the padded row count, so the draws differ from the eager step's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cezsar.training.featurebank import TripletTensors
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.loss import autocast, triplet_loss
from cezsar.training.packed_vem import forward_packed

WINDOW_BUCKETS = (16, 32, 64, 128)  # slots for a batch's distinct windows; beyond 128: multiples of 128
ROW_MULTIPLE = 16  # packed rows per batch: the epoch's largest, rounded up to this


def window_cap(n: int) -> int:
    """The smallest bucket (16/32/64/128, then multiples of 128) holding `n` distinct windows."""
    for cap in WINDOW_BUCKETS:
        if n <= cap:
            return cap
    return -(-n // 128) * 128


def run_length(data: TripletTensors) -> int:
    """The run's time axis: the longest window's number of valid rows (10 for the paper's windows, 15 for the
    released ones); one host read, once per run."""
    return int(data.mask.sum(1).max()) if data.mask.shape[0] else 1


@dataclass
class StepTables:
    """One batch of `EpochTables` (every field without its leading step axis)."""

    rows: Tensor  # (Nc,) int64 bank rows of the packed valid steps, window after window; padding repeats a row
    scatter: Tensor  # (Nc,) int64 flat slot u * T + j of each row; padding rows: Uc * T (a spare slot)
    gather: Tensor  # (Nc,) int64 the same, padding rows: 0 (read back, never used)
    mask: Tensor  # (Uc, T) bool valid steps; an unused window slot has its first step on (zeros, no NaN)
    inv_v: Tensor  # (B,) int64 window slot of each triplet
    sent: Tensor  # (2B,) int64 sentence ids of the sentence slots
    inv_p: Tensor  # (B,) int64 sentence slot of each positive
    inv_n: Tensor  # (B,) int64 sentence slot of each negative
    weight: Tensor  # (B,) float32 1 = a triplet of the epoch, 0 = padding
    n_valid: Tensor  # () float32 real triplets in the batch


FIELDS = ("rows", "scatter", "gather", "mask", "inv_v", "sent", "inv_p", "inv_n", "weight", "n_valid")


@dataclass
class EpochTables(StepTables):
    """Every batch of an epoch, stacked on a leading step axis (S, ...); built by `epoch_tables`."""

    # (S, 4) int64 each batch's distinct windows, packed rows, distinct sentences, longest window
    counts: Tensor | None = None

    def step(self, i: int, sizes: tuple[int, int, int, int] | None = None) -> StepTables:
        """Batch `i` (a host int: views, no copy). `sizes` (`own_sizes()[i]`): cut to the batch's own windows,
        rows, sentences and longest window, i.e. without any padding (the real slots come first): the eager
        step's shapes, so its dropout draws too."""
        tab = StepTables(**{f: getattr(self, f)[i] for f in FIELDS})
        if sizes is not None:
            w, r, n, t = sizes
            big_t = tab.mask.shape[1]
            tab.mask, tab.sent, tab.rows = tab.mask[:w, :t], tab.sent[:n], tab.rows[:r]
            flat = tab.scatter[:r]  # (r,) u * T + j, all real rows
            tab.scatter = tab.gather = flat if t == big_t else flat // big_t * t + flat % big_t  # u * t + j
        return tab

    def own_sizes(self) -> list[tuple[int, int, int, int]]:
        """Each batch's (windows, rows, sentences, longest window), one host read for the epoch. The CPU step
        forwards each batch at its own sizes: there fixed shapes buy nothing and padding costs compute; traces
        and CUDA graphs use the caps."""
        return [tuple(c) for c in self.counts.tolist()]

    def at(self, k: Tensor) -> StepTables:
        """Batch `k`, a () int64 tensor on the tables' device: the read a CUDA graph replays (no host argument)."""
        k = k.reshape(1)
        return StepTables(**{f: getattr(self, f).index_select(0, k)[0] for f in FIELDS})

    @property
    def steps(self) -> int:
        return int(self.weight.shape[0])

    @property
    def caps(self) -> tuple[int, int]:
        """(windows_cap, rows_cap)."""
        return int(self.mask.shape[1]), int(self.rows.shape[1])

    def copy_(self, other: EpochTables) -> None:
        """Overwrite these tables in place with `other` of the same shapes (a captured graph keeps reading
        these buffers)."""
        for f in FIELDS:
            getattr(self, f).copy_(getattr(other, f))


def _distinct(ids: Tensor, cap: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Per row of ids (S, K): its distinct values ascending in `cap` slots (padded with the row's first id),
    the slot of every entry (S, K), and the number of distinct values (S,). cap None = the largest count,
    rounded by `window_cap` (one host read)."""
    s, k = ids.shape
    sorted_ids, perm = ids.sort(dim=1, stable=True)  # (S, K)
    first = torch.ones_like(sorted_ids, dtype=torch.bool)  # (S, K) True = first of its value
    first[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    slot = first.long().cumsum(1) - 1  # (S, K) slot of each sorted entry
    count = slot[:, -1] + 1  # (S,)
    if cap is None:
        cap = window_cap(int(count.max()))
    inverse = torch.empty_like(slot).scatter_(1, perm, slot)  # (S, K) slot of each entry in its given order
    # only first occurrences write a slot; repeats go to a spare last column that is dropped
    target = torch.where(first & (slot < cap), slot, torch.full_like(slot, cap))  # (S, K) (the caller checks count)
    uniq = ids[:, :1].expand(s, cap + 1).clone().scatter_(1, target, sorted_ids)[:, :cap]  # (S, cap)
    return uniq, inverse, count


def epoch_tables(data: TripletTensors, order: Tensor | np.ndarray, batch: int, t: int,
                 caps: tuple[int, int] | None = None) -> EpochTables:
    """The static step's tables for the triplets `order` (any order, any length >= 1), in batches of `batch`.

    t: the run's time axis (`run_length`). caps: (windows_cap, rows_cap) to use, e.g. those a CUDA graph was
    captured with; they must hold the epoch's busiest batch (checked). None = the epoch's own (one host read).
    All work is on `data`'s device, for the whole epoch at once.
    """
    dev = data.win.device
    order = torch.as_tensor(order, dtype=torch.int64).to(dev)  # (M,)
    m = int(order.shape[0])
    if m == 0:
        raise ValueError("epoch_tables: no triplets")
    steps = -(-m // batch)
    last = order[(steps - 1) * batch:(steps - 1) * batch + 1]  # (1,) first triplet of the last batch
    idx = torch.cat([order, last.expand(steps * batch - m)]).view(steps, batch)  # (S, B)
    weight = (torch.arange(steps * batch, device=dev) < m).float().view(steps, batch)  # (S, B)

    # windows: distinct per batch, their valid rows packed window after window
    uw, inv_v, n_win = _distinct(data.win[idx], None if caps is None else caps[0])  # (S, Uc), (S, B), (S,)
    uc = uw.shape[1]
    if caps is not None and int(n_win.max()) > uc:
        raise ValueError(f"a batch has {int(n_win.max())} distinct windows, more than the cap {uc}")
    lengths = data.mask.sum(1)  # (W,) valid rows of every window
    used = torch.arange(uc, device=dev)[None, :] < n_win[:, None]  # (S, Uc) slots holding a window
    lens = torch.where(used, lengths[uw], torch.zeros((), dtype=lengths.dtype, device=dev))  # (S, Uc)
    step_t = torch.arange(t, device=dev)  # (T,)
    mask = (step_t[None, None, :] < lens[:, :, None]) | ((step_t == 0)[None, None, :] & ~used[:, :, None])  # (S, Uc, T)
    n_rows = lens.sum(1)  # (S,)
    nc = -(-int(n_rows.max()) // ROW_MULTIPLE) * ROW_MULTIPLE if caps is None else caps[1]
    if caps is not None and int(n_rows.max()) > nc:
        raise ValueError(f"a batch has {int(n_rows.max())} window rows, more than the cap {nc}")
    ends = lens.cumsum(1)  # (S, Uc)
    r = torch.arange(nc, device=dev).expand(steps, nc)  # (S, Nc) packed row number
    real = r < n_rows[:, None]  # (S, Nc)
    u = torch.searchsorted(ends, r.contiguous(), right=True).clamp(max=uc - 1)  # (S, Nc) window slot of row r
    j = r - (ends - lens).gather(1, u)  # (S, Nc) its step inside the window
    u = torch.where(real, u, torch.zeros_like(u))
    j = torch.where(real, j, torch.zeros_like(j))
    flat = u * t + j  # (S, Nc)
    scatter = torch.where(real, flat, torch.full_like(flat, uc * t))
    rows = data.rows[uw.gather(1, u), j]  # (S, Nc) bank rows; padding rows read slot 0's first row

    # sentences: positives then negatives, distinct per batch in 2B slots
    sent, inv_s, n_sent = _distinct(torch.cat([data.pos[idx], data.neg[idx]], dim=1), 2 * batch)  # (S, 2B) x2, (S,)
    return EpochTables(rows=rows, scatter=scatter, gather=flat, mask=mask, inv_v=inv_v, sent=sent,
                       inv_p=inv_s[:, :batch], inv_n=inv_s[:, batch:], weight=weight, n_valid=weight.sum(1),
                       counts=torch.stack([n_win, n_rows.to(torch.int64), n_sent, lens.max(1).values.to(torch.int64)],
                                          dim=1))


def compute_dtype(device: torch.device, autocast: bool) -> torch.dtype:
    """What the bank's rows are gathered into: bf16 under CUDA autocast (the first Linear's input dtype), else
    float32 (the CPU path, and fp32/TF32 on a GPU)."""
    return torch.bfloat16 if autocast and device.type == "cuda" else torch.float32


def static_batch_loss(model: JointEmbedder, data: TripletTensors, tab: StepTables, margin: float,
                      dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Eq. 7 for one batch of the tables: (per-triplet loss (B,), d_pos < d_neg (B,) bool), padding included
    (weigh with tab.weight). The same function as `cezsar.training.eager_step.batch_loss` on the batch's real
    triplets."""
    x = data.bank[tab.rows].to(dtype)  # (Nc, D) one gather, straight into the compute dtype
    ve = forward_packed(model.vem, x, tab.mask, tab.scatter, tab.gather).float()  # (Uc, d_emb)
    se = model.encode_text(data.text[tab.sent]).float()  # (2B, d_emb)
    v, sp, sn = ve[tab.inv_v], se[tab.inv_p], se[tab.inv_n]  # (B, d_emb) each
    loss = triplet_loss(v, sp, sn, margin)  # (B,)
    with torch.no_grad():
        correct = torch.linalg.vector_norm(v - sp, dim=-1) < torch.linalg.vector_norm(v - sn, dim=-1)  # (B,)
    return loss, correct


def weighted_loss(model: JointEmbedder, data: TripletTensors, tab: StepTables, margin: float,
                  dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """(sum(w * l) / n_valid (), sum(w * l) ()): the batch's mean loss over its real triplets, and its sum."""
    loss, _ = static_batch_loss(model, data, tab, margin, dtype)
    total = (loss * tab.weight).sum()  # () padding weighs 0
    return total / tab.n_valid, total


def train_one_epoch_static(model: JointEmbedder, data: TripletTensors, optimizer: torch.optim.Optimizer,
                           order: np.ndarray, cfg, device: torch.device, t: int, progress: bool = False,
                           limit_steps: int | None = None, desc: str = "train") -> dict:
    """`cezsar.training.eager_step.train_one_epoch` (one process) with the static step; the same dict back."""
    from tqdm.auto import tqdm  # lazy: tqdm.auto loads ipywidgets in a notebook; only a progress bar needs it

    model.train()
    t0 = time.perf_counter()
    tables = epoch_tables(data, order, cfg.batch, t)
    dtype = compute_dtype(device, cfg.autocast)
    steps = tables.steps if limit_steps is None else min(tables.steps, limit_steps)
    sizes = tables.own_sizes() if device.type == "cpu" else [None] * tables.steps  # (`EpochTables.own_sizes`)
    total = torch.zeros((), dtype=torch.float64, device=device)  # summed on device: no sync per step
    for i in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        tab = tables.step(i, sizes[i])
        with autocast(device, cfg.autocast):
            mean, wsum = weighted_loss(model, data, tab, cfg.margin, dtype)
        optimizer.zero_grad(set_to_none=True)
        mean.backward()
        optimizer.step()
        total += wsum.detach().double()
    seen = min(len(order), steps * cfg.batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"loss": float(total) / max(seen, 1), "steps": steps, "triplets": seen,
            "seconds": time.perf_counter() - t0}


@torch.no_grad()
def evaluate_static(model: JointEmbedder, data: TripletTensors, idx: np.ndarray, cfg, device: torch.device,
                    t: int) -> dict:
    """`cezsar.training.eager_step.evaluate` (one process) with the static step: sums kept on the device, one read at
    the end. `cfg.released_validation`: in train mode, as `evaluate`."""
    model.train(cfg.released_validation)
    if len(idx) == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    win = data.win.cpu().numpy()
    tables = epoch_tables(data, idx[np.argsort(win[idx], kind="stable")], cfg.batch, t)  # share windows
    dtype = compute_dtype(device, cfg.autocast)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # (loss, correct)
    sizes = tables.own_sizes() if device.type == "cpu" else [None] * tables.steps
    for i in range(tables.steps):
        tab = tables.step(i, sizes[i])
        with autocast(device, cfg.autocast):
            loss, ok = static_batch_loss(model, data, tab, cfg.margin, dtype)
        sums += torch.stack([(loss.double() * tab.weight).sum(), (ok.double() * tab.weight).sum()])
    total, correct = sums.tolist()
    return {"loss": total / len(idx), "acc": int(round(correct)) / len(idx)}
