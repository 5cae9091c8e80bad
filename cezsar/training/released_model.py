"""The released code's variants of the joint embedder (docs/fidelity.md, rows "input length" to "width, dropout,
init"), each turned on by one `ModelConfig` switch, and the factory that picks the paper's modules
(`cezsar.training.model`) or these from a config.

- `positional=False`: no positional code (the released VEM has none).
- `released_padding`: always `max_len` (16) rows, zero padded, the padding inside attention and the mean.
- `released_attention`: the encoder layer ran with `batch_first` unset, so in training each time step attends
  across the clips of the batch (a clip's embedding depends on the other clips of its batch).
- `released_head`: ReLU -> FC -> Dropout -> (PE) -> transformer -> Dropout -> ReLU -> mean -> FC, no output ReLU,
  an affine LayerNorm on the output in training only (the released VisualEmbedding and JointEmbeddingModel).
- `released_sem`: Dropout + Linear + LayerNorm instead of Eq. 6 (with `released_head`: LayerNorm in training only).
- `xavier_init`: Xavier-normal weights on every parameter with more than one dimension.

The variants keep the paper modules' parameter names and their initialisation order, so a checkpoint of any
variant loads as before (tests/test_released_transcriptions.py restates each released computation).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cezsar.config import ModelConfig
from cezsar.training.model import SentenceEmbedder, VisualEmbedder
from cezsar.training.onednn_linear import Linear


class ReleasedVisualEmbedder(VisualEmbedder):
    """The paper's VEM with the released switches `positional`, `released_padding`, `released_attention` and
    `released_head` of `cfg` applied, each to the one step it changes."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        if not cfg.positional:
            self.pe = None  # a fixed table without weights: dropping it changes no parameter
        # attention across the batch, or padding counted as rows: a clip's embedding needs the padded batch
        self.valid_rows_only = not (cfg.released_padding or cfg.released_attention)
        # the released LayerNorm on the output, with its affine weight and bias (torch's default), applied in
        # training only; created after every paper layer, so their initialisation order is untouched
        self.out_norm = nn.LayerNorm(cfg.emb_dim) if cfg.released_head else None

    def reduce(self, v_c: Tensor) -> Tensor:
        """Eq. 1; released head: Dropout(Linear(ReLU(x))), the ReLU before the FC, none after it, and the
        released dropout between the FC and the transformer (docs/fidelity.md "VEM head")."""
        if not self.cfg.released_head:
            return super().reduce(v_c)
        return F.dropout(self.proj(torch.relu(v_c)), self.cfg.dropout, self.training)

    def encode_positions(self, v_r: Tensor) -> Tensor:
        """v_r^PE, or v_r itself without the positional code (`positional=False`, docs/fidelity.md)."""
        return v_r if self.pe is None else super().encode_positions(v_r)

    def attend(self, h: Tensor, pad: Tensor) -> Tensor:
        """Eqs. 2-4; released attention: the layer ran with batch_first unset on (B, T, d) input, so in training
        each time step attends across the clips of the batch; at test it encoded one clip at a time as
        (1, T, d), i.e. T sequences of length 1, so each step attends only to itself. No key padding mask."""
        if not self.cfg.released_attention:
            return super().attend(h, pad)
        b, t, d = h.shape
        for layer in self.layers:
            if self.training:
                h = layer(h.transpose(0, 1)).transpose(0, 1)  # (T, B, d): attention over B  -> (B, T, d)
            else:
                h = layer(h.reshape(b * t, 1, d)).reshape(b, t, d)  # (B T, 1, d): each step alone
        return h

    def step_features(self, h: Tensor) -> Tensor:
        """Released head: ReLU(Dropout(h)), its second dropout and the ReLU before the last FC. The released code
        applied that FC per step and then took the mean; the FC is affine, so the mean of FC(z_t) is
        FC(mean z_t)."""
        if not self.cfg.released_head:
            return h
        return torch.relu(F.dropout(h, self.cfg.dropout, self.training))

    def project(self, pooled: Tensor) -> Tensor:
        """Eq. 5; released head: Linear(pooled) of the per-step ReLUs, no output ReLU, LayerNorm in training
        only."""
        if self.out_norm is None:
            return super().project(pooled)
        out = self.out(pooled)  # (B, d_emb)
        return self.out_norm(out) if self.training else out

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Eqs. 1-5 with the switches; released padding: exactly max_len rows, zero padded, every row valid
        (padding included in attention and in the mean)."""
        if self.cfg.released_padding:
            x, mask = released_pad(x, mask, self.cfg.max_len)  # (B, max_len, feat_dim), all rows valid
        return super().forward(x, mask)


def released_pad(x: Tensor, mask: Tensor | None, length: int) -> tuple[Tensor, Tensor]:
    """The released fixed input: x (B, T, feat_dim) with its masked rows zeroed, cut or zero padded to exactly
    `length` rows, and an all-True (B, length) mask (docs/fidelity.md "input length")."""
    b, t, f = x.shape
    if mask is not None:
        x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
    x = x[:, :length]  # (B, min(T, length), feat_dim)
    if t < length:
        x = torch.cat([x, x.new_zeros(b, length - t, f)], dim=1)  # (B, length, feat_dim)
    return x, torch.ones(b, length, dtype=torch.bool, device=x.device)


class ReleasedSentenceEmbedder(nn.Module):
    """The released SEM instead of Eq. 6: Dropout + Linear + LayerNorm (affine). With `released_head` that
    LayerNorm runs in training only, as in the released code. Same parameter names as the released layers'
    positions (`net.1` Linear, `net.2` LayerNorm)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.train_only_norm = cfg.released_head
        self.net = nn.Sequential(nn.Dropout(cfg.dropout), Linear(cfg.text_dim, cfg.emb_dim), nn.LayerNorm(cfg.emb_dim))

    def forward(self, s: Tensor) -> Tensor:
        """s (B, text_dim) -> (B, d_emb)."""
        if self.train_only_norm and not self.training:
            return self.net[:-1](s)  # (B, d_emb) the released evaluation skips the LayerNorm
        return self.net(s)  # (B, d_emb)


def embedders(cfg: ModelConfig) -> tuple[VisualEmbedder, nn.Module]:
    """The VEM and SEM that `cfg` names: the paper's (`cezsar.training.model`) where no released switch is on, else the
    released variants above; with `xavier_init`, the released initialisation on top of torch's (drawn first, in
    the same order as ever)."""
    released_vem = not cfg.positional or cfg.released_padding or cfg.released_attention or cfg.released_head
    vem = ReleasedVisualEmbedder(cfg) if released_vem else VisualEmbedder(cfg)
    sem = ReleasedSentenceEmbedder(cfg) if cfg.released_sem else SentenceEmbedder(cfg)
    if cfg.xavier_init:
        for p in [*vem.parameters(), *sem.parameters()]:
            if p.dim() > 1:
                nn.init.xavier_normal_(p)  # the released model.py: xavier_normal_ on every p.dim() > 1
    return vem, sem
