"""Frame encoders: an ImageNet CNN per frame -> pooled features and class logits (paper §3.2, §3.5).

One interface, `FrameEncoder.encode(frames uint8 (T, H, W, 3) RGB) -> (features float32 (T, D),
logits float32 (T, C))`, over three backbones (docs/real_data.md; docs/fidelity.md "frame CNN"); extraction
uses `encode_topk` instead, which keeps the logits where the CNN runs and returns each frame's top-k objects
(docs/decisions.md §11). On a GPU the CNN runs in bf16 on channels_last tensors (`precision`), the head in fp32.
| name | D | C | label space | preprocessing | weights |
|---|---|---|---|---|---|
| efficientnet_lite0 (default offline) | 1280 | 1000 | imagenet1k | [-1, 1] | pip package (cezsar.encoders.resources) |
| bit_m_r152x2 (the released features) | 4096 | 21843 | imagenet21k | [-1, 1] | user's BiT-M-R152x2.npz |
| resnet152 (the paper's wording) | 2048 | 1000 | imagenet1k | ImageNet mean/std | user's torchvision .pth |
| clip:<model id or folder> (the modern peer) | projection_dim | 0 | none (no objects) | CLIP's (encoders.clip) | hub cache or folder |

Every frame is resized to a square `image_size` x `image_size` (the whole frame, no crop: wide video
keeps its edges, where actors often are). The colour order is RGB throughout. `preprocess="released"`
reproduces the released extraction instead (docs/fidelity.md "frame colour"): BGR frames fed as RGB, the
shorter side resized to 256/224 of `image_size`, then a centre crop of `image_size` (256 -> 224 at 224 px);
needed so that newly extracted test features match the released training features.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from cezsar.encoders.bit import fold_standardisation, load_bit_npz
from cezsar.encoders.clip import clip_encoder, is_clip
from cezsar.base.devices import resolve_device
from cezsar.encoders.objects import topk_logsumexp
from cezsar.encoders.resnet import load_resnet152
from cezsar.encoders.resources import efficientnet_lite0_weights

BACKBONES = ("efficientnet_lite0", "bit_m_r152x2", "resnet152")
BACKBONE_ALIASES = {"efficientnet": "efficientnet_lite0", "effnet": "efficientnet_lite0", "bit": "bit_m_r152x2",
            "bit-m-r152x2": "bit_m_r152x2", "resnet-152": "resnet152"}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_HALF = (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5 maps [0, 1] to [-1, 1]


class FrameEncoder:
    """A frozen ImageNet CNN applied frame by frame, with its own preprocessing.

    Attributes: name, dim (pooled feature size D), num_classes (C), label_space ("imagenet1k" |
    "imagenet21k"), image_size, batch (frames per forward), device.
    """

    def __init__(self, name: str, model: nn.Module, features: Callable[[torch.Tensor], torch.Tensor],
                 head: Callable[[torch.Tensor], torch.Tensor], dim: int, num_classes: int, label_space: str,
                 image_size: int, mean: tuple[float, ...], std: tuple[float, ...], device: str = "cpu",
                 batch: int = 32, preprocess: str = "paper", precision: str = "auto") -> None:
        if preprocess not in ("paper", "released"):
            raise ValueError(f"unknown preprocessing {preprocess!r} (expected 'paper' or 'released')")
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"unknown precision {precision!r} (expected 'auto', 'fp32' or 'bf16')")
        self.preprocess_mode = preprocess
        self.name, self.dim, self.num_classes, self.label_space = name, dim, num_classes, label_space
        self.image_size, self.batch = int(image_size), int(batch)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        cuda = self.device.type == "cuda"
        # on a GPU the CNN runs in bf16 on channels_last tensors (tensor-core convolutions); a CPU stays fp32
        self.precision = ("bf16" if cuda else "fp32") if precision == "auto" else precision
        if cuda:
            self.model.to(memory_format=torch.channels_last)
        self._features, self._head = features, head
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (T, H, W, 3) RGB -> normalised float (T, 3, S, S) on the device."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
        if self.preprocess_mode == "released":
            frames = frames[..., ::-1]  # the released decoder's BGR frames, fed to the RGB network as they were
        x = torch.from_numpy(np.ascontiguousarray(frames))  # uint8 (T, H, W, 3): a quarter of float32's bytes
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)  # an async copy: no sync per batch
        else:
            x = x.to(self.device)
        # (T, H, W, 3) -> (T, 3, H, W) in [0, 1]; the permuted view of NHWC memory is channels_last already
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        s = self.image_size
        if self.preprocess_mode == "released":
            h, w = x.shape[-2:]
            short = round(s * 256 / 224)  # resize 256 + centre crop 224, scaled to image_size
            size = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            top, left = (size[0] - s) // 2, (size[1] - s) // 2
            x = x[..., top:top + s, left:left + s]  # (T, 3, s, s)
        elif x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        x = (x - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features float32 (T, D) and ImageNet logits float32 (T, C) for T frames."""
        feats, logits = [], []
        for i in range(0, len(frames), self.batch):
            x = self.preprocess(frames[i:i + self.batch])  # (B, 3, S, S)
            with self._autocast():
                f = self._features(x).float()  # (B, D)
            z = self._head(f)  # (B, C) in fp32: bf16 logits (8 bits) would blur the softmax of close classes
            feats.append(f.cpu().numpy())
            logits.append(z.float().cpu().numpy())
        if not feats:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(feats).astype(np.float32), np.concatenate(logits).astype(np.float32)

    @torch.inference_mode()
    def encode_topk(self, frames: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, object]:
        """One batch of frames -> pooled features float32 (B, D), the top-k classes int32 (B, k) and their
        softmax scores float32 (B, k) (`objects.topk_logsumexp`, computed where the CNN runs), in host memory,
        and a CUDA event (None on a CPU). On a GPU only those rows are copied back, into pinned memory without
        waiting: the tensors are complete once the event has (`event.synchronize()`), so the CNN's thread
        never stops for a copy."""
        x = self.preprocess(frames)  # (B, 3, S, S)
        with self._autocast():
            f = self._features(x).float()  # (B, D)
        z = self._head(f)  # (B, C) in fp32, as in `encode`
        idx, sc = topk_logsumexp(z, k)  # (B, k) each
        outs = (f, idx.to(torch.int32), sc)
        if self.device.type != "cuda":
            return (*outs, None)
        host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in outs]
        for h, t in zip(host, outs):
            h.copy_(t, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return (*host, event)

    def info(self) -> dict:
        return {"backbone": self.name, "dim": self.dim, "label_space": self.label_space,
                "num_classes": self.num_classes, "image_size": self.image_size}


def efficientnet_lite0(weights: str | Path | None = None, device: str = "cpu", image_size: int = 160,
                       batch: int = 32, preprocess: str = "paper", precision: str = "auto") -> FrameEncoder:
    """EfficientNet-Lite0, ImageNet-1k (the offline default): inputs in [-1, 1], D = 1280, C = 1000."""


    path = Path(weights) if weights else efficientnet_lite0_weights()
    # static "same" padding is computed for image_size, so build the net for the size we feed it
    model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: not an EfficientNet-Lite0 state dict: {err}") from err

    def features(x: torch.Tensor) -> torch.Tensor:
        return model.extract_features(x).mean(dim=(2, 3))  # (B, 1280, h, w) -> (B, 1280)

    return FrameEncoder("efficientnet_lite0", model, features, model._fc, 1280, 1000, "imagenet1k",
                        image_size, _HALF, _HALF, device, batch, preprocess, precision)


def bit_m_r152x2(weights: str | Path | None, device: str = "cpu", image_size: int = 160,
                 batch: int = 32, preprocess: str = "paper", precision: str = "auto") -> FrameEncoder:
    """BiT-M-R152x2, ImageNet-21k (the released features): inputs in [-1, 1], D = 4096, C = 21843."""

    if not weights:
        raise FileNotFoundError(
            "BiT-M-R152x2 needs its weights: --weights BiT-M-R152x2.npz "
            "(https://storage.googleapis.com/bit_models/BiT-M-R152x2.npz); offline, use efficientnet_lite0")
    model = fold_standardisation(load_bit_npz(weights))  # frozen: standardise the weights once, not per forward
    label_space = "imagenet21k" if model.head.out_features == 21843 else "imagenet1k"
    return FrameEncoder("bit_m_r152x2", model, model.features, model.head, model.dim,
                        model.head.out_features, label_space, image_size, _HALF, _HALF, device, batch, preprocess, precision)


def resnet152(weights: str | Path | None, device: str = "cpu", image_size: int = 160,
              batch: int = 32, preprocess: str = "paper", precision: str = "auto") -> FrameEncoder:
    """ResNet-152 from torchvision's ImageNet-1k .pth: ImageNet mean/std, D = 2048, C = 1000."""

    if not weights:
        raise FileNotFoundError("resnet152 needs --weights: torchvision's resnet152-*.pth state dict")
    model = load_resnet152(weights)
    return FrameEncoder("resnet152", model, model.features, model.fc, model.dim, model.fc.out_features,
                        "imagenet1k", image_size, _IMAGENET_MEAN, _IMAGENET_STD, device, batch, preprocess, precision)


def get_encoder(name: str = "efficientnet_lite0", weights: str | Path | None = None, device: str = "cpu",
                image_size: int = 160, batch: int = 32, preprocess: str = "paper", precision: str = "auto") -> FrameEncoder:
    """The frame encoder by name (see module table); `weights` is a path or None for the offline default;
    `preprocess` "paper" (RGB, whole frame) or "released" (BGR, resize + centre crop; ExtractConfig.released_preprocess);
    `precision` "auto" (bf16 autocast on a GPU, fp32 on a CPU), "fp32" or "bf16".
    `clip:<model id or folder>` gives a `cezsar.encoders.clip.ClipEncoder` (same interface, CLIP's preprocessing, no
    logits)."""
    if is_clip(name):  # a frozen image-text model: no ImageNet head, its own preprocessing (cezsar.encoders.clip)
        if weights:
            raise ValueError(f"{name}: a CLIP is named by its hub id or folder (clip:<model>), not by a weights file")
        return clip_encoder(name, device=device, batch=batch)
    key = BACKBONE_ALIASES.get(name.lower(), name.lower())
    builders = {"efficientnet_lite0": efficientnet_lite0, "bit_m_r152x2": bit_m_r152x2, "resnet152": resnet152}
    if key not in builders:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)} or clip:<model>")
    return builders[key](weights, device=device, image_size=image_size, batch=batch, preprocess=preprocess,
                         precision=precision)
