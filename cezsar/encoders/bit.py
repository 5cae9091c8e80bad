"""BiT-M-R152x2: the paper's frame CNN as released (docs/decisions.md §5, docs/fidelity.md).

A pre-activation ResNet (v2) whose convolutions are weight-standardised and whose norms are
GroupNorm(32) (Kolesnikov et al., "Big Transfer", 2020). R152x2: bottleneck units [3, 8, 36, 3],
width factor 2, so the pooled pre-logits are 2048 * 2 = 4096-d (the released CEZSAR features) and the
ImageNet-21k head has 21,843 outputs. `load_bit_npz` reads Google's official `BiT-M-R152x2.npz`, whose
keys follow the TensorFlow variable names (`resnet/block1/unit01/a/standardized_conv2d/kernel`, ...)
with HWIO kernels.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

R152_UNITS = (3, 8, 36, 3)  # bottleneck units per stage in ResNet-152
_CONV = "standardized_conv2d"


class StdConv2d(nn.Conv2d):
    """Conv2d with weight standardisation: each output filter is shifted/scaled to mean 0, var 1.

    A frozen network standardises the same weights on every forward; `fold_standardisation` does it once and
    stores the result (`folded` True), after which the forward is a plain convolution with identical output.
    """

    folded: bool = False

    def standardised_weight(self) -> torch.Tensor:
        w = self.weight
        var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, unbiased=False)  # per filter
        return (w - mean) / torch.sqrt(var + 1e-10)  # BiT's epsilon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight if self.folded else self.standardised_weight()
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def fold_standardisation(model: nn.Module) -> nn.Module:
    """Standardise every StdConv2d's weights once, in place, for a frozen model (extraction, objects): the
    weights become the standardised ones and stop requiring gradients, and the forward no longer recomputes
    them (the same values, so the same outputs). Idempotent; returns `model`."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, StdConv2d) and not m.folded:
                m.weight.copy_(m.standardised_weight())
                m.weight.requires_grad_(False)
                m.folded = True
    return model


class PreActUnit(nn.Module):
    """Pre-activation bottleneck: GN-ReLU-conv1x1, GN-ReLU-conv3x3 (carries the stride), GN-ReLU-conv1x1."""

    def __init__(self, cin: int, cout: int, cmid: int, stride: int = 1) -> None:
        super().__init__()
        self.gn1 = nn.GroupNorm(32, cin)
        self.conv1 = StdConv2d(cin, cmid, 1, bias=False)
        self.gn2 = nn.GroupNorm(32, cmid)
        self.conv2 = StdConv2d(cmid, cmid, 3, stride=stride, padding=1, bias=False)
        self.gn3 = nn.GroupNorm(32, cmid)
        self.conv3 = StdConv2d(cmid, cout, 1, bias=False)
        # the projection also sees the pre-activated input, as in the v2 paper
        self.proj = StdConv2d(cin, cout, 1, stride=stride, bias=False) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.gn1(x))
        shortcut = self.proj(out) if self.proj is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.gn2(out)))
        out = self.conv3(F.relu(self.gn3(out)))
        return out + shortcut


