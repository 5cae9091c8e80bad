"""The eager training step (paper §3.3-§4) in the MAE engine style: `train_one_epoch` and `evaluate` over a
`TripletTensors` (`cezsar.training.featurebank`), each distinct window and sentence forwarded once per batch, the
windows packed (their valid rows only through the VEM, `JointEmbedder.encode_video_packed`).

The reference step: the CPU path, the step of the released model variants and of data-parallel runs (each rank
takes its `rank_slice` of a global batch, DistributedDataParallel averages the gradients; docs/decisions.md §13).
`cezsar.training.static_step` and `cezsar.training.graphed_step` compute the same batches with fixed shapes.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from cezsar.base import distributed
from cezsar.config import TrainConfig
from cezsar.training.featurebank import TripletTensors
from cezsar.training.loss import autocast, triplet_loss
from cezsar.training.joint_embedder import JointEmbedder


def batch_loss(model: JointEmbedder, data: TripletTensors, b: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Eq. 7 for triplets `b`; each distinct window and sentence is embedded once and shared.

    The windows go through the packed VEM (Eqs. 1-5 on their valid rows only, `encode_video_packed`): the
    same function as `encode_video` on the padded batch, without the padding's compute.
    Returns (per-triplet loss (B,), d_pos < d_neg (B,) bool).
    """
    s, inv_p, inv_n = data.text_batch(b)
    if model.cfg.released_padding or model.cfg.released_attention:  # released variants need the padded layout
        xp, mask, inv_v = data.video_batch(b)
        ve = model.encode_video(xp, mask).float()  # (U, d_emb)
    else:
        x, mask, index, inv_v = data.packed_video_batch(b)
        ve = model.encode_video_packed(x, mask, index).float()  # (U, d_emb) fp32 for the loss under bf16 autocast
    se = model.encode_text(s).float()  # (Us, d_emb)
    v, sp, sn = ve[inv_v], se[inv_p], se[inv_n]  # (B, d_emb) each
    loss = triplet_loss(v, sp, sn, margin)
    with torch.no_grad():
        correct = torch.linalg.vector_norm(v - sp, dim=-1) < torch.linalg.vector_norm(v - sn, dim=-1)
    return loss, correct


def make_optimizer(model: JointEmbedder, cfg: TrainConfig, capturable: bool = False) -> torch.optim.AdamW:
    """AdamW with the paper's lr, betas and weight decay (§4).

    The fused kernel updates all parameters in one pass: on CPU the optimiser step is ~5x cheaper than
    torch's default loop, and with window sharing that step is a large part of a batch's cost.
    `capturable`: the step count stays on the device, so the update can be recorded in a CUDA graph
    (`cezsar.training.graphed_step`).
    """
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                             fused=True, capturable=capturable)


class BatchLoss(nn.Module):
    """`batch_loss` as a module's forward, so that DistributedDataParallel sees the step (it hooks `forward`;
    the packed path calls the model's encoders, not the model)."""

    def __init__(self, model: JointEmbedder, data: TripletTensors, margin: float) -> None:
        super().__init__()
        self.model, self.data, self.margin = model, data, margin

    def forward(self, b: Tensor) -> tuple[Tensor, Tensor]:
        return batch_loss(self.model, self.data, b, self.margin)


def rank_slice(n: int, world: int, rank: int) -> slice:
    """Rank `rank`'s part of a global batch of `n`: equal contiguous slices (the last ones shorter or empty
    when `n` does not divide), disjoint, covering the batch."""
    per = (n + world - 1) // world
    return slice(min(rank * per, n), min((rank + 1) * per, n))


