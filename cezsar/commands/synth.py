"""`cezsar synth --out DIR`: generate the embedded SynthActions dataset (docs/decisions.md §6)."""
from __future__ import annotations

import argparse
import json
import time

from cezsar.commands import SEED
from cezsar.base import checks

HELP = "Generate the embedded SynthActions dataset (ActivityNet/UCF-101/Kinetics-400 forms) from a seed."
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar synth --out data/raw/synthactions --seed 0 --size small',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed; the same seed gives the same dataset")
    parser.add_argument("--size", choices=("small", "default"), default="default",
                        help="small: a few videos per part, for tests; default: the size run_all.sh uses")
    parser.add_argument("--workers", type=int, default=None, help="render processes (default: up to 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    from cezsar.formats.synthetic import generate  # lazy: loads PIL; `cezsar --help` runs without it

    checks.require_output_dir(args.out, "--out")
    checks.require_positive(args.workers, "--workers")

    start = time.perf_counter()
    summary = generate(args.out, seed=args.seed, size=args.size, workers=args.workers)
    summary["seconds_taken"] = round(time.perf_counter() - start, 2)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"SynthActions ({args.size}, seed {args.seed}) in {summary['out']}: "
          f"{summary['bytes'] / 1e6:.1f} MB in {summary['seconds_taken']:.1f} s")
    for part, n in summary["videos"].items():
        print(f"  {part:12s} {n:4d} videos, {summary['seconds'][part]:8.1f} s of video")
    print(f"  {summary['segments']} captioned segments; test classes: ucf101 {summary['classes']['ucf101']}, "
          f"kinetics400 {summary['classes']['kinetics400']}")
    return 0
