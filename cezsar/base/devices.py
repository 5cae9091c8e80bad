"""Which torch device a stage runs on: one resolver for extraction, objects, training and classification; and which
matrix product fp32 CPU training uses (docs/decisions.md, 'CPU matrix products')."""
from __future__ import annotations

import os

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" = CUDA when present, else CPU; an explicit "cuda" without a CUDA device is an error saying so.

    Under `torchrun` (WORLD_SIZE > 1) "auto" and a bare "cuda" mean this process's own GPU,
    `cuda:LOCAL_RANK` (docs/decisions.md §13); an explicit "cuda:k" is kept as given.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA device")
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
    return torch.device(name)


PRODUCTS_ENV = "CEZSAR_CPU_PRODUCTS"  # onednn | torch | auto (unset): the product fp32 CPU training uses


def choose_cpu_products(setting: str, capability: str) -> str:
    """"onednn" or "torch" for a `PRODUCTS_ENV` setting and torch's CPU capability: "auto" takes oneDNN where torch
    runs AVX-512 kernels (about twice MKL's fp32 rate there) and torch's own product (MKL) below, where MKL is the
    faster (benchmarks/RESULTS.md, "An AVX2-only machine")."""
    setting = setting.strip().lower() or "auto"
    if setting not in ("auto", "onednn", "torch"):
        raise ValueError(f"{PRODUCTS_ENV}={setting!r}: expected onednn, torch or auto")
    if setting == "auto":
        return "onednn" if capability.startswith("AVX512") else "torch"
    return setting


def onednn_inner_product():
    """oneDNN's inner product on dense tensors (`torch.ops.mkldnn._linear_pointwise`), or None where this torch has
    none."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def cpu_products() -> str:
    """The product fp32 CPU training uses in this process ("onednn" or "torch"; results.json's environment):
    `choose_cpu_products` of this machine, "torch" where this torch has no oneDNN inner product."""
    if onednn_inner_product() is None:
        return "torch"
    return choose_cpu_products(os.environ.get(PRODUCTS_ENV, ""), torch.backends.cpu.get_cpu_capability())
