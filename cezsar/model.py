"""The joint embedder (paper §3.2): a visual embedding module (VEM) and a sentence embedding module (SEM)
that map a video's per-second CNN feature stack and a sentence's SBERT vector into one 128-d space.

Defaults follow the paper; the `ModelConfig` switches `positional`, `released_sem`, `released_padding`,
`released_attention`, `released_head` and `xavier_init` turn on the released code's variants one by one
(docs/fidelity.md). `released_attention` reproduces the released attention over the *batch* axis
(`batch_first` unset): in training a clip's embedding then depends on the other clips of its batch.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cezsar import packed_vem
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

    def _ensure(self, t: int) -> None:
        if t > self.pe.shape[0]:
            self.pe = self._table(t, self.d_model).to(self.pe.device)

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        self._ensure(t)
        return x + self.pe[:t].to(x.dtype)  # (B, T, d_model)

    def at(self, position: Tensor, length: int) -> Tensor:
        """The codes of the time steps `position` (N,) int64 of clips up to `length` long: (N, d_model)."""
        self._ensure(length)
        return self.pe[position]  # (N, d_model)


class VisualEmbedder(nn.Module):
    """VEM, paper §3.2: FC+ReLU (Eq. 1) -> sinusoidal PE -> one transformer encoder layer (Eqs. 2-4)
    -> mean over the valid time steps -> FC+ReLU to d_emb (Eq. 5).

    `released_head`: ReLU -> FC -> Dropout -> (PE) -> transformer -> Dropout -> ReLU -> mean -> FC, LayerNorm
    (affine) on the output in training only, as the released VisualEmbedding and JointEmbeddingModel."""

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
        self.cfg = cfg
        # released head only: the released LayerNorm on the output, with its affine weight and bias (torch's
        # default), applied in training only; created after every other layer, so the default model's
        # parameters and their initialisation order are untouched
        self.out_norm = nn.LayerNorm(cfg.emb_dim) if cfg.released_head else None

    def _first(self, x: Tensor) -> Tensor:
        """Eq. 1; released head: Dropout(Linear(ReLU(x))), the ReLU before the FC, none after it, and the
        released dropout between the FC and the transformer (docs/fidelity.md "VEM head")."""
        if self.cfg.released_head:
            return F.dropout(self.proj(torch.relu(x)), self.cfg.dropout, self.training)
        return torch.relu(self.proj(x))

    def _per_step(self, h: Tensor) -> Tensor:
        """What runs on each time step between the transformer and the mean: nothing for the paper; released
        head: ReLU(Dropout(h)), its second dropout and the ReLU before the last FC. The released code applied
        the FC per step and then took the mean; the FC is affine, so the mean of FC(z_t) is FC(mean z_t)."""
        if self.cfg.released_head:
            return torch.relu(F.dropout(h, self.cfg.dropout, self.training))
        return h

    def _last(self, pooled: Tensor) -> Tensor:
        """Eq. 5; released head: Linear(pooled) of the per-step ReLUs (`_per_step`), no output ReLU,
        LayerNorm in training only."""
        if not self.cfg.released_head:
            return torch.relu(self.out(pooled))
        out = self.out(pooled)
        return self.out_norm(out) if self.training else out

    def _released_layer(self, layer: nn.TransformerEncoderLayer, h: Tensor) -> Tensor:
        """The released attention: its layer ran with batch_first unset on (B, T, d) input, so in training each
        time step attends across the clips of the batch; at test it encoded one clip at a time as (1, T, d),
        i.e. T sequences of length 1, so each step attends only to itself. No key padding mask either way."""
        b, t, d = h.shape
        if self.training:
            return layer(h.transpose(0, 1)).transpose(0, 1)  # (T, B, d): attention over B  -> (B, T, d)
        return layer(h.reshape(b * t, 1, d)).reshape(b, t, d)  # (B T, 1, d): each step alone

    def _released_pad(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The released fixed input: exactly max_len rows, zero padded, every row valid (padding included in
        attention and in the mean)."""
        b, t, f = x.shape
        L = self.cfg.max_len
        x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))[:, :L]
        if t < L:
            x = torch.cat([x, x.new_zeros(b, L - t, f)], dim=1)  # (B, L, feat_dim)
        return x, torch.ones(b, L, dtype=torch.bool, device=x.device)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, feat_dim) features, one row per second; mask: (B, T) bool, True = valid row.

        Padded rows are excluded from the attention keys and from the mean, and are zeroed before the
        projection, so neither their content nor their number changes the output (unless `released_padding`).
        """
        b, t, _ = x.shape
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        if self.cfg.released_padding:
            x, mask = self._released_pad(x, mask)  # (B, max_len, feat_dim), all rows valid
        valid = mask.unsqueeze(-1)  # (B, T, 1)
        # torch.where, not a product: a NaN/inf in a padded row must not leak through 0 * x
        x = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
        h = self._first(x)  # (B, T, d_model)  Eq. 1
        if self.pe is not None:
            h = self.pe(h)
        pad = ~mask  # (B, T) True = ignore (torch's key-padding convention)
        for layer in self.layers:
            if self.cfg.released_attention:
                h = self._released_layer(layer, h)  # (B, T, d_model)
            else:
                h = layer(h, src_key_padding_mask=pad)  # (B, T, d_model)  Eqs. 2-4
        h = self._per_step(h)  # (B, T, d_model)
        h = torch.where(valid, h, torch.zeros((), dtype=h.dtype, device=h.device))
        n = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)  # (B, 1)
        pooled = h.sum(dim=1) / n  # (B, d_model) masked mean over time
        return self._last(pooled)  # (B, d_emb)  Eq. 5

    def forward_packed(self, x: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        """`forward` on packed rows, the training fast path: the same Eqs. 1-5 computed on the valid rows only
        (`cezsar.packed_vem.forward_packed`; equal to `forward` in tests/test_model.py)."""
        return packed_vem.forward_packed(self, x, mask, index)


class SentenceEmbedder(nn.Module):
    """SEM, paper Eq. 6: FC+ReLU from the SBERT vector to d_emb.

    `released_sem=True` uses the released code's Dropout + Linear + LayerNorm instead; with `released_head`
    that LayerNorm runs in training only, as in the released code.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.train_only_norm = cfg.released_sem and cfg.released_head
        if cfg.released_sem:
            self.net = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.text_dim, cfg.emb_dim), nn.LayerNorm(cfg.emb_dim))
        else:
            self.net = nn.Sequential(nn.Linear(cfg.text_dim, cfg.emb_dim), nn.ReLU())

    def forward(self, s: Tensor) -> Tensor:
        if self.train_only_norm and not self.training:
            return self.net[:-1](s)  # (B, d_emb) the released evaluation skips the LayerNorm
        return self.net(s)  # (B, d_emb)


