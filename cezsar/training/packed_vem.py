"""The VEM on packed ("varlen") rows: the training fast path of Eqs. 1-5 (paper §3.2; docs/decisions.md §11).

A training batch holds windows of 1-15 seconds padded to the longest; about a quarter of its rows are padding,
computed only to be thrown away. Here everything that acts on one time step at a time runs on the valid rows
alone, and only the attention's dot products see the (windows, T) layout. Same parameters, same function as
`cezsar.training.model.VisualEmbedder.forward` up to float rounding (tests/test_model.py, tests/test_cuda.py); on a CPU
the dropout masks come from a cheaper generator (`dropout_cpu`), so training draws differ from `forward`'s.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cezsar.training.model import VisualEmbedder
from cezsar.training.onednn_linear import linear


def forward_packed(vem: VisualEmbedder, x: Tensor, mask: Tensor, index: Tensor | None = None,
                   gather: Tensor | None = None) -> Tensor:
    """Eqs. 1-5 of `vem` on packed input: x (N, feat_dim), the valid rows of a padded (U, T) batch in
    row-major order, i.e. `padded[mask]`; mask (U, T) bool, True = valid row; index (N,) int64, the flat
    position u * T + j of each row of x (`mask.reshape(-1).nonzero()`, computed when not given).
    Returns (U, d_emb). The training fast path uses it (the eager step's `cezsar.training.eager_step.batch_loss`);
    zero-shot evaluation and classification keep `forward`.

    `gather` (N,) int64, for a fixed number of rows N (`cezsar.training.static_step`): rows of x that are padding carry
    index U * T, a spare slot past the grid that is written and never read, and gather 0 (any existing slot:
    what they read back is never used); valid rows have gather == index.

    The projection and ReLU of Eq. 1, the positional code, the heads' q/k/v projections and W^0 of Eq. 3, the
    residuals and LayerNorms, the feed-forward network of Eq. 4, their dropouts, and the mean and projection of
    Eq. 5 run on the N valid rows; only the scaled dot-product attention (Eq. 2) needs the (U, T) layout, and it
    gets the key padding mask, as `forward` does.
    """
    if not vem.valid_rows_only:
        raise NotImplementedError("this VEM needs the padded layout (released_padding / released_attention): "
                                  "use forward")
    u, t = mask.shape
    if index is None:
        index = mask.reshape(-1).nonzero().squeeze(1)  # (N,)
    h = vem.reduce(x)  # (N, d_model)  Eq. 1
    if vem.pe is not None:  # None: a variant without positional codes (`cezsar.training.released_model`)
        # position j of a row = its column in the padded layout, as `forward` adds pe[:T]
        h = h + vem.pe.at(index % t, t).to(h.dtype)  # (N, d_model)
    keys = mask[:, None, None, :]  # (U, 1, 1, T) True = a valid key, for every head and query
    spare = 0 if gather is None else 1  # the padding rows' slot after the (U, T) grid
    for layer in vem.layers:
        h = _encoder_layer_packed(layer, h, keys, index, gather)  # (N, d_model)  Eqs. 2-4
    h = vem.step_features(h)  # (N, d_model) v_r^FFN (the released head: its dropout and ReLU before the mean)
    d = h.shape[-1]
    # the mean of Eq. 5 over valid steps: scatter into a zero (U, T) grid and sum, as `forward` sums its
    # zeroed padding (index_copy/sum, not index_add: no atomics, so the sum is deterministic on a GPU too)
    grid = h.new_zeros(u * t + spare, d).index_copy_(0, index, h)[:u * t].view(u, t, d)  # (U, T, d_model)
    n = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)  # (U, 1)
    pooled = grid.sum(dim=1) / n  # (U, d_model)
    return vem.project(pooled)  # (U, d_emb)  Eq. 5


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
    if x.device.type != "cpu" or p >= 1.0 or torch.compiler.is_compiling():  # a traced step: torch's own op
        return F.dropout(x, p, training=True)
    return x * _cpu_dropout_noise(x, p)


def _add_dropout(h: Tensor, x: Tensor, p: float, training: bool) -> Tensor:
    """h + dropout(x), the residual of a TransformerEncoderLayer; on CPU one addcmul instead of a product and a
    sum over (N, d_model)."""
    if not training or p == 0.0 or x.device.type != "cpu" or p >= 1.0 or torch.compiler.is_compiling():
        return h + dropout_cpu(x, p, training)
    return torch.addcmul(h, x, _cpu_dropout_noise(x, p))


def _encoder_layer_packed(layer: nn.TransformerEncoderLayer, h: Tensor, keys: Tensor, index: Tensor,
                          gather: Tensor | None = None) -> Tensor:
    """One `nn.TransformerEncoderLayer` (Eqs. 2-4) on packed rows h (N, d_model), with that layer's own
    parameters and settings (norm_first, activation, dropout probabilities); keys: (U, 1, 1, T) bool;
    gather as in `forward_packed`."""
    p1, p2, train = layer.dropout1.p, layer.dropout2.p, layer.training
    if layer.norm_first:
        h = _add_dropout(h, _self_attention_packed(layer, layer.norm1(h), keys, index, gather), p1, train)
        return _add_dropout(h, _feed_forward_packed(layer, layer.norm2(h)), p2, train)
    a = _self_attention_packed(layer, h, keys, index, gather)  # (N, d_model)  Eqs. 2-3
    h = layer.norm1(_add_dropout(h, a, p1, train))  # (N, d_model)
    return layer.norm2(_add_dropout(h, _feed_forward_packed(layer, h), p2, train))  # (N, d_model)  Eq. 4


def _self_attention_packed(layer: nn.TransformerEncoderLayer, h: Tensor, keys: Tensor, index: Tensor,
                           gather: Tensor | None = None) -> Tensor:
    """Multi-head self-attention (Eqs. 2-3) as `nn.MultiheadAttention` computes it, projections on packed rows
    (the caller applies dropout1)."""
    attn = layer.self_attn
    if attn.in_proj_weight is None or attn.bias_k is not None or attn.add_zero_attn:  # separate q/k/v weights
        raise NotImplementedError("packed attention supports the packed q/k/v projection only")
    u, _, _, t = keys.shape
    d, heads = attn.embed_dim, attn.num_heads
    qkv = linear(h, attn.in_proj_weight, attn.in_proj_bias)  # (N, 3 d_model)
    # only the dot products need the padded layout; padded queries give rows that are dropped below
    spare = 0 if gather is None else 1  # padding rows of a fixed-size batch land in one slot past the grid
    grid = qkv.new_zeros(u * t + spare, 3 * d).index_copy_(0, index, qkv)  # (U T [+ 1], 3 d_model) no clone
    q, k, v = grid[:u * t].view(u, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (U, heads, T, dh)
    p = attn.dropout if layer.training else 0.0  # on the attention weights, as MultiheadAttention does
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p)  # (U, heads, T, d_head)  Eq. 2
    o = o.transpose(1, 2).reshape(u * t, d)[index if gather is None else gather]  # (N, d_model) valid rows only
    return linear(o, attn.out_proj.weight, attn.out_proj.bias)  # (N, d_model)  W^0 of Eq. 3


def _feed_forward_packed(layer: nn.TransformerEncoderLayer, h: Tensor) -> Tensor:
    """The position-wise feed-forward network of Eq. 4 with its inner dropout (the caller applies dropout2)."""
    f = layer.activation(linear(h, layer.linear1.weight, layer.linear1.bias))  # (N, dim_feedforward)
    f = dropout_cpu(f, layer.dropout.p, layer.training)
    return linear(f, layer.linear2.weight, layer.linear2.bias)  # (N, d_model)
