"""Extraction: bad files are reported not fatal, reruns skip finished videos, shards, SIGKILL, the store."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cezsar.commands.extract import collect_videos
from cezsar.config import ExtractConfig
from cezsar.errors import FeatureError
from cezsar.encoders.features import FeatureStore
from cezsar.encoders.extraction import extract, shard_videos
from cezsar.encoders.video import write_video
from media import write_audio_only

PROJ_ROOT = Path(__file__).resolve().parents[1]
GOOD = {"clip_a": 3.0, "clip_b": 5.0, "clip_c": 2.0, "clip_d": 4.0, "tiny": 0.3}  # id -> seconds
BAD = {"zero": "empty file", "trunc": "not a readable video", "text": "not a readable video",
       "audio_only": "no video stream"}


class MockEncoder:
    """Deterministic stand-in for a CNN: features are pixel statistics, logits a fixed projection."""

    name, dim, num_classes, label_space, image_size = "mock", 12, 1000, "imagenet1k", 32

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.w = np.random.default_rng(0).standard_normal((12, 1000)).astype(np.float32)

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(self.delay)
        x = frames.astype(np.float32) / 255.0  # (T, H, W, 3)
        f = np.concatenate([x.mean((1, 2)), x.std((1, 2)), x[:, ::8, ::8].reshape(len(x), -1)[:, :6]], 1)  # (T, 12)
        return f.astype(np.float32), (f @ self.w).astype(np.float32)


def _clip(path: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * 25))
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    write_video(path, (np.roll(base, 3 * (j // 25), axis=1) for j in range(n)), fps=25, gop=25)


def make_corpus(root: Path, good: dict[str, float] = GOOD, bad: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, (vid, sec) in enumerate(sorted(good.items())):
        _clip(root / f"{vid}.mp4", sec, i)
    if bad:
        (root / "zero.mp4").write_bytes(b"")
        data = (root / "clip_b.mp4").read_bytes()
        (root / "trunc.mp4").write_bytes(data[: len(data) // 2])
        (root / "text.mp4").write_text("not a video\n" * 30)
        write_audio_only(root / "audio_only.mp4")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def _snapshot(out: Path) -> dict[str, bytes]:
    files = sorted(p for p in out.rglob("*") if p.is_file() and (p.suffix in (".npy", ".npz") or p.name == "features.json"))
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def test_bad_files_reported_not_fatal(corpus: Path, tmp_path: Path) -> None:
    videos = collect_videos("folder", corpus)
    rep = extract(videos, tmp_path / "out", ExtractConfig(topk_objects=4), encoder=MockEncoder(), progress=False)
    assert rep["done"] == rep["encoded"] == len(GOOD) and rep["reused"] == 0
    reasons = {s["video_id"]: s["reason"] for s in rep["skipped"]}
    assert set(reasons) == set(BAD)
    for vid, why in BAD.items():
        assert why in reasons[vid], (vid, reasons[vid])
    assert json.loads((tmp_path / "out" / "report.json").read_text())["skipped"] == rep["skipped"]
    assert rep["frames"] == sum(max(1, int(s)) for s in GOOD.values())
    store = FeatureStore(tmp_path / "out")
    assert store.ids == sorted(GOOD) and store.dim == MockEncoder.dim and store.label_space == MockEncoder.label_space
    for vid, sec in GOOD.items():
        x = store.load(vid)
        assert x.dtype == np.float32 and x.shape == (max(1, int(sec)), 12)
        idx, sc = store.objects(vid)
        assert idx.dtype == np.int32 and sc.dtype == np.float16 and idx.shape == sc.shape == (len(x), 4)
        assert (np.diff(sc.astype(np.float32), axis=1) <= 0).all()  # top-k by decreasing probability


def test_rerun_skips_finished_and_redoes_corrupt(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    videos = collect_videos("folder", corpus)
    extract(videos, out, encoder=MockEncoder(), progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    good_bytes = (out / "clip_b.npy").read_bytes()
    (out / "clip_b.npy").write_bytes(good_bytes[:100])  # corrupt one finished file
    time.sleep(0.01)
    rep = extract(videos, out, encoder=MockEncoder(), progress=False)
    assert rep["encoded"] == 1 and rep["reused"] == len(GOOD) - 1 and len(rep["skipped"]) == len(BAD)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert {n for n in before if after[n] != before[n]} == {"clip_b.npy"}
    assert (out / "clip_b.npy").read_bytes() == good_bytes
    with pytest.raises(ValueError, match="other features"):
        extract(videos, out, ExtractConfig(topk_objects=3), encoder=MockEncoder(), progress=False)


def test_two_shards_equal_unsharded(corpus: Path, tmp_path: Path) -> None:
    videos = collect_videos("folder", corpus)
    s0, s1 = shard_videos(videos, (0, 2)), shard_videos(videos, (1, 2))
    assert {v.video_id for v in s0}.isdisjoint(v.video_id for v in s1)
    assert sorted(v.video_id for v in s0 + s1) == sorted(v.video_id for v in videos)
    extract(videos, tmp_path / "full", encoder=MockEncoder(), progress=False)
    r0 = extract(videos, tmp_path / "sharded", shard=(0, 2), encoder=MockEncoder(), progress=False)
    r1 = extract(videos, tmp_path / "sharded", shard=(1, 2), encoder=MockEncoder(), progress=False)
    assert r0["videos"] + r1["videos"] == len(videos)
    assert (tmp_path / "sharded" / "report_shard1of2.json").exists()
    assert _snapshot(tmp_path / "full") == _snapshot(tmp_path / "sharded")
    with pytest.raises(ValueError, match="shard"):
        shard_videos(videos, (2, 2))


def test_parallel_decoders_equal_one_decoder(corpus: Path, tmp_path: Path) -> None:
    """Several decoders (worker processes) give the same files and the same report, in the same order."""
    videos = collect_videos("folder", corpus)
    one = extract(videos, tmp_path / "one", ExtractConfig(decoders=1), encoder=MockEncoder(), progress=False)
    three = extract(videos, tmp_path / "three", ExtractConfig(decoders=2), encoder=MockEncoder(), progress=False)
    assert (one["decoders"], three["decoders"]) == (1, 2)
    assert _snapshot(tmp_path / "one") == _snapshot(tmp_path / "three")
    assert one["skipped"] == three["skipped"] and len(one["skipped"]) == len(BAD)
    assert one["frames"] == three["frames"] > 0


_KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from test_features import MockEncoder
from cezsar.commands.extract import collect_videos
from cezsar.encoders.extraction import extract
extract(collect_videos("folder", {root!r}), {out!r}, encoder=MockEncoder(delay=0.4), progress=False)
"""


