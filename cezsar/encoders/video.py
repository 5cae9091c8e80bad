"""Decoding at 1 frame per second (paper §3.2; docs/fidelity.md, docs/decisions.md §11).

Sampling rule (documented, used everywhere): a video of duration d seconds gives
T = max(1, floor(d)) frames; frame i is the first frame whose timestamp is at or after i seconds from
the stream start (i = 0 .. T-1). So row i of a feature stack is second i, as in the released features
(whose code kept n // 25 frames of a 25-fps re-encode, i.e. floor(d) rows). A clip shorter than 1 s
gives its first frame.

Why the start of each second rather than its middle: encoders very often put a keyframe on whole
seconds (keyint = fps, or a multiple of it), so a frame at i s is one seek plus one decoded frame,
while i + 0.5 s would always need half a GOP decoded.

`decode_released` is the released code's sampling instead (ExtractConfig.released_sampling): the frames of a
25-fps re-encode at np.linspace(0, n - 1, n // 25), spread over the clip rather than on whole seconds.

How it decodes only what it needs: one cheap demux pass (no decoding) lists the keyframe timestamps;
for each target it seeks to the last keyframe before it only when that keyframe lies beyond the frame
already decoded, and otherwise keeps decoding forward. With a keyframe every second this decodes one
frame per second; with very long GOPs it degrades gracefully to a single forward pass (never worse
than decoding everything).
"""
from __future__ import annotations

import bisect
import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from cezsar.errors import VideoDecodeError

# Timestamps are compared with this slack (seconds): container rounding puts a frame meant for
# exactly i s at i - 1e-5 s.
_EPS = 1e-3
# A file whose header promises more than this many seconds beyond the last packet is truncated.
_TRUNCATION_SLACK = 1.0


def _open(path: Path):
    if path.is_symlink() and not path.exists():
        raise VideoDecodeError(path, f"a symbolic link whose target does not exist ({os.readlink(path)})")
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if path.is_dir():
        raise VideoDecodeError(path, "a folder named like a video, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise VideoDecodeError(path, f"not a readable video container ({type(err).__name__}: {err})") from err
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})")
    fmt = container.format.name
    if fmt == "image2" or fmt.endswith("_pipe"):  # FFmpeg's still-image demuxers (png_pipe, jpeg_pipe, ...)
        # one still frame would pass as a 1-second video and be classified with full confidence
        kind = fmt.removesuffix("_pipe") if fmt != "image2" else "image"
        container.close()
        raise VideoDecodeError(path, f"a still {kind} image, not a video (whatever its extension says)")
    return container


def _keyframe_index(container, stream, path: Path, limit_s: float | None) -> tuple[list[int], float, int]:
    """Demux (no decoding) the video packets: keyframe pts list, data end time (s), first pts."""

    tb = stream.time_base
    keys: list[int] = []
    first: int | None = None
    end_pts: int | None = None
    n_packets = 0
    limit_pts = None if limit_s is None else int((limit_s + 2.0) / tb)
    try:
        for packet in container.demux(stream):
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                continue  # the flushing packet at the end
            n_packets += 1
            first = ts if first is None else min(first, ts)
            stop = ts + (packet.duration or 0)
            end_pts = stop if end_pts is None else max(end_pts, stop)
            if packet.is_keyframe:
                keys.append(ts)
            if limit_pts is not None and first is not None and ts - first > limit_pts:
                break
    except av.error.FFmpegError as err:
        if n_packets == 0:
            raise VideoDecodeError(path, f"unreadable video data ({err})") from err
        # damaged tail: keep what was readable; the truncation check below decides
    if n_packets == 0 or first is None or end_pts is None:
        raise VideoDecodeError(path, "no video packets (truncated or empty stream)")
    if end_pts == first and stream.average_rate:
        end_pts = first + int(1 / (float(stream.average_rate) * tb))  # one frame with no packet duration
    return sorted(set(keys)), float((end_pts - first) * tb), first


