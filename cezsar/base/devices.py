"""Which torch device a stage runs on: one resolver for extraction, objects, training and classification."""
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