class ResNetV2(nn.Module):
    """BiT ResNet-v2; `features(x)` gives the pooled pre-logits (B, 2048*wf), `head(f)` the logits."""

    def __init__(self, units: tuple[int, ...] = R152_UNITS, width: int = 2, num_classes: int = 21843) -> None:
        super().__init__()
        wf = width
        self.width, self.units = width, tuple(units)
        self.root = StdConv2d(3, 64 * wf, 7, stride=2, padding=3, bias=False)
        stages = []
        cin = 64 * wf
        for s, n in enumerate(units):
            cmid = 64 * wf * 2**s
            cout = 4 * cmid
            blocks = [PreActUnit(cin if u == 0 else cout, cout, cmid, stride=2 if (u == 0 and s > 0) else 1) for u in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.norm = nn.GroupNorm(32, cin)
        self.head = nn.Linear(cin, num_classes)  # the official 1x1 conv head, as a Linear
        self.dim = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.root(x)
        # BiT pads by one then max-pools without padding (subtly different from padding=1)
        x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), kernel_size=3, stride=2)
        for stage in self.stages:
            x = stage(x)
        x = F.relu(self.norm(x))
        return x.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def npz_layout(model: ResNetV2, prefix: str = "resnet/") -> dict[str, tuple[str, tuple[int, ...]]]:
    """Official .npz key -> (state-dict name, shape in the file): conv kernels HWIO, head (1, 1, C, K)."""
    lay: dict[str, tuple[str, tuple[int, ...]]] = {}

    def conv(key: str, name: str, m: nn.Conv2d) -> None:
        o, i, kh, kw = m.weight.shape
        lay[f"{prefix}{key}/{_CONV}/kernel"] = (f"{name}.weight", (kh, kw, i, o))

    def gn(key: str, name: str, m: nn.GroupNorm) -> None:
        lay[f"{prefix}{key}/gamma"] = (f"{name}.weight", (m.num_channels,))
        lay[f"{prefix}{key}/beta"] = (f"{name}.bias", (m.num_channels,))

    conv("root_block", "root", model.root)
    for s, stage in enumerate(model.stages):
        for u, unit in enumerate(stage):
            src, dst = f"block{s + 1}/unit{u + 1:02d}", f"stages.{s}.{u}"
            for i, letter in enumerate("abc", start=1):
                conv(f"{src}/{letter}", f"{dst}.conv{i}", getattr(unit, f"conv{i}"))
                gn(f"{src}/{letter}/group_norm", f"{dst}.gn{i}", getattr(unit, f"gn{i}"))
            if unit.proj is not None:
                conv(f"{src}/a/proj", f"{dst}.proj", unit.proj)
    gn("group_norm", "norm", model.norm)
    k, c = model.head.weight.shape
    lay[f"{prefix}head/conv2d/kernel"] = ("head.weight", (1, 1, c, k))
    lay[f"{prefix}head/conv2d/bias"] = ("head.bias", (k,))
    return lay


def bit_state_from_npz(weights, model: ResNetV2, prefix: str = "resnet/") -> dict[str, torch.Tensor]:
    """Map the official BiT .npz key layout onto `model`'s state-dict names (kernels HWIO -> OIHW)."""
    sd: dict[str, torch.Tensor] = OrderedDict()
    for key, (name, shape) in npz_layout(model, prefix).items():
        if key not in weights:
            raise KeyError(f"BiT weights: missing key {key!r}")
        a = np.asarray(weights[key], dtype=np.float32)
        if a.size != int(np.prod(shape)):
            raise ValueError(f"BiT weights: {key!r} has shape {a.shape}, expected {shape}")
        a = a.reshape(shape)
        if name == "head.weight":
            a = a[0, 0].T  # (C, K) -> Linear's (K, C)
        elif len(shape) == 4:
            a = a.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        sd[name] = torch.from_numpy(np.ascontiguousarray(a))
    return sd


def load_bit_npz(path: str | Path, units: tuple[int, ...] = R152_UNITS, width: int = 2) -> ResNetV2:
    """Build BiT-M-R{depth}x{width} and load Google's official .npz (default R152x2, 21,843 classes).

    The head size is read from the file, so BiT-S (1,000 classes) files load as well. Strict: a missing
    or misshapen tensor is an error naming the key.
    """
    path = Path(path)
    with np.load(path) as npz:
        if "resnet/head/conv2d/bias" not in npz.files:
            raise KeyError(f"{path}: not a BiT .npz (no 'resnet/head/conv2d/bias')")
        with torch.device("meta"):  # skip a random init that the file overwrites anyway
            model = ResNetV2(units, width, num_classes=int(npz["resnet/head/conv2d/bias"].shape[-1]))
        try:
            sd = bit_state_from_npz(npz, model)
            model.load_state_dict(sd, strict=True, assign=True)
        except (KeyError, ValueError, RuntimeError) as err:
            raise ValueError(f"{path}: BiT weights do not fit R{units}x{width}: {err}") from err
    return model.eval()


def random_bit_npz(path: str | Path, units: tuple[int, ...] = R152_UNITS, width: int = 2,
                   num_classes: int = 21843, seed: int = 0) -> None:
    """Write random weights in the official key layout (tests and GPU speed benchmarks only)."""
    rng = np.random.default_rng(seed)
    with torch.device("meta"):  # only the shapes are needed: no memory for the module itself
        model = ResNetV2(units, width, num_classes)
    out: dict[str, np.ndarray] = {}
    for key, (name, shape) in npz_layout(model).items():
        if key.endswith("/kernel"):
            fan_in = int(np.prod(shape[:-1]))
            out[key] = (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(fan_in)).astype(np.float32)
        elif key.endswith("/gamma"):
            out[key] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:  # beta, bias
            out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    np.savez(path, **out)