class JointEmbedder(nn.Module):
    """VEM + SEM (paper §3.2); trained with the triplet loss of Eq. 7 (`cezsar.train`)."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.vem = VisualEmbedder(self.cfg)
        self.sem = SentenceEmbedder(self.cfg)
        if self.cfg.xavier_init:  # the released init; otherwise torch's defaults, drawn in the same order as ever
            for name, p in self.named_parameters():
                if p.dim() > 1:
                    nn.init.xavier_normal_(p)  # the released model.py: xavier_normal_ on every p.dim() > 1

    def encode_video(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Eqs. 1-5. x: (B, T, feat_dim) float; mask: (B, T) bool, True = valid. Returns (B, d_emb)."""
        if x.dim() != 3 or x.shape[-1] != self.cfg.feat_dim:
            raise ValueError(f"encode_video expects (B, T, {self.cfg.feat_dim}) features, got {tuple(x.shape)}")
        if mask is not None and mask.shape != x.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match features {tuple(x.shape[:2])}")
        return self.vem(x, mask)

    def encode_video_packed(self, x: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        """Eqs. 1-5 on packed input (`VisualEmbedder.forward_packed`): x (N, feat_dim) = the valid rows of a
        (U, T) batch, mask (U, T) bool, index (N,) optional flat positions. Returns (U, d_emb)."""
        if x.dim() != 2 or x.shape[-1] != self.cfg.feat_dim:
            raise ValueError(f"encode_video_packed expects (N, {self.cfg.feat_dim}) rows, got {tuple(x.shape)}")
        if mask.dim() != 2 or (index is not None and index.shape != x.shape[:1]):
            raise ValueError(f"mask {tuple(mask.shape)} / index must be (U, T) / ({x.shape[0]},)")
        return self.vem.forward_packed(x, mask, index)

    def encode_text(self, s: Tensor) -> Tensor:
        """Eq. 6. s: (B, text_dim) SBERT vectors. Returns (B, d_emb)."""
        if s.dim() != 2 or s.shape[-1] != self.cfg.text_dim:
            raise ValueError(f"encode_text expects (B, {self.cfg.text_dim}) sentence vectors, got {tuple(s.shape)}")
        return self.sem(s)
