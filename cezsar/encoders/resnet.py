"""ResNet-152 with torchvision's state-dict key names (docs/decisions.md §5, "frames, alt").

The paper names "ResNet-152" as its frame CNN; a user holding torchvision's ImageNet-1k checkpoint
(`resnet152-*.pth`) can load it here without torchvision, which does not install beside the CPU torch
on these machines. Module names mirror torchvision exactly (conv1, bn1, layer1.0.conv1, ...,
layer1.0.downsample.0/1, fc) so `load_state_dict(strict=True)` accepts that file unchanged. The stride
sits on the 3x3 conv ("ResNet v1.5"), as in torchvision. Pooled features are 2048-d, logits 1000.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

R152_LAYERS = (3, 8, 36, 3)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision-compatible ResNet; `features(x)` -> (B, 2048) pooled, `fc` -> (B, 1000) logits."""

    def __init__(self, layers: tuple[int, ...] = R152_LAYERS, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, n in enumerate(layers):
            planes = 64 * 2**i
            blocks = []
            for b in range(n):
                blocks.append(Bottleneck(inplanes, planes, stride=2 if (b == 0 and i > 0) else 1))
                inplanes = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, num_classes)
        self.dim = inplanes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def load_resnet152(path: str | Path) -> ResNet:
    """ResNet-152 from a torchvision state dict (.pth), loaded strictly (`weights_only=True`)."""
    path = Path(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    num_classes = int(sd["fc.bias"].shape[0]) if "fc.bias" in sd else 1000
    with torch.device("meta"):  # skip a random init that the checkpoint overwrites anyway
        model = ResNet(R152_LAYERS, num_classes)
    try:
        model.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: not a torchvision ResNet-152 state dict: {err}") from err
    return model.eval()
