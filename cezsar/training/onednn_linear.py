"""Affine layers (y = x W^T + b, the FC layers of Eqs. 1 and 3-6) in fp32 through oneDNN on a CPU
(docs/decisions.md, 'CPU matrix products').

torch's CPU `F.linear` and `bmm` call MKL, which on a non-Intel CPU keeps to its AVX2 kernels; oneDNN, which torch
also carries, runs its AVX-512 kernels wherever the CPU has them: about twice MKL's fp32 rate on the AMD EPYC that
made the committed numbers (benchmarks/RESULTS.md, 'fp32 products through oneDNN'). On a CPU without AVX-512,
oneDNN's AVX2 kernels are slower than MKL's and need transposed copies for the backward, so there training keeps
torch's product (`cezsar.base.devices.cpu_products`). Same arithmetic (fp32 inputs, products and sums), another
summation order, so the bits differ from MKL's as they differ between two BLAS builds; one thread gives the same
bits run after run, and the choice follows the CPU's vector capability, which already decides the bits
(`environment.kernel_family`). Everywhere else (autograd off, CUDA, bf16, a torch without oneDNN, a traced step)
these are `F.linear` and `baddbmm`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cezsar.base.devices import cpu_products, onednn_inner_product


# oneDNN's inner product on dense tensors (None: this torch has no oneDNN, and `cpu_products` is "torch")
_pointwise = onednn_inner_product()
_use_onednn = cpu_products() == "onednn"  # this CPU's choice, made once (`devices.cpu_products`)


def onednn_applies(x: Tensor) -> bool:
    """Whether `linear` takes the oneDNN path for x (..., in): a training product (autograd on) in fp32 on a CPU,
    oneDNN present, enabled and chosen for this CPU (`devices.cpu_products`), not traced. Validation and zero-shot
    evaluation (autograd off) keep torch's product, so a checkpoint embeds clips and sentences exactly as a plain
    `nn.Linear` model would."""
    if torch.compiler.is_compiling():  # first: a traced step (tests/test_static_step.py) sees no oneDNN query
        return False
    return (torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32 and x.numel() > 0
            and _use_onednn and torch.backends.mkldnn.enabled)


def inner_product(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a b^T (+ bias) as one oneDNN inner product: a (M, K), b (N, K) -> (M, N), dense in and out."""
    return _pointwise(a.contiguous(), b.contiguous(), bias, "none", [], "")


def _input_grad(g: Tensor, weight: Tensor) -> Tensor:
    """dL/dx = g W: g (N, out), W (out, in) -> (N, in)."""
    return inner_product(g, weight.t())


def _weight_grad(g: Tensor, x: Tensor) -> Tensor:
    """dL/dW = g^T x as an inner product of the transposed operands (oneDNN's own backward-weights primitive is
    slower than MKL's product at a grouped batch's ~120 rows): g (N, out), x (N, in) -> (out, in)."""
    return inner_product(g.t(), x.t())


class _OneDnnLinear(torch.autograd.Function):
    """y = x W^T + b and its backward as three oneDNN inner products: x (N, in), W (out, in), b (out,) or None."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return inner_product(x, weight, bias)  # (N, out)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, weight = ctx.saved_tensors
        gx = _input_grad(g, weight) if ctx.needs_input_grad[0] else None  # (N, in)
        gw = _weight_grad(g, x) if ctx.needs_input_grad[1] else None  # (out, in)
        gb = g.sum(dim=0) if ctx.has_bias and ctx.needs_input_grad[2] else None  # (out,)
        return gx, gw, gb


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


class _OneDnnStackedLinear(torch.autograd.Function):
    """y_k = x_k W_k^T + b_k for K models, each its own oneDNN inner product: x (K, N, in), W (K, out, in),
    b (K, out) -> (K, N, out). One autograd node for all K: indexing the stacked weights per model instead would
    make autograd build a zero (K, out, in) gradient for every model and sum them, which costs more than the
    products."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.stack([inner_product(x[k], weight[k], bias[k]) for k in range(x.shape[0])])  # (K, N, out)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, weight = ctx.saved_tensors
        k = range(x.shape[0])
        gx = torch.stack([_input_grad(g[i], weight[i]) for i in k]) if ctx.needs_input_grad[0] else None
        gw = torch.stack([_weight_grad(g[i], x[i]) for i in k])  # (K, out, in)
        return gx, gw, g.sum(dim=1)  # (K, N, in), (K, out, in), (K, out)


def stacked_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """K models' affine layers through oneDNN (`onednn_applies`): x (K, N, in), weight (K, out, in), bias (K, out)
    -> (K, N, out). `cezsar.training.stacked_model` uses it where it applies, batched products elsewhere."""
    return _OneDnnStackedLinear.apply(x, weight, bias)
