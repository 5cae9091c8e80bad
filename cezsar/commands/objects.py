"""`cezsar objects`: per-second ImageNet objects for a folder of features that has none (paper §3.5)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cezsar.commands import add_progress, add_shard_options, merge_reports, print_skips
from cezsar.base import checks
from cezsar.config import ExtractConfig
from cezsar.errors import DataError, FeatureError, UsageError

HELP = ("Objects for a folder of pooled features (e.g. the released BiT-M-R152x2 .npy stacks) through the "
        "backbone's own linear head: <out>/<id>.npz, objects.json, report.json. Resumable.")
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar objects --features data/raw/activitynet/features_bit --weights data/raw/weights/BiT-M-R152x2.npz --out data/interim/paper/objects/activitynet',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", help="folder of <video_id>.npy stacks (T, D)")
    parser.add_argument("--weights", default=None,
                        help="the backbone's weights file holding its head: BiT-M-R152x2.npz (21,843 classes), "
                        "a torchvision resnet152 .pth, or an EfficientNet-Lite0 state dict; default: the offline "
                        "EfficientNet-Lite0 weights (for features extracted with it)")
    parser.add_argument("--out", default=None,
                        help="output folder (default <features>/objects; use another folder to leave a raw "
                        "data folder untouched, and pass it on as the objects folder)")
    topk = ExtractConfig.topk_objects  # the objects extraction keeps, computed here from the features instead
    parser.add_argument("--top-k", type=int, dest="topk", default=topk, help=f"object classes kept per second (default {topk})")
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    add_shard_options(parser, "stacks", "--out (default <features>/objects)")
    add_progress(parser)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")


def run(args: argparse.Namespace) -> int:
    from cezsar.base import distributed  # lazy: loads torch; `cezsar --help` runs without it

    if args.features is None and not (args.merge_reports and args.out):
        raise UsageError("cezsar objects: give --features (or --merge-reports --out DIR)")
    if args.merge_reports:
        return merge_reports(args.out or str(Path(args.features) / "objects"), "stack")
    try:
        return objects(args)
    finally:
        distributed.cleanup()


def objects(args: argparse.Namespace) -> int:
    from cezsar.base import distributed  # lazy: loads torch; `cezsar --help` runs without it
    # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.encoders.feature_objects import load_head, objects_from_features
    from cezsar.encoders.feature_folder import feature_folder  # lazy: loads numpy; `cezsar --help` runs without it

    checks.require_positive(args.topk, "--top-k")
    checks.require_device(args.device)
    reason = feature_folder(args.features).objects_off_reason
    if reason:  # a CLIP's features: no ImageNet head exists for them
        raise UsageError(f"--features {args.features}: {reason}; objects of these videos can come from "
                                "another backbone: `cezsar objects` on its features, then --objects at mining and "
                                "evaluation")
    if args.weights:
        checks.require_file(args.weights, "--weights", "weights file")
    if args.out:
        checks.require_output_dir(args.out, "--out")
    try:
        head = load_head(args.weights)
        report = objects_from_features(args.features, head, args.out, topk=args.topk, device=args.device,
                                       progress=args.progress, shard=args.shard)
    except (FeatureError, ValueError) as err:
        raise DataError(" ".join(str(err).split())) from err
    if not distributed.is_main():  # rank 0 prints the merged report of all ranks
        return 1 if report["skipped"] else 0
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['done']}/{report['videos']} stacks have objects ({report['computed']} computed, "
              f"{report['reused']} reused), {len(report['skipped'])} skipped, label space {report['label_space']} "
              f"-> {report['out']}")
        print_skips(report["skipped"], report["videos"], "stack", report["out"])
    return 1 if report["skipped"] else 0
