"""Affine layers (y = x W^T + b, the FC layers of Eqs. 1 and 3-6) in fp32 through oneDNN on a CPU
(docs/decisions.md, 'CPU matrix products').

torch's CPU `F.linear` and `bmm` call MKL, which on a non-Intel CPU keeps to its AVX2 kernels; oneDNN, which torch
also carries, runs its AVX-512 kernels wherever the CPU has them: about twice MKL's fp32 rate on the AMD EPYC that
made the committed numbers (benchmarks/RESULTS.md, 'fp32 products through oneDNN'). Same arithmetic (fp32 inputs,
products and sums), another summation order, so the bits differ from MKL's as they differ between two BLAS builds;
one thread gives the same bits run after run. Everywhere else (CUDA, bf16, a torch without oneDNN, a traced
step) these are `F.linear` and `baddbmm`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

_ops = torch.ops.aten


# below this many rows MKL's product is as fast (benchmarks/RESULTS.md): a grouped batch (~120 rows per step) keeps MKL
MIN_ROWS = 512
ROW_BUCKET = 64  # rows are padded to a multiple of this, so that few distinct shapes reach oneDNN


def onednn_applies(x: Tensor) -> bool:
    """Whether `linear` takes the oneDNN path for x (..., in): a training product (autograd on) in fp32 on a CPU, at
    least `MIN_ROWS` rows, oneDNN built and enabled, not traced. Validation and zero-shot evaluation (autograd off)
    keep torch's product, so a checkpoint embeds clips and sentences exactly as a plain `nn.Linear` model would."""
    return (torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and x.numel() >= MIN_ROWS * x.shape[-1]
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.compiler.is_compiling())


def _to_onednn(t: Tensor) -> Tensor:
    """A dense fp32 tensor as a oneDNN (mkldnn-layout) tensor: one copy."""
    return t.contiguous().to_mkldnn()


class _OneDnnLinear(torch.autograd.Function):
    """y = x W^T + b, forward and backward as oneDNN inner products: x (N, in), W (out, in), b (out,) or None.

    The rows are zero padded to a multiple of `ROW_BUCKET` inside: oneDNN builds a kernel per shape, and a batch's
    row count changes from step to step. Zero rows add nothing to the weight's gradient and are cut from y."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        n = x.shape[0]
        x_dnn = _padded(x).to_mkldnn()  # (N', in)
        y = _ops.mkldnn_linear(x_dnn, _to_onednn(weight), None if bias is None else _to_onednn(bias))  # (N', out)
        ctx.x_dnn, ctx.n_in = x_dnn, x.shape[1]  # the backward's weight product reads x in oneDNN form again
        ctx.has_bias = bias is not None
        ctx.save_for_backward(weight)
        return y.to_dense()[:n]  # (N, out)

    @staticmethod
    def backward(ctx, g: Tensor):
        (weight,) = ctx.saved_tensors
        n = g.shape[0]
        g_dnn = _padded(g).to_mkldnn()  # (N', out)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _ops.mkldnn_linear_backward_input([g_dnn.shape[0], ctx.n_in], g_dnn, weight.contiguous())
            gx = (gx.to_dense() if gx.is_mkldnn else gx)[:n]  # (N, in)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gw, gb = _ops.mkldnn_linear_backward_weights(g_dnn, ctx.x_dnn, weight.contiguous(), ctx.has_bias)
            gb = gb if ctx.has_bias else None  # (out, in), (out,)
        del ctx.x_dnn
        return gx, gw, gb


def _padded(x: Tensor) -> Tensor:
    """x (N, d) with zero rows up to the next multiple of `ROW_BUCKET`: (N', d), contiguous."""
    n = x.shape[0]
    n_pad = -(-n // ROW_BUCKET) * ROW_BUCKET
    if n_pad == n:
        return x.contiguous()
    out = x.new_zeros(n_pad, x.shape[1])  # (N', d)
    out[:n] = x
    return out


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear(x, weight, bias)`: x (..., in), weight (out, in), bias (out,) -> (..., out); fp32 CPU products
    through oneDNN (`onednn_applies`)."""
    if not onednn_applies(x) or weight.dtype != torch.float32:
        return F.linear(x, weight, bias)
    y = _OneDnnLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)  # (N, out)
    return y.view(*x.shape[:-1], weight.shape[0])  # (..., out)


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, names and initialisation) whose product is `linear`'s."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
