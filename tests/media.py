"""Media files the tests write themselves (shared by the video and extraction tests)."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC file with no video stream, saved under `path` (any extension: the container is sniffed)."""
    tmp = path.with_suffix(".m4a.tmp")
    with av.open(str(tmp), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        t = np.arange(int(16000 * seconds)) / 16000
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]  # (1, N) mono
        for i in range(0, wave.shape[1], 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, i:i + 1024]), format="fltp", layout="mono")
            fr.sample_rate = 16000
            for pk in s.encode(fr):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return tmp.rename(path)


def write_photo_clip(path: Path, seconds: float, size: tuple[int, int] = (96, 64), fps: int = 10, gop: int = 10,
                     shift: int = 0) -> Path:
    """A clip panning across a real photograph (scikit-image's cat), so a CNN sees a real image and its class
    scores are those of real frames; (width, height) `size`, a keyframe every `gop` frames."""
    from skimage import data, transform

    from cezsar.encoders.video import write_video

    w, h = size
    photo = (transform.resize(data.chelsea(), (h, 2 * w), anti_aliasing=True) * 255).astype(np.uint8)  # (h, 2w, 3)
    frames = (np.roll(photo, -(3 * j + shift), axis=1)[:, :w] for j in range(int(round(seconds * fps))))
    return write_video(path, frames, fps=fps, gop=gop)
