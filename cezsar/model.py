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
        self.cfg = cfg
        # released head only: a parameter-free LayerNorm on the output in training (no new weights, and the
        # default model's parameters and their initialisation order are untouched)
        self.out_norm = nn.LayerNorm(cfg.emb_dim, elementwise_affine=False) if cfg.released_head else None

    def _first(self, x: Tensor) -> Tensor:
        """Eq. 1; released head: Linear(ReLU(x)), the ReLU before the FC and none after it."""
        if self.cfg.released_head:
            return self.proj(torch.relu(x))
        return torch.relu(self.proj(x))

    def _last(self, pooled: Tensor) -> Tensor:
        """Eq. 5; released head: Linear(ReLU(pooled)), no output ReLU, LayerNorm in training only."""
        if not self.cfg.released_head:
            return torch.relu(self.out(pooled))
        out = self.out(torch.relu(pooled))
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
        h = torch.where(valid, h, torch.zeros((), dtype=h.dtype, device=h.device))
        n = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)  # (B, 1)
        pooled = h.sum(dim=1) / n  # (B, d_model) masked mean over time
        return self._last(pooled)  # (B, d_emb)  Eq. 5

    def forward_packed(self, x: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        """`forward` on packed ("varlen") input: the same Eqs. 1-5 with the same parameters, computed on the
        valid rows only. The training fast path uses it (`cezsar.train.batch_loss`); zero-shot evaluation and
        classification keep `forward`.

        x: (N, feat_dim), the valid rows of a padded (U, T) batch in row-major order, i.e. `padded[mask]`;
        mask: (U, T) bool, True = valid row; index: (N,) int64, the flat position u * T + j of each row of x
        (`mask.reshape(-1).nonzero()`, computed when not given). Returns (U, d_emb).

        Everything that acts on one time step at a time — the projection and ReLU of Eq. 1, the positional
        code, the heads' q/k/v projections and W^0 of Eq. 3, the residuals and LayerNorms, the feed-forward
        network of Eq. 4, their dropouts, and the mean and projection of Eq. 5 — runs on the N valid rows:
        padding is ~25 % of a training batch's rows, and those rows were computed only to be thrown away.
        Only the scaled dot-product attention itself (Eq. 2) needs the (U, T) layout; it gets the key padding
        mask, as `forward` does. Equal to `forward` up to float rounding (tests/test_model.py) with dropout off;
        in training the CPU dropout masks come from `dropout_cpu`, so they differ from `forward`'s draws.
        """
        if self.cfg.released_padding or self.cfg.released_attention:
            raise NotImplementedError("released_padding / released_attention need the padded layout: use forward")
        u, t = mask.shape
        if index is None:
            index = mask.reshape(-1).nonzero().squeeze(1)  # (N,)
        h = self._first(x)  # (N, d_model)  Eq. 1
        if self.pe is not None:
            # position j of a row = its column in the padded layout, as `forward` adds pe[:T]
            h = h + self.pe.at(index % t, t).to(h.dtype)  # (N, d_model)
        keys = mask[:, None, None, :]  # (U, 1, 1, T) True = a valid key, for every head and query
        for layer in self.layers:
            h = _encoder_layer_packed(layer, h, keys, index)  # (N, d_model)  Eqs. 2-4
        d = h.shape[-1]
        # the mean of Eq. 5 over valid steps: scatter into a zero (U, T) grid and sum, as `forward` sums its
        # zeroed padding (index_copy/sum, not index_add: no atomics, so the sum is deterministic on a GPU too)
        grid = h.new_zeros(u * t, d).index_copy_(0, index, h).view(u, t, d)  # (U, T, d_model) in place: no clone
        n = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)  # (U, 1)
        pooled = grid.sum(dim=1) / n  # (U, d_model)
        return self._last(pooled)  # (U, d_emb)  Eq. 5


