"""`cezsar extract`: 1-fps CNN features and object top-k for every video of a dataset (paper §3.2).

Many GPUs (docs/decisions.md §13): `torchrun --nproc-per-node N -m cezsar extract ...` splits the videos by
rank (each rank on `cuda:LOCAL_RANK`) and rank 0 merges the reports; a job array runs `--shard K/N` per task,
then `cezsar extract --merge-reports --out DIR`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cezsar.commands import add_progress, add_shard_options, merge_reports, print_skips
from cezsar.config import ExtractConfig
from cezsar.base import checks
from cezsar.errors import DataError, UsageError
from cezsar.formats import datasets as ds
from cezsar.formats.captions import read_activitynet

HELP = ("Encode every video of a dataset at 1 fps: <out>/<id>.npy (T, D), objects/<id>.npz, manifest.json, "
        "report.json.")
KINDS = ("activitynet", "ucf101", "kinetics400", "hmdb51", "folder")
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar extract --dataset ucf101 --root data/raw/synthactions/ucf101 --out data/interim/embedded/features/ucf101',
    'cezsar extract --dataset kinetics400 --root data/raw/kinetics400 --out data/interim/paper/features/kinetics400 --backbone bit_m_r152x2 --weights data/raw/weights/BiT-M-R152x2.npz --shard 0/4',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ExtractConfig()
    parser.add_argument("--dataset", choices=KINDS,
                        help="activitynet: <root>/*.json captions + video files under <root> named <video_id>.*; "
                        "ucf101/hmdb51/kinetics400: the standard layouts (cezsar.formats.datasets); folder: every "
                        "video file under --root, id = file name without extension")
    parser.add_argument("--root", help="dataset folder")
    parser.add_argument("--out", required=True, help="output folder for <id>.npy, objects/, report.json")
    parser.add_argument("--backbone", default=None,
                        help="efficientnet_lite0 (default, offline) | bit_m_r152x2 (needs --weights .npz) | "
                        "resnet152 (needs --weights .pth) | clip:<hub id or local folder> (CLIP image embeddings at "
                        "the model's own size, no objects); default: bit_m_r152x2 when --weights is a .npz")
    parser.add_argument("--weights", default=None, help="BiT-M-R152x2.npz or torchvision resnet152 .pth")
    add_shard_options(parser, "videos", "--out")
    parser.add_argument("--batch", type=int, default=d.batch, help=f"frames per CNN forward (default {d.batch})")
    parser.add_argument("--image-size", type=int, default=d.image_size,
                        help=f"square input side in px (default {d.image_size})")
    parser.add_argument("--max-seconds", type=float, default=None, help="encode at most this many seconds")
    parser.add_argument("--top-k", type=int, dest="topk", default=d.topk_objects,
                        help=f"object classes kept per second (default {d.topk_objects})")
    parser.add_argument("--released-preprocess", action="store_true",
                        help="the released extraction's frames: BGR fed as RGB, resize 256 + centre crop 224 (scaled "
                        "to --image-size); recorded in <out>/manifest.json")
    parser.add_argument("--released-sampling", action="store_true",
                        help="the released frame sampling: a 25-fps re-encode's frames at linspace(0, n-1, n//25) "
                        "instead of one per whole second; recorded in <out>/manifest.json")
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    parser.add_argument("--decoders", type=int, default=d.decoders,
                        help="videos decoded at once beside the CNN (default 0 = auto: 1 on a CPU, cores - 2 on a GPU)")
    add_progress(parser)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")


def collect_videos(kind: str, root: str | Path) -> list:
    """The videos of a dataset as cezsar.formats.datasets.Video records (path None when the file is absent)."""
    from cezsar.encoders.video import VIDEO_EXTS, video_files  # lazy: loads PyAV; `cezsar --help` runs without it

    root = Path(root)
    if not root.is_dir() and kind in ("folder", "activitynet"):
        raise ds.DatasetError(f"{root}: not a folder")
    if kind in ("ucf101", "hmdb51", "kinetics400"):
        return list(ds.load_dataset(kind, root).videos)
    files: dict[str, Path] = {}
    for p in video_files(root):
        if p.stem in files:
            raise ds.DatasetError(f"two videos share the id {p.stem!r}: {files[p.stem]} and {p}")
        files[p.stem] = p
    # a folder named like a video ("clip.mp4/") or a symbolic link whose target is gone is kept as an item, so
    # extraction lists it as skipped with its reason instead of leaving it out without a word (video.decode_1fps
    # names it)
    for p in sorted(q for q in root.rglob("*") if q.suffix.lower() in VIDEO_EXTS
                    and (q.is_dir() or (q.is_symlink() and not q.exists()))):
        files.setdefault(p.stem, p)
    if kind == "folder":
        return [ds.Video(vid, p, "") for vid, p in sorted(files.items())]
    ids: set[str] = set()
    for js in sorted(root.glob("*.json")):
        ids.update(read_activitynet(js).durations)
    if not ids:  # no captions next to the videos: take every video file
        ids = set(files)
    return [ds.Video(vid, files.get(vid), "") for vid in sorted(ids)]


def check_inputs(args: argparse.Namespace) -> None:
    """Options and paths checked before the CNN is loaded (docs/errors.md); UsageError, exit 2."""

    missing = [o for o in ("dataset", "root") if getattr(args, o) is None]
    if missing:
        raise UsageError("cezsar extract: give " + " and ".join("--" + o for o in missing) +
                                " (or --merge-reports --out DIR)")
    if args.dataset in ("folder", "activitynet", "hmdb51"):
        checks.require_dir(args.root, "--root", "dataset folder")
    else:
        checks.require_path(args.root, "--root", "dataset folder or file")
    checks.require_output_dir(args.out, "--out")
    for option in ("batch", "image_size", "topk"):
        checks.require_positive(getattr(args, option), "--" + option.replace("_", "-"))
    if args.decoders < 0:
        raise UsageError(f"--decoders {args.decoders}: must be 0 (auto) or more")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise UsageError(f"--max-seconds {args.max_seconds}: must be more than 0")
    if args.weights is not None:
        checks.require_file(args.weights, "--weights", "weights file")
    checks.require_device(args.device)
    if args.released_preprocess and (args.backbone or "").startswith("clip:"):
        raise UsageError("--released-preprocess: CLIP backbones have their own preprocessing")
    meta = Path(args.out) / "features.json"
    if meta.exists():  # a resumed extraction compares its settings with this file
        try:
            checks.read_json_file(meta, None, "features.json")
        except DataError as err:
            raise DataError(f"{err}; delete it (the .npy files are checked on rerun) or use another --out")


def run(args: argparse.Namespace) -> int:
    from cezsar.base import distributed  # lazy: loads torch; `cezsar --help` runs without it

    if args.merge_reports:
        return merge_reports(args.out, "video")
    try:
        return extract_videos(args)
    finally:
        distributed.cleanup()


def extract_videos(args: argparse.Namespace) -> int:
    from cezsar.base import distributed  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.encoders.factory import frame_encoder  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.encoders.extraction import extract  # lazy: loads torch; `cezsar --help` runs without it

    check_inputs(args)
    backbone = args.backbone or ("bit_m_r152x2" if (args.weights or "").endswith(".npz") else "efficientnet_lite0")
    cfg = ExtractConfig(backbone=backbone, weights=args.weights, image_size=args.image_size, batch=args.batch,
                        topk_objects=args.topk, max_seconds=args.max_seconds, decoders=args.decoders,
                        released_preprocess=args.released_preprocess, released_sampling=args.released_sampling)
    videos = collect_videos(args.dataset, args.root)
    extra = {"preprocess": "released"} if args.released_preprocess else {}
    encoder = frame_encoder(backbone, args.weights, device=args.device, image_size=args.image_size, batch=args.batch,
                            **extra)
    try:
        report = extract(videos, args.out, cfg, shard=args.shard, encoder=encoder, progress=args.progress)
    except ValueError as err:  # an output folder that holds other features; duplicate ids
        raise DataError(" ".join(str(err).split())) from err
    if not distributed.is_main():  # rank 0 prints the merged report of all ranks
        return 0
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['done']}/{report['videos']} videos done ({report['encoded']} encoded, {report['reused']} "
          f"reused), {len(report['skipped'])} skipped, {report['frames']} frames at {report['frames_per_s']} "
          f"frames/s -> {args.out}")
    print_skips(report["skipped"], report["videos"], "video", args.out)
    return 0