def _declared_duration(container, stream) -> float | None:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def decode_1fps(
    path: str | Path, max_seconds: float | None = None, size: tuple[int, int] | None = None, threads: int = 0
) -> np.ndarray:
    """Decode one RGB frame per second (paper §3.2): uint8 (T, H, W, 3), frame i at i s (module doc).

    Args:
        path: any container/codec FFmpeg reads (mp4, avi, mkv, webm ...).
        max_seconds: keep at most ceil(max_seconds) frames (seconds 0 .. ceil-1); None = whole video.
        size: (width, height) to rescale each kept frame to while decoding (libswscale, cheap); None
            keeps the native size.
        threads: FFmpeg decoding threads; 0 = FFmpeg's choice (slice threads for short GOPs, see below). Extraction
            passes 1: it runs one decoder process per spare core, and more threads per process only contend.

    Raises:
        VideoDecodeError: zero-byte, missing, non-video, audio-only, truncated or undecodable files.
    """

    def times(data_s: float) -> list[float]:
        n = max(1, math.floor(data_s + _EPS))
        if max_seconds is not None:
            n = min(n, max(1, math.ceil(max_seconds - _EPS)))
        return [float(i) for i in range(n)]

    return _decode_at(Path(path), times, max_seconds, size, _EPS, threads)


RELEASED_FPS = 25  # the released extraction re-encoded every video to 25 fps first


