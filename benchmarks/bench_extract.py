"""Extraction speed as ratios measured in one run (docs/decisions.md §11): prints one JSON document.

- pipeline_vs_cnn_only: frames/s of `extraction.extract` (seek-decoding in a prefetch thread, CNN, atomic
  writes) over frames/s of the CNN alone on pre-decoded frames. Goal >= 0.8 (decoding hidden behind the CNN).
- kept frames/s per source type (`--sources`: resolution and keyframe interval, e.g. 360p:30,720p:250): the
  pipeline against "CNN alone with the same top-k" (`FrameEncoder.encode_topk` in fixed-size batches on
  pre-decoded frames: the objects' top-k and log-sum-exp where the CNN runs, only the rows kept copied back),
  and which decoder ran (PyAV, one FFmpeg thread per decoder process).
- decode_speedup: seconds of the reference decoder (decode every frame, keep one per second) over seconds
  of `video.decode_1fps`, on the same clips. Goal >= 3.
- pipeline_speedup: the reference pipeline (decode everything, then the CNN, no overlap) over ours.

Clips are generated here: 30-fps, 640x360 by default, with a keyframe every second (`--gop 30`, common
for streaming encodes) or libx264's default 250-frame GOP (`--gop 0`) where no decoder can skip much.
Absolute frames/s depend on the machine; only a GPU run (with its device named) reports them as such.

    python benchmarks/bench_extract.py [--clips 4 --seconds 8 --gop 30] [--backbone bit --device cuda] [--threads 1]
    python benchmarks/bench_extract.py --sources 360p:30,360p:250,720p:30,720p:250 --clips 4 --seconds 10
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cezsar.encoders.backbones import FrameEncoder, get_encoder  # noqa: E402
from cezsar.config import ExtractConfig  # noqa: E402
from cezsar.formats.datasets import Video  # noqa: E402
from cezsar.encoders.extraction import extract  # noqa: E402
from cezsar.encoders.video import decode_1fps, decode_all_then_subsample, write_video  # noqa: E402


def make_clips(root: Path, n: int, seconds: float, fps: int, size: tuple[int, int], gop: int | None,
               distinct: int | None = None) -> list[Path]:
    """Moving textured clips (a real photograph panning) so the codec does real work. With `distinct`, only that
    many are encoded and the rest are hard links to them (encoding, not decoding, is the slow part of a benchmark
    that needs thousands of kept frames; every copy is still decoded in full)."""
    from skimage import data, transform

    w, h = size
    photo = (transform.resize(data.chelsea(), (h, 2 * w), anti_aliasing=True) * 255).astype(np.uint8)
    paths = []
    for i in range(n):
        if distinct and i >= distinct:
            paths.append(root / f"clip{i:02d}.mp4")
            os.link(paths[i % distinct], paths[-1])
            continue
        frames = (np.roll(photo, -(j * 4 + 37 * i), axis=1)[:, :w] for j in range(int(seconds * fps)))
        paths.append(write_video(root / f"clip{i:02d}.mp4", frames, fps=fps, gop=gop))
    return paths


def timed(fn, repeat: int = 1, cpu: list | None = None) -> float:
    """Best wall time of `repeat` calls; appends the CPU time of this process for that call to `cpu`."""
    best, best_cpu = float("inf"), 0.0
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall = time.perf_counter() - t
        if wall < best:
            best, best_cpu = wall, time.process_time() - c
    if cpu is not None:
        cpu.append(best_cpu)
    return best


def bit_random(device: str, image_size: int, batch: int, units: tuple[int, ...] | None = None, width: int = 2,
               num_classes: int = 21843) -> FrameEncoder:
    """BiT-M-R152x2 with random weights (speed only: no weights are available here), its weight standardisation
    folded as `backbones.bit_m_r152x2` does; `units`/`width` give a smaller BiT for CPU smoke runs."""
    from cezsar.encoders.bit import R152_UNITS, ResNetV2, fold_standardisation

    model = fold_standardisation(ResNetV2(units or R152_UNITS, width, num_classes).eval())
    return FrameEncoder("bit_m_r152x2", model, model.features, model.head, model.dim, num_classes,
                        "imagenet21k" if num_classes == 21843 else "imagenet1k",
                        image_size, (0.5,) * 3, (0.5,) * 3, device, batch)


def cnn_alone_topk(enc: FrameEncoder, decoded: list[np.ndarray], k: int = 5) -> None:
    """The CNN alone with the pipeline's top-k: pre-decoded frames in batches of exactly `enc.batch` frames
    across clips (the last one padded on a GPU, as `extraction.extract` does), waiting only for the last copy."""
    frames = np.concatenate(decoded)  # (N, S, S, 3)
    event = None
    for i in range(0, len(frames), enc.batch):
        b = frames[i:i + enc.batch]
        if enc.device.type == "cuda" and len(b) < enc.batch:
            b = np.concatenate([b, np.zeros((enc.batch - len(b), *b.shape[1:]), b.dtype)])
        event = enc.encode_topk(b, k)[3]
    if event is not None:
        event.synchronize()


def kept_frames_per_s(enc: FrameEncoder, root: Path, source: str, clips: int, seconds: float, fps: int,
                      decoders: int = 0, distinct: int | None = None) -> dict:
    """One source type ("360p:30" = 640x360 with a keyframe every 30 frames): kept frames/s of `extract`
    against the CNN alone with the same top-k, on `clips` generated clips (`distinct` of them encoded)."""
    res, gop = source.split(":")
    h = int(res.rstrip("p"))
    w = (h * 16 // 9) // 2 * 2
    folder = root / source.replace(":", "_")
    folder.mkdir(parents=True, exist_ok=True)
    paths = make_clips(folder, clips, seconds, fps, (w, h), int(gop) or None, distinct)
    s = (enc.image_size, enc.image_size)
    decoded = [decode_1fps(p, size=s) for p in paths]
    frames = sum(len(d) for d in decoded)
    cnn_alone_topk(enc, decoded[:1])  # warm-up at the batch shape
    t_cnn = timed(lambda: cnn_alone_topk(enc, decoded), 2)
    t0 = time.perf_counter()
    rep = extract([Video(p.stem, p, "") for p in paths], folder / "out",
                  ExtractConfig(batch=enc.batch, image_size=enc.image_size, decoders=decoders), encoder=enc,
                  progress=False)
    t_pipe = time.perf_counter() - t0
    assert rep["frames"] == frames and not rep["skipped"], rep["skipped"]
    return {"source": source, "resolution": f"{w}x{h}", "gop": int(gop) or 250, "frames": frames,
            "decoder": f"pyav, 1 FFmpeg thread in each of {rep['decoders']} decoder processes" if rep["decoders"] > 1
            else "pyav, one decoder thread (FFmpeg's own threads)", "decoders": rep["decoders"],
            "kept_frames_per_s": round(frames / t_pipe, 1), "cnn_alone_topk_frames_per_s": round(frames / t_cnn, 1),
            "pipeline_vs_cnn_alone_topk": round(t_cnn / t_pipe, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--gop", type=int, default=30, help="keyframe interval in frames; 0 = libx264 default (250)")
    ap.add_argument("--backbone", default="efficientnet_lite0", help="efficientnet_lite0 | bit (random weights)")
    ap.add_argument("--image-size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--decoders", type=int, default=0, help="decoding threads in the pipeline (0 = auto, as extract)")
    ap.add_argument("--repeat", type=int, default=2, help="best of N for the decode timings")
    ap.add_argument("--distinct", type=int, default=0,
                    help="--sources: encode only this many clips, the others hard links to them (0 = all distinct)")
    ap.add_argument("--sources", default="",
                    help="instead of the single run: kept frames/s per source, e.g. 360p:30,360p:250,720p:30,720p:250")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads for the CNN (default: torch's, one per core); fewer leave cores to decoding")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.backbone.startswith("bit"):
        enc = bit_random(args.device, args.image_size, args.batch)
    else:
        enc = get_encoder(args.backbone, device=args.device, image_size=args.image_size, batch=args.batch)
    device = torch.cuda.get_device_name(0) if enc.device.type == "cuda" else \
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    if args.sources:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [kept_frames_per_s(enc, Path(tmp), src, args.clips, args.seconds, args.fps, args.decoders,
                                      args.distinct or None) for src in args.sources.split(",")]
        print(json.dumps({"benchmark": "extract_sources", "device": device, "backbone": enc.name,
                          "image_size": enc.image_size, "batch": args.batch, "precision": enc.precision,
                          "clips": args.clips, "distinct_clips": args.distinct or args.clips,
                          "seconds_per_clip": args.seconds, "sources": rows,
                          "goal": ">= 1500 kept frames/s (BiT-M-R152x2, 224 px, 360p:30) or >= 0.8 x CNN alone "
                                  "with the same top-k"}, indent=1))
        return
    s = (enc.image_size, enc.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips = make_clips(root, args.clips, args.seconds, args.fps, (args.width, args.height), args.gop or None)
        decoded = [decode_1fps(p, size=s) for p in clips]
        frames = sum(len(d) for d in decoded)
        enc.encode(decoded[0])  # warm-up at a clip's batch shape (lazy init, cuDNN autotune)
        sync = torch.cuda.synchronize if enc.device.type == "cuda" else (lambda: None)

        def cnn_only() -> None:
            for d in decoded:
                enc.encode(d)
            sync()

        cpu: list = []
        t_cnn = timed(cnn_only, cpu=cpu)
        t_seek = timed(lambda: [decode_1fps(p, size=s) for p in clips], args.repeat, cpu=cpu)
        t_ref = timed(lambda: [decode_all_then_subsample(p, size=s) for p in clips], args.repeat)
        ref_frames = [decode_all_then_subsample(p)[: len(d)] for p, d in zip(clips, decoded)]

        def reference_pipeline() -> None:
            for p, d in zip(clips, decoded):
                enc.encode(decode_all_then_subsample(p, size=s)[: len(d)])
            sync()

        t_ref_pipe = timed(reference_pipeline)
        videos = [Video(p.stem, p, "") for p in clips]
        t0 = time.perf_counter()
        rep = extract(videos, root / "out", ExtractConfig(batch=args.batch, image_size=enc.image_size, decoders=args.decoders),
                      encoder=enc, progress=False)
        t_pipe = time.perf_counter() - t0
        assert rep["frames"] == frames and not rep["skipped"]
        same = all(np.array_equal(decode_1fps(p), r) for p, r in zip(clips, ref_frames))

    out = {
        "benchmark": "extract",
        "device": device,
        "backbone": enc.name, "image_size": enc.image_size, "batch": args.batch,
        "clips": args.clips, "seconds_per_clip": args.seconds, "fps": args.fps,
        "resolution": f"{args.width}x{args.height}", "gop": args.gop or 250, "frames": frames,
        "cnn_only_frames_per_s": round(frames / t_cnn, 1),
        "pipeline_frames_per_s": round(frames / t_pipe, 1),
        "pipeline_vs_cnn_only": round(t_cnn / t_pipe, 3), "decoders": rep["decoders"],
        # what full overlap could reach here: the CNN's and the decoder's CPU time spread over every core
        # (on a CPU-only machine both need the same cores; on a GPU machine the CNN leaves them free)
        "cnn_cpu_ms_per_frame": round(1000 * cpu[0] / frames, 2),
        "decode_cpu_ms_per_frame": round(1000 * cpu[1] / frames, 2),
        "overlap_ceiling": round(t_cnn / max(t_cnn, (cpu[0] + cpu[1]) / (os.cpu_count() or 1)), 3),
        "decode_seek_s": round(t_seek, 3), "decode_reference_s": round(t_ref, 3),
        "decode_speedup": round(t_ref / t_seek, 2),
        "pipeline_speedup": round(t_ref_pipe / t_pipe, 2),
        "seek_equals_reference": same,
        "goals": {"pipeline_vs_cnn_only": ">= 0.8", "decode_speedup": ">= 3"},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