@pytest.mark.slow
def test_sigkill_midway_then_rerun(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus", {f"v{i:02d}": 2.0 + i % 3 for i in range(10)}, bad=False)
    out = tmp_path / "out"
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), root=str(corpus), out=str(out))
    env = {**os.environ, "PYTHONPATH": str(PROJ_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.npy"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert 3 <= len(finished) < 10, "the kill must land midway"
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=300)
    assert done.returncode == 0
    report = json.loads((out / "report.json").read_text())
    assert report["reused"] == len(finished) and report["done"] == 10
    assert all((out / n).stat().st_mtime_ns == m for n, m in finished.items())  # nothing redone
    extract(collect_videos("folder", corpus), tmp_path / "clean", encoder=MockEncoder(), progress=False)
    assert _snapshot(out) == _snapshot(tmp_path / "clean")  # identical to an uninterrupted run
    assert FeatureStore(out).ids == sorted(f"v{i:02d}" for i in range(10))  # leftover temp files ignored


def test_store_opens_released_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    dim = 4096  # the released BiT-M-R152x2 pre-logits
    for vid, t in [("v_abc", 7), ("v_def", 3)]:
        np.save(tmp_path / f"{vid}.npy", rng.standard_normal((t, dim)).astype(np.float32))
    store = FeatureStore(tmp_path)
    assert store.ids == ["v_abc", "v_def"] and store.dim == dim and store.label_space is None
    assert store.load("v_abc").shape == (7, dim) and store.length("v_def") == 3 and store.objects("v_abc") is None
    bad = rng.standard_normal((4, 4096)).astype(np.float32)
    bad[2, 5] = np.nan
    np.save(tmp_path / "v_nan.npy", bad)
    np.save(tmp_path / "v_dim.npy", np.zeros((4, 2048), np.float32))
    store = FeatureStore(tmp_path)
    with pytest.raises(FeatureError, match=r"v_nan\.npy.*NaN"):
        store.load("v_nan")
    with pytest.raises(FeatureError, match=r"v_dim\.npy.*2048"):
        store.load("v_dim")
    with pytest.raises(FeatureError, match="v_missing"):
        store.load("v_missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FeatureError, match="no <video_id>.npy"):
        FeatureStore(empty)


@pytest.mark.slow
def test_cli_extract_real_efficientnet(corpus: Path, tmp_path: Path, capsys) -> None:
    from cezsar.cli import main

    out = tmp_path / "feat"
    assert main(["extract", "--dataset", "folder", "--root", str(corpus), "--out", str(out), "--json",
                 "--no-progress", "--batch", "8"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["backbone"] == "efficientnet_lite0" and rep["done"] == len(GOOD)
    assert {s["video_id"] for s in rep["skipped"]} == set(BAD)
    store = FeatureStore(out)
    assert store.dim == 1280 and store.label_space == "imagenet1k"
    for vid, sec in GOOD.items():
        assert store.load(vid).shape == (max(1, int(sec)), 1280)
        assert store.objects(vid)[0].max() < 1000
