"""SynthActions' clips (docs/decisions.md §6): a fixed asymmetric scene (sky top, ground bottom, brick wall on
the left third, because pooled CNN features are nearly mirror-invariant otherwise), the actors drawn large on it
(longer side >= ~0.5 of the 160-px frame, mostly ~0.8-1.0, because EfficientNet-Lite0 at 160 px only recognises
big objects) and moved by their action, encoded as MPEG-4 with a keyframe a second.
"""
from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import skimage.data as skd
from PIL import Image

from cezsar.formats.synthetic_world import ACTORS

SIDE = 160  # frame side in pixels (docs/decisions.md §6: EfficientNet-Lite0 at 160 px)
FPS = 5  # encoded frame rate; the pipeline decodes 1 frame/s, the rest only makes the clips watchable


def _photos() -> dict[str, np.ndarray]:
    def rgb(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a

    photos = {"chelsea": skd.chelsea(), "coffee": skd.coffee(), "camera": rgb(skd.camera()),
              "motorcycle": skd.stereo_motorcycle()[0]}
    textures = {name: getattr(skd, name)() for name in ("grass", "brick", "gravel")}
    return {**photos, **textures}


class Renderer:
    """Draws frames: a scene varied per video (texture offsets, tint) and one actor placed by an action."""

    def __init__(self) -> None:
        self._Image = Image
        self.images = _photos()
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def scene(self, rng: np.random.Generator) -> np.ndarray:
        def tex(name: str, h: int, w: int, tint: tuple[float, float, float]) -> np.ndarray:
            t = self.images[name]
            y, x = rng.integers(0, t.shape[0] - h), rng.integers(0, t.shape[1] - w)
            patch = t[y:y + h, x:x + w, None].astype(np.float32) / 255.0  # (h, w, 1)
            return patch * np.asarray(tint, np.float32) * rng.uniform(0.85, 1.15)

        frame = np.empty((SIDE, SIDE, 3), np.float32)
        sky = np.linspace(0.55, 0.9, 48, dtype=np.float32)[:, None, None]  # (48, 1, 1) brighter downwards
        frame[:48] = sky * np.asarray([0.55, 0.75, 1.0], np.float32) * 255
        frame[48:112] = tex("gravel", 64, SIDE, (200, 190, 170))
        frame[112:] = tex("grass", 48, SIDE, (110, 200, 90))
        frame[:112, :53] = tex("brick", 112, 53, (230, 120, 90))  # the wall makes the layout asymmetric
        return np.clip(frame, 0, 255).astype(np.uint8)

    def actor(self, image: str, longer: int) -> np.ndarray:
        key = (image, longer)
        if key not in self._cache:
            src = self.images[image]
            h, w = src.shape[:2]
            scale = longer / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            self._cache[key] = np.asarray(self._Image.fromarray(src).resize(size, self._Image.BILINEAR))
        return self._cache[key]

    def draw(self, bg: np.ndarray, image: str, longer: float, cx: float, cy: float, alpha: float) -> np.ndarray:
        """`bg` with the actor of longer side `longer` (fraction of the frame) centred at (cx, cy), blended by alpha."""
        frame = bg.copy()
        if alpha <= 0:
            return frame
        act = self.actor(image, int(round(longer * SIDE)))
        h, w = act.shape[:2]
        y0, x0 = int(round(cy * SIDE - h / 2)), int(round(cx * SIDE - w / 2))
        fy0, fx0, fy1, fx1 = max(y0, 0), max(x0, 0), min(y0 + h, SIDE), min(x0 + w, SIDE)
        if fy1 <= fy0 or fx1 <= fx0:
            return frame
        patch = act[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
        if alpha >= 1:
            frame[fy0:fy1, fx0:fx1] = patch
        else:
            region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
            frame[fy0:fy1, fx0:fx1] = (alpha * patch + (1 - alpha) * region).round().astype(np.uint8)
        return frame


def pose(action: str, p: float, jitter: np.ndarray) -> tuple[float, float, float, float]:
    """(longer side, cx, cy, alpha) of the actor at progress p in [0, 1] of an action; jitter (4,) in [-1, 1]."""
    size, cx, cy = 0.85 + 0.05 * jitter[0], 0.55 + 0.04 * jitter[1], 0.5 + 0.04 * jitter[2]
    p = min(max(p * (1 + 0.1 * jitter[3]), 0.0), 1.0)  # per-clip speed
    ease = p * p * (3 - 2 * p)  # smoothstep: still at both ends, so a window never starts mid-jump
    if action == "grow":
        return 0.5 + 0.5 * ease, cx, cy, 1.0
    if action == "shrink":
        return 1.0 - 0.5 * ease, cx, cy, 1.0
    if action == "rise":
        return size, cx, 0.78 - 0.5 * ease, 1.0
    if action == "fall":
        return size, cx, 0.28 + 0.5 * ease, 1.0
    if action == "left":
        return size, 0.75 - 0.45 * ease, cy, 1.0
    if action == "right":
        return size, 0.3 + 0.45 * ease, cy, 1.0
    if action == "appear":
        return size, cx, cy, min(max((p - 0.3) / 0.15, 0.0), 1.0)
    if action == "vanish":
        return size, cx, cy, 1.0 - min(max((p - 0.55) / 0.15, 0.0), 1.0)
    raise ValueError(f"unknown action {action!r}")


def render(renderer: Renderer, seed: int, duration: float, segments: list[tuple[float, float, tuple[str, str]]]
           ) -> np.ndarray:
    """All frames (N, SIDE, SIDE, 3) uint8 at FPS of one video; outside segments the scene is empty."""
    rng = np.random.default_rng(seed)
    bg = renderer.scene(rng)
    jitters = rng.uniform(-1, 1, (len(segments), 4))
    frames = []
    for i in range(int(round(duration * FPS))):
        t = i / FPS
        frame = bg
        for (start, end, (actor, action)), jit in zip(segments, jitters):
            if start <= t < end:
                frame = renderer.draw(bg, ACTORS[actor].image, *pose(action, (t - start) / (end - start), jit))
        frames.append(frame)
    return np.stack(frames)  # (N, H, W, 3)


def _yuv420p(frames: np.ndarray) -> np.ndarray:
    """RGB (N, H, W, 3) uint8 -> planar YUV 4:2:0 (N, H * 3 // 2, W) uint8, BT.601 limited range.

    The integer BT.601 formulas swscale uses for rgb24 -> yuv420p, applied to the whole stack at once
    because per-frame swscale calls cost more than the encoding itself.
    """
    n, h, w, _ = frames.shape
    r, g, b = (frames[..., c].astype(np.int32) for c in range(3))  # (N, H, W) each
    out = np.empty((n, h * 3 // 2, w), np.uint8)
    out[:, :h] = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    # chroma from 2x2 sums of RGB (the transform is linear, so this equals averaging U and V)
    r4, g4, b4 = (c[:, 0::2, 0::2] + c[:, 1::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 1::2] for c in (r, g, b))
    u = ((-38 * r4 - 74 * g4 + 112 * b4 + 512) >> 10) + 128  # (N, H/2, W/2)
    v = ((112 * r4 - 94 * g4 - 18 * b4 + 512) >> 10) + 128
    out[:, h:h + h // 4] = u.reshape(n, h // 4, w)  # planar U then V, each H/2 x W/2 row-major
    out[:, h + h // 4:] = v.reshape(n, h // 4, w)
    return out


def write_video(path: Path, frames: np.ndarray) -> None:
    """Encode with fixed options (mpeg4, a keyframe every second, bitexact, one thread) so the same frames
    give the same bytes; written to a temp file and renamed (atomic)."""

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with av.open(str(tmp), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        stream.codec_context.gop_size = FPS  # a keyframe per second: cheap exact seeks at 1 fps
        stream.thread_count = 1
        # quantiser 3-5: ~6 kB per second of video, mean abs error ~5/255 (the default rate blurs the actors)
        stream.options = {"qmin": "3", "qmax": "5", "flags": "+bitexact"}
        for planes in _yuv420p(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")))
        container.mux(stream.encode())
    os.replace(tmp, path)
