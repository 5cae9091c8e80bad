"""The joint embedder's two modules as the paper writes them (§3.2, Eqs. 1-6): the visual embedding module (VEM)
maps a video's per-second CNN feature stack, and the sentence embedding module (SEM) a sentence's SBERT vector,
into one 128-d space.

This file is the paper only, read top to bottom: the positional code, then the VEM step by step (Eq. 1, the
positional code, Eqs. 2-4, the mean and Eq. 5), then the SEM (Eq. 6). The released code's variants
(docs/fidelity.md) subclass or replace these modules in `cezsar.training.released_model`;
`cezsar.training.joint_embedder` joins a VEM and a SEM into the `JointEmbedder` a `ModelConfig` names, and
`cezsar.training.packed_vem` runs the same VEM steps on packed rows (the training fast path).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cezsar.config import ModelConfig
from cezsar.training.onednn_linear import Linear


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sine/cosine position codes (Vaswani et al. 2017), added to the VEM input of Eqs. 2-3 (v_r^PE)."""

    def __init__(self, d_model: int, max_len: int = 256) -> None:
        super().__init__()
        self.d_model = d_model
        # not persistent: the table is a pure function of (d_model, length), so checkpoints stay small
        # and a clip longer than the table simply triggers a recompute (evaluation may use whole clips)
        self.register_buffer("pe", self._table(max_len, d_model), persistent=False)

    @staticmethod
    def _table(length: int, d_model: int) -> Tensor:
        pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(length, d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div[: d_model // 2])
        return pe  # (L, d_model)

    def _ensure(self, t: int) -> None:
        if t > self.pe.shape[0]:
            self.pe = self._table(t, self.d_model).to(self.pe.device)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d_model) plus the codes of positions 0 … T-1."""
        t = x.shape[1]
        self._ensure(t)
        return x + self.pe[:t].to(x.dtype)  # (B, T, d_model)

    def at(self, position: Tensor, length: int) -> Tensor:
        """The codes of the time steps `position` (N,) int64 of clips up to `length` long: (N, d_model)."""
        self._ensure(length)
        return self.pe[position]  # (N, d_model)


class VisualEmbedder(nn.Module):
    """VEM, paper §3.2, Eqs. 1-5: each second's CNN feature reduced by FC + ReLU (Eq. 1), its sine/cosine
    position code added, one transformer encoder layer over the clip's seconds (Eqs. 2-4), the mean over the
    clip's valid seconds, and FC + ReLU onto the joint space (Eq. 5).

    Each step is a public method, so the packed fast path (`cezsar.training.packed_vem`) and the released variants
    (`cezsar.training.released_model`) reuse or replace exactly one step."""

    # each clip's embedding depends on its own valid rows only: padding never reaches the output and clips never
    # see each other, so the packed fast path may compute it from the valid rows alone
    valid_rows_only = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.proj = Linear(cfg.feat_dim, cfg.d_model)  # Eq. 1: W, b (nn.Linear; fp32 CPU products via oneDNN)
        self.pe: SinusoidalPositionalEncoding | None = SinusoidalPositionalEncoding(cfg.d_model)  # v_r^PE
        # Eqs. 2-4; batch_first=True: attention runs over time within each clip, never across the batch
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
            for _ in range(cfg.n_layers)
        )
        self.out = Linear(cfg.d_model, cfg.emb_dim)  # Eq. 5: W, b
        self.cfg = cfg

    def reduce(self, v_c: Tensor) -> Tensor:
        """Eq. 1: v_r = ReLU(v_c W + b), each second's CNN feature reduced to d_model. (..., feat_dim) ->
        (..., d_model)."""
        return torch.relu(self.proj(v_c))

    def encode_positions(self, v_r: Tensor) -> Tensor:
        """v_r^PE: v_r (B, T, d_model) plus each time step's sine/cosine code (Vaswani et al.)."""
        return self.pe(v_r)  # (B, T, d_model)

    def attend(self, h: Tensor, pad: Tensor) -> Tensor:
        """Eqs. 2-4: multi-head scaled dot-product self-attention over the time steps of each clip, then the
        position-wise FFN (with the encoder layer's residuals and LayerNorms). h (B, T, d_model); pad (B, T) bool,
        True = a padded step, never attended to (torch's key-padding convention)."""
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)  # (B, T, d_model)
        return h

    def step_features(self, h: Tensor) -> Tensor:
        """v_r^FFN, the per-step features that Eq. 5 averages: Eq. 4's output as it is (the released head
        changes them, `cezsar.training.released_model`)."""
        return h

    def average(self, h: Tensor, mask: Tensor) -> Tensor:
        """"These features are averaged" (Eq. 5): the mean of h (B, T, d_model) over each clip's valid steps
        (mask (B, T) bool, True = valid). Returns (B, d_model)."""
        # torch.where, not a product: a NaN/inf in a padded row must not leak through 0 * h
        h = torch.where(mask.unsqueeze(-1), h, torch.zeros((), dtype=h.dtype, device=h.device))  # (B, T, d_model)
        n = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)  # (B, 1)
        return h.sum(dim=1) / n  # (B, d_model)

    def project(self, pooled: Tensor) -> Tensor:
        """Eq. 5: v_emb = ReLU(mean v_r^FFN W + b), onto the joint space. (B, d_model) -> (B, d_emb)."""
        return torch.relu(self.out(pooled))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Eqs. 1-5. x: (B, T, feat_dim) features, one row per second; mask: (B, T) bool, True = valid row.

        Padded rows are excluded from the attention keys and from the mean, and are zeroed before the
        projection, so neither their content nor their number changes the output.
        """
        b, t, _ = x.shape
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))  # (B, T, feat_dim)
        h = self.reduce(x)  # (B, T, d_model)  Eq. 1
        h = self.encode_positions(h)  # (B, T, d_model)  v_r^PE
        h = self.attend(h, ~mask)  # (B, T, d_model)  Eqs. 2-4
        pooled = self.average(self.step_features(h), mask)  # (B, d_model)
        return self.project(pooled)  # (B, d_emb)  Eq. 5


class SentenceEmbedder(nn.Module):
    """SEM, paper Eq. 6: s_emb = ReLU(SBERT(s) W + b), from the SBERT vector to d_emb."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(Linear(cfg.text_dim, cfg.emb_dim), nn.ReLU())  # Eq. 6: W, b, ReLU

    def forward(self, s: Tensor) -> Tensor:
        """Eq. 6. s (B, text_dim) SBERT vectors -> (B, d_emb)."""
        return self.net(s)  # (B, d_emb)
