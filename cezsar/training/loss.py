"""The training objective, Eq. 7 (paper §3.3), and the numeric precision every training step computes it in.

A leaf of the training modules: the eager step (`cezsar.training.eager_step`), the static and graphed steps
(`cezsar.training.static_step`, `cezsar.training.graphed_step`) and the stacked seeds (`cezsar.training.stacked`) all
take the loss from here, so none of them imports another to reach it.
"""
from __future__ import annotations

import torch
from torch import Tensor


def triplet_loss(v: Tensor, s_pos: Tensor, s_neg: Tensor, margin: float = 1.0) -> Tensor:
    """Eq. 7 per triplet: max(||v - s_p|| - ||v - s_n|| + margin, 0), Euclidean distance. Returns (B,).

    Plain norms (no eps inside the difference, unlike torch's TripletMarginLoss) so the value is exactly
    the paper's formula.
    """
    d_pos = torch.linalg.vector_norm(v - s_pos, dim=-1)  # (B,)
    d_neg = torch.linalg.vector_norm(v - s_neg, dim=-1)  # (B,)
    return torch.clamp(d_pos - d_neg + margin, min=0.0)


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 autocast on CUDA (TrainConfig.autocast); the released code trained in fp32 (autocast=False)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")