def _cpu_dropout_noise(x: Tensor, p: float) -> Tensor:
    """F.dropout's noise for x on CPU: 0 with probability p, else 1 / (1 - p) (a float32 scalar, as F.dropout
    divides). torch's CPU `bernoulli_` draws one element at a time (~10 ns each on the project's machine,
    ~9 % of a training step); here each 64-bit word drawn from the default generator (so the mask follows
    `torch.manual_seed` and the checkpointed RNG state) gives two 32-bit uniforms, and an element is dropped
    when its uniform is below the p-quantile: probability p up to 2^-32."""
    n = x.numel()
    words = torch.empty((n + 1) // 2, dtype=torch.int64).random_(-(2 ** 63), None)  # (ceil(n/2),) full range
    uniform = words.view(torch.int32)[:n].view(x.shape)  # (*x.shape) int32, uniform on [-2^31, 2^31)
    threshold = -(2 ** 31) + round(p * 2 ** 32)  # P(uniform < threshold) = p
    scale = torch.ones((), dtype=x.dtype).div_(1.0 - p)  # () the value F.dropout's noise.div_(1 - p) holds
    return (uniform >= threshold) * scale  # (*x.shape) bool x scale: one pass, no float mask to divide


def dropout_cpu(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout, as `F.dropout`, with a cheaper mask on CPU (`_cpu_dropout_noise`); on other devices
    F.dropout itself (its fused kernel is already cheap)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    return x * _cpu_dropout_noise(x, p)


def _add_dropout(h: Tensor, x: Tensor, p: float, training: bool) -> Tensor:
    """h + dropout(x), the residual of a TransformerEncoderLayer; on CPU one addcmul instead of a product and a
    sum over (N, d_model)."""
    if not training or p == 0.0 or x.device.type != "cpu" or p >= 1.0:
        return h + dropout_cpu(x, p, training)
    return torch.addcmul(h, x, _cpu_dropout_noise(x, p))


def _encoder_layer_packed(layer: nn.TransformerEncoderLayer, h: Tensor, keys: Tensor, index: Tensor) -> Tensor:
    """One `nn.TransformerEncoderLayer` (Eqs. 2-4) on packed rows h (N, d_model), with that layer's own
    parameters and settings (norm_first, activation, dropout probabilities); keys: (U, 1, 1, T) bool."""
    p1, p2, train = layer.dropout1.p, layer.dropout2.p, layer.training
    if layer.norm_first:
        h = _add_dropout(h, _self_attention_packed(layer, layer.norm1(h), keys, index), p1, train)
        return _add_dropout(h, _feed_forward_packed(layer, layer.norm2(h)), p2, train)
    a = _self_attention_packed(layer, h, keys, index)  # (N, d_model)  Eqs. 2-3
    h = layer.norm1(_add_dropout(h, a, p1, train))  # (N, d_model)
    return layer.norm2(_add_dropout(h, _feed_forward_packed(layer, h), p2, train))  # (N, d_model)  Eq. 4


def _self_attention_packed(layer: nn.TransformerEncoderLayer, h: Tensor, keys: Tensor, index: Tensor) -> Tensor:
    """Multi-head self-attention (Eqs. 2-3) as `nn.MultiheadAttention` computes it, projections on packed rows
    (the caller applies dropout1)."""
    attn = layer.self_attn
    if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
        raise NotImplementedError("packed attention supports the packed q/k/v projection only")
    u, _, _, t = keys.shape
    d, heads = attn.embed_dim, attn.num_heads
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)  # (N, 3 d_model)
    # only the dot products need the padded layout; padded queries give rows that are dropped below
    grid = qkv.new_zeros(u * t, 3 * d).index_copy_(0, index, qkv)  # (U T, 3 d_model) in place: no clone
    q, k, v = grid.view(u, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (U, heads, T, d_head) each
    p = attn.dropout if layer.training else 0.0  # on the attention weights, as MultiheadAttention does
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p)  # (U, heads, T, d_head)  Eq. 2
    o = o.transpose(1, 2).reshape(u * t, d)[index]  # (N, d_model) valid rows only
    return attn.out_proj(o)  # (N, d_model)  W^0 of Eq. 3


def _feed_forward_packed(layer: nn.TransformerEncoderLayer, h: Tensor) -> Tensor:
    """The position-wise feed-forward network of Eq. 4 with its inner dropout (the caller applies dropout2)."""
    f = layer.activation(layer.linear1(h))  # (N, dim_feedforward)
    return layer.linear2(dropout_cpu(f, layer.dropout.p, layer.training))  # (N, d_model)


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
                    nn.init.xavier_uniform_(p)

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