def train_one_epoch(model: JointEmbedder, data: TripletTensors, optimizer: torch.optim.Optimizer, order: np.ndarray,
                    cfg: TrainConfig, device: torch.device, progress: bool = False, limit_steps: int | None = None,
                    desc: str = "train", ddp: DistributedDataParallel | None = None) -> dict:
    """One pass over the triplets in `order` (global batch cfg.batch); returns {"loss", "steps", "triplets",
    "seconds"}, loss and triplets over all ranks.

    `ddp`: the step wrapped in DistributedDataParallel (`fit` under torchrun); each rank then takes its
    `rank_slice` of every global batch, so N ranks x B/N triplets step like one process x B (up to float
    summation order, with dropout 0: dropout masks are drawn per rank)."""

    model.train()
    world = distributed.world_size() if ddp is not None else 1
    rank = distributed.rank() if ddp is not None else 0
    order_t = torch.as_tensor(order, dtype=torch.int64).to(device)
    steps = (len(order) + cfg.batch - 1) // cfg.batch
    if limit_steps is not None:
        steps = min(steps, limit_steps)
    total = torch.zeros((), dtype=torch.float64, device=device)  # summed on device: no sync per step
    seen = 0
    t0 = time.perf_counter()
    for i in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        b = order_t[i * cfg.batch:(i + 1) * cfg.batch]  # (B,) the global batch, the same on every rank
        if world == 1:
            with autocast(device, cfg.autocast):
                loss, _ = batch_loss(model, data, b, cfg.margin)
            mean = loss.mean()
            n = len(b)
        else:
            part = rank_slice(len(b), world, rank)
            mine = b[part] if part.stop > part.start else b[:1]  # (B/N,); an empty slice still joins the all-reduce
            with autocast(device, cfg.autocast):
                loss, _ = ddp(mine)
            # DDP averages gradients over ranks: sum * N / B here makes that average the global batch's mean
            weight = world / len(b) if part.stop > part.start else 0.0
            mean = loss.sum() * weight
            n = part.stop - part.start
            loss = loss if n else loss[:0]
        optimizer.zero_grad(set_to_none=True)
        mean.backward()
        optimizer.step()
        total += loss.detach().sum().double()
        seen += n
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if world > 1:  # the epoch's loss over every rank's triplets
        sums = distributed.all_reduce_sum(torch.stack([total, torch.tensor(float(seen), dtype=torch.float64,
                                                                          device=device)]))  # (2,)
        total, seen = sums[0], int(sums[1])
    return {"loss": float(total) / max(seen, 1), "steps": steps, "triplets": seen, "seconds": seconds}


@torch.no_grad()
def evaluate(model: JointEmbedder, data: TripletTensors, idx: np.ndarray, cfg: TrainConfig, device: torch.device) -> dict:
    """Mean Eq. 7 loss and triplet accuracy (d_pos < d_neg) over triplets `idx` (the video-level val split).

    Under torchrun each rank evaluates every N-th batch and the sums are all-reduced: every rank returns the
    same numbers. `cfg.released_validation`: the model stays in train mode, as in the released loop (dropout
    on, so the early-stopping loss is noisy; the released head's training-only LayerNorm applied)."""
    model.train(cfg.released_validation)
    if len(idx) == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    win = data.win.cpu().numpy()
    order = torch.as_tensor(idx[np.argsort(win[idx], kind="stable")], dtype=torch.int64).to(device)  # share windows
    world = distributed.world_size() if distributed.active() else 1
    rank = distributed.rank() if world > 1 else 0
    total, correct = 0.0, 0
    for j, i in enumerate(range(0, len(order), cfg.batch)):
        if j % world != rank:  # under torchrun each rank takes every N-th batch
            continue
        b = order[i:i + cfg.batch]
        with autocast(device, cfg.autocast):
            loss, ok = batch_loss(model, data, b, cfg.margin)
        total += float(loss.double().sum())
        correct += int(ok.sum())
    if world > 1:
        sums = distributed.all_reduce_sum(torch.tensor([total, correct], dtype=torch.float64, device=device))  # (2,)
        total, correct = float(sums[0]), int(sums[1])
    return {"loss": total / len(idx), "acc": correct / len(idx)}
