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