def released_times(data_s: float) -> list[float]:
    """The released frame sampling as times (s): a 25-fps re-encode has n = round(25 d) frames, of which it
    kept np.linspace(0, n - 1, n // 25) cast to int (at least one), frame j being shown at j / 25 s."""
    n = max(1, round(data_s * RELEASED_FPS))
    keep = np.linspace(0, n - 1, max(1, n // RELEASED_FPS)).astype(np.int64)  # (T,) frame numbers, floored
    return [float(j) / RELEASED_FPS for j in keep]


def decode_released(
    path: str | Path, max_seconds: float | None = None, size: tuple[int, int] | None = None, threads: int = 0
) -> np.ndarray:
    """The released code's frame sampling (docs/fidelity.md "frame sampling"): uint8 (T, H, W, 3), the frames
    of a 25-fps re-encode at `released_times`, T = n // 25 rows (floor(d) for most clips, as `decode_1fps`),
    spread over the whole clip instead of one per whole second. Without re-encoding: each row is the source
    frame nearest its time (the first frame at or after it less half a 25-fps frame), which is the re-encode's
    frame itself for 25-fps sources. max_seconds keeps the first ceil(max_seconds) rows of the whole clip's
    sampling. Raises VideoDecodeError as `decode_1fps`."""

    def times(data_s: float) -> list[float]:
        t = released_times(data_s)
        return t if max_seconds is None else t[:max(1, math.ceil(max_seconds - _EPS))]

    # the row times depend on the whole clip's duration: the demux pass reads every packet (no limit)
    return _decode_at(Path(path), times, None, size, 0.5 / RELEASED_FPS, threads)


def _decode_at(path: Path, times, limit_s: float | None, size: tuple[int, int] | None, tol: float,
               threads: int = 0) -> np.ndarray:
    """The frames at `times(data seconds)` (s from the stream start, increasing): for each, the first frame
    whose timestamp is at or after it less `tol`, seeking only past keyframes beyond what is decoded (module doc)."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        tb: Fraction = stream.time_base
        keys, data_s, first_pts = _keyframe_index(container, stream, path, limit_s)
        # Frame threads delay output by one frame per thread, and after every seek those frames are
        # decoded for nothing; so slice threads when seeks dominate (keyframes <= 2 s apart), frame
        # threads for long GOPs where the decoder mostly runs forward.
        gap = float(np.median(np.diff(keys)) * tb) if len(keys) > 1 else float("inf")
        stream.thread_type = "SLICE" if gap <= 2.0 else "AUTO"
        if threads > 0:
            stream.thread_count = threads
        declared = _declared_duration(container, stream)
        if limit_s is None and declared is not None and declared - data_s > _TRUNCATION_SLACK:
            raise VideoDecodeError(
                path, f"truncated: header says {declared:.2f} s, data ends at {data_s:.2f} s"
            )
        wanted = times(data_s)
        n = len(wanted)
        frames: list[np.ndarray] = []
        decoder = None
        cur_pts: int | None = None  # pts of the last decoded frame
        last = None
        for i, at in enumerate(wanted):
            target = first_pts + int(round(at / tb))  # pts of the wanted time
            k = bisect.bisect_right(keys, target + int(tol / tb)) - 1
            key_pts = keys[k] if k >= 0 else first_pts
            if decoder is None or cur_pts is None or key_pts > cur_pts:
                # a keyframe lies between what is decoded and the target: jump to it
                container.seek(int(key_pts), stream=stream, backward=True, any_frame=False)
                decoder = container.decode(stream)
            picked = None
            if last is not None and (last.pts - target) * tb >= -tol:
                picked = last  # two wanted times on one frame (a source slower than 25 fps)
            try:
                for frame in ([] if picked is not None else decoder):
                    if frame.pts is None:
                        continue
                    cur_pts = frame.pts
                    last = frame
                    if (frame.pts - target) * tb >= -tol:
                        picked = frame
                        break
            except av.error.FFmpegError as err:
                raise VideoDecodeError(path, f"decoding failed near {at:g} s ({err})") from err
            if picked is None:
                # stream ended before the wanted time: accept the final frame only for the last row,
                # whose timestamp can fall short of the rounded duration
                if last is not None and i == n - 1 and (target - last.pts) * tb <= 1.0:
                    picked = last
                else:
                    raise VideoDecodeError(path, f"no frame at {at:g} s (expected {n} frames, got {i})")
            if size is not None:
                # AREA averages source pixels: no aliasing when shrinking HD frames to ~160 px
                picked = picked.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA")
            frames.append(picked.to_ndarray(format="rgb24"))
        return np.stack(frames)  # (T, H, W, 3)
    except av.error.FFmpegError as err:
        raise VideoDecodeError(path, f"decoding failed ({err})") from err
    finally:
        container.close()


def decode_all_then_subsample(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Reference implementation for tests and benchmarks: decode every frame, keep frame i at i s.

    Same sampling rule as `decode_1fps`, computed the slow, obvious way.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        kept: list[np.ndarray] = []
        first = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            first = frame.pts if first is None else first
            if float((frame.pts - first) * stream.time_base) >= len(kept) - _EPS:
                if size is not None:
                    frame = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA")
                kept.append(frame.to_ndarray(format="rgb24"))
        if not kept:
            raise VideoDecodeError(path, "no decodable frames")
        return np.stack(kept)  # (T, H, W, 3); may hold one row more than decode_1fps for a partial last second
    finally:
        container.close()


VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")


def video_files(root: str | Path, exts: tuple[str, ...] = VIDEO_EXTS) -> list[Path]:
    """Every file under `root` whose extension looks like a video, sorted (for `--dataset folder`)."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def write_video(path: str | Path, frames, fps: int = 30, gop: int | None = None, codec: str = "libx264") -> Path:
    """Encode RGB uint8 frames (an iterable of (H, W, 3), even H and W) to a video file with PyAV.

    `gop` is the keyframe interval in frames (None = the codec default, 250 for libx264). Used by the
    tests, the benchmarks and the synthetic data; written atomically.
    """

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")  # keep the suffix: it picks the container
    container = av.open(str(tmp), "w")
    try:
        stream = None
        for img in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=fps)
                stream.height, stream.width = img.shape[:2]
                stream.pix_fmt = "yuv420p"
                if gop:
                    stream.codec_context.gop_size = gop
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    tmp.replace(path)
    return path
