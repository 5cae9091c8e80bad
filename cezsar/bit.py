"""BiT-M-R152x2: the paper's frame CNN as released (DESIGN.md §5, §7 "frame CNN").

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
    """Conv2d with weight standardisation: each output filter is shifted/scaled to mean 0, var 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, unbiased=False)  # per filter
        w = (w - mean) / torch.sqrt(var + 1e-10)  # BiT's epsilon
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


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


def _hwio_to_oihw(k: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))


def bit_state_from_npz(weights: dict[str, np.ndarray], model: ResNetV2, prefix: str = "resnet/") -> dict[str, torch.Tensor]:
    """Map the official BiT .npz key layout onto `model`'s state-dict names (kernels HWIO -> OIHW)."""
    sd: dict[str, torch.Tensor] = OrderedDict()

    def get(key: str) -> np.ndarray:
        full = prefix + key
        if full not in weights:
            raise KeyError(f"BiT weights: missing key {full!r}")
        return np.asarray(weights[full], dtype=np.float32)

    sd["root.weight"] = _hwio_to_oihw(get(f"root_block/{_CONV}/kernel"))
    for s, stage in enumerate(model.stages):
        for u, unit in enumerate(stage):
            src = f"block{s + 1}/unit{u + 1:02d}/"
            dst = f"stages.{s}.{u}."
            for i, letter in enumerate("abc", start=1):
                sd[f"{dst}conv{i}.weight"] = _hwio_to_oihw(get(f"{src}{letter}/{_CONV}/kernel"))
                sd[f"{dst}gn{i}.weight"] = torch.from_numpy(get(f"{src}{letter}/group_norm/gamma").reshape(-1))
                sd[f"{dst}gn{i}.bias"] = torch.from_numpy(get(f"{src}{letter}/group_norm/beta").reshape(-1))
            if unit.proj is not None:
                sd[f"{dst}proj.weight"] = _hwio_to_oihw(get(f"{src}a/proj/{_CONV}/kernel"))
    sd["norm.weight"] = torch.from_numpy(get("group_norm/gamma").reshape(-1))
    sd["norm.bias"] = torch.from_numpy(get("group_norm/beta").reshape(-1))
    head = get("head/conv2d/kernel")  # (1, 1, C_in, C_out)
    sd["head.weight"] = torch.from_numpy(np.ascontiguousarray(head.reshape(head.shape[-2], head.shape[-1]).T))
    sd["head.bias"] = torch.from_numpy(get("head/conv2d/bias").reshape(-1))
    return sd


def load_bit_npz(path: str | Path, units: tuple[int, ...] = R152_UNITS, width: int = 2) -> ResNetV2:
    """Build BiT-M-R{depth}x{width} and load Google's official .npz (default R152x2, 21,843 classes).

    The head size is read from the file, so BiT-S (1,000 classes) files load as well. Strict: a missing
    or unexpected tensor is an error naming the key.
    """
    path = Path(path)
    with np.load(path) as npz:
        weights = {k: npz[k] for k in npz.files}
    head_bias = weights.get("resnet/head/conv2d/bias")
    if head_bias is None:
        raise KeyError(f"{path}: not a BiT .npz (no 'resnet/head/conv2d/bias')")
    model = ResNetV2(units, width, num_classes=int(head_bias.shape[-1]))
    sd = bit_state_from_npz(weights, model)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: BiT weights do not fit R{units}x{width}: {err}") from err
    return model.eval()


def random_bit_npz(path: str | Path, units: tuple[int, ...] = R152_UNITS, width: int = 2,
                   num_classes: int = 21843, seed: int = 0) -> None:
    """Write random weights in the official key layout (tests and GPU speed benchmarks only)."""
    rng = np.random.default_rng(seed)
    model = ResNetV2(units, width, num_classes)
    out: dict[str, np.ndarray] = {}

    def conv(name: str, m: nn.Conv2d) -> None:
        o, i, kh, kw = m.weight.shape
        out[f"resnet/{name}/{_CONV}/kernel"] = rng.standard_normal((kh, kw, i, o), dtype=np.float32)

    def gn(name: str, m: nn.GroupNorm) -> None:
        out[f"resnet/{name}/group_norm/gamma"] = (1 + 0.1 * rng.standard_normal(m.num_channels)).astype(np.float32)
        out[f"resnet/{name}/group_norm/beta"] = (0.1 * rng.standard_normal(m.num_channels)).astype(np.float32)

    conv("root_block", model.root)
    for s, stage in enumerate(model.stages):
        for u, unit in enumerate(stage):
            pre = f"block{s + 1}/unit{u + 1:02d}"
            for i, letter in enumerate("abc", start=1):
                conv(f"{pre}/{letter}", getattr(unit, f"conv{i}"))
                gn(f"{pre}/{letter}", getattr(unit, f"gn{i}"))
            if unit.proj is not None:
                conv(f"{pre}/a/proj", unit.proj)
    out["resnet/group_norm/gamma"] = np.ones(model.dim, np.float32)
    out["resnet/group_norm/beta"] = np.zeros(model.dim, np.float32)
    out["resnet/head/conv2d/kernel"] = (0.01 * rng.standard_normal((1, 1, model.dim, num_classes))).astype(np.float32)
    out["resnet/head/conv2d/bias"] = np.zeros(num_classes, np.float32)
    np.savez(path, **out)
