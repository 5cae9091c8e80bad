"""The joint embedder (paper §3.2): a visual embedding module (VEM) and a sentence embedding module (SEM)
that map a video's per-second CNN feature stack and a sentence's SBERT vector into one 128-d space.

Defaults follow the paper; `ModelConfig.positional` and `ModelConfig.released_sem` switch to the
released code's variants (DESIGN.md §7). The released code's attention over the *batch* axis
(`batch_first` unset) is deliberately not reproduced: it makes a clip's embedding depend on the other clips
in its batch.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cezsar.config import ModelConfig


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sine/cosine position codes (Vaswani et al. 2017), added to the VEM input of Eq. 2-3."""

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

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        if t > self.pe.shape[0]:
            self.pe = self._table(t, self.d_model).to(self.pe.device)
        return x + self.pe[:t].to(x.dtype)  # (B, T, d_model)


class VisualEmbedder(nn.Module):
    """VEM, paper §3.2: FC+ReLU (Eq. 1) -> sinusoidal PE -> one transformer encoder layer (Eqs. 2-4)
    -> mean over the valid time steps -> FC+ReLU to d_emb (Eq. 5)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.feat_dim, cfg.d_model)
        self.pe = SinusoidalPositionalEncoding(cfg.d_model) if cfg.positional else None
        # batch_first=True: attention runs over time within each clip, never across the batch
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
            for _ in range(cfg.n_layers)
        )
        self.out = nn.Linear(cfg.d_model, cfg.emb_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, feat_dim) features, one row per second; mask: (B, T) bool, True = valid row.

        Padded rows are excluded from the attention keys and from the mean, and are zeroed before the
        projection, so neither their content nor their number changes the output.
        """
        b, t, _ = x.shape
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        valid = mask.unsqueeze(-1)  # (B, T, 1)
        # torch.where, not a product: a NaN/inf in a padded row must not leak through 0 * x
        x = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
        h = torch.relu(self.proj(x))  # (B, T, d_model)  Eq. 1
        if self.pe is not None:
            h = self.pe(h)
        pad = ~mask  # (B, T) True = ignore (torch's key-padding convention)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)  # (B, T, d_model)  Eqs. 2-4
        h = torch.where(valid, h, torch.zeros((), dtype=h.dtype, device=h.device))
        n = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)  # (B, 1)
        pooled = h.sum(dim=1) / n  # (B, d_model) masked mean over time
        return torch.relu(self.out(pooled))  # (B, d_emb)  Eq. 5


class SentenceEmbedder(nn.Module):
    """SEM, paper Eq. 6: FC+ReLU from the SBERT vector to d_emb.

    `released_sem=True` uses the released code's Dropout + Linear + LayerNorm instead.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.released_sem:
            self.net = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.text_dim, cfg.emb_dim), nn.LayerNorm(cfg.emb_dim))
        else:
            self.net = nn.Sequential(nn.Linear(cfg.text_dim, cfg.emb_dim), nn.ReLU())

    def forward(self, s: Tensor) -> Tensor:
        return self.net(s)  # (B, d_emb)


class JointEmbedder(nn.Module):
    """VEM + SEM (paper §3.2); trained with the triplet loss of Eq. 7 (`cezsar.train`)."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.vem = VisualEmbedder(self.cfg)
        self.sem = SentenceEmbedder(self.cfg)

    def encode_video(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Eqs. 1-5. x: (B, T, feat_dim) float; mask: (B, T) bool, True = valid. Returns (B, d_emb)."""
        if x.dim() != 3 or x.shape[-1] != self.cfg.feat_dim:
            raise ValueError(f"encode_video expects (B, T, {self.cfg.feat_dim}) features, got {tuple(x.shape)}")
        if mask is not None and mask.shape != x.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match features {tuple(x.shape[:2])}")
        return self.vem(x, mask)

    def encode_text(self, s: Tensor) -> Tensor:
        """Eq. 6. s: (B, text_dim) SBERT vectors. Returns (B, d_emb)."""
        if s.dim() != 2 or s.shape[-1] != self.cfg.text_dim:
            raise ValueError(f"encode_text expects (B, {self.cfg.text_dim}) sentence vectors, got {tuple(s.shape)}")
        return self.sem(s)
