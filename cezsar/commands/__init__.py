"""Thin argparse front-ends, one file per `cezsar` subcommand.

A command module imports at its top what parsing needs and the library modules that load no numpy, yaml or
torch; those that do (numpy, torch, PyAV, the text models) are imported inside `run`, each marked `# lazy:`, so
`cezsar --help` and a usage error answer before any of them loads (tests/test_cli_convention.py keeps it so).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cezsar.base import checks
from cezsar.encoders import shards
from cezsar.errors import DataError


def print_skips(skipped: list[dict], total: int, noun: str, where: str) -> None:
    """A long job's skipped items, one line each, then how many (docs/errors.md: never a silent drop)."""
    for s in skipped:
        print(f"  skipped {s['video_id']}: {s['reason']}")
    if skipped:
        print(f"{len(skipped)} of {total} {noun}(s) skipped (listed above and in the report in {where})")


def shard_arg(text: str) -> tuple[int, int]:
    """argparse type of `--shard K/N` (extract, objects): shard K of N, 0 <= K < N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--shard must look like K/N (e.g. 0/4), got {text!r}") from err
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def int_at_least(minimum: int, maximum: int | None = None):
    """argparse type: a whole number in [minimum, maximum]; a bad one is a usage error naming the option
    ("argument --seed: must be ≥ 0, got -3")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            top = "" if maximum is None else f" and ≤ {maximum}"
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}{top}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(low: float, high: float = float("inf"), low_open: bool = False, high_open: bool = False):
    """argparse type: a finite number in the interval from `low` to `high` (open ends as flagged)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = value == value and abs(value) != float("inf") and (value > low if low_open else value >= low) \
            and (value < high if high_open else value <= high)
        if not ok:
            lo = f"{'>' if low_open else '≥'} {low:g}"
            hi = "" if high == float("inf") else f" and {'<' if high_open else '≤'} {high:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {lo}{hi}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


SEED = int_at_least(0, 2**32 - 1)  # numpy's seeds: 0 .. 2**32 - 1


def add_shard_options(parser: argparse.ArgumentParser, items: str, out: str) -> None:
    """`--shard K/N` and `--merge-reports` (extract, objects): `items` names what is split ("videos", "stacks"),
    `out` the folder the shard reports are merged in."""
    parser.add_argument("--shard", type=shard_arg, default=None, metavar="K/N",
                        help=f"process only shard K of N ({items} at sorted-id position = K mod N), e.g. one task of a "
                        "job array; under torchrun the default is the rank's shard, and rank 0 merges the reports")
    parser.add_argument("--merge-reports", action="store_true",
                        help=f"only merge the shards' report_shard<k>of<n>.json in {out} into report.json (after a "
                        "job array); exit 1 naming the shards without a report")


def add_progress(parser: argparse.ArgumentParser) -> None:
    """`--progress` / `--no-progress`, the same in every command: bars on by default when stderr is a terminal
    (off in logs and pipes, where a bar's redraws are noise)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                        help="progress bars (default: on when stderr is a terminal)")


def merge_reports(out: str, noun: str) -> int:
    """`--merge-reports` (extract, objects): report.json from the shard reports in `out`; a missing shard's
    report is a DataError naming it (exit 1)."""

    checks.require_dir(out, "--out", "output folder")
    try:
        report = shards.merge_reports(out)
    except shards.ShardReportsMissing as err:
        raise DataError(str(err)) from err
    print(f"merged {report['shards']} shard reports: {report['done']}/{report['videos']} {noun}s done, "
          f"{len(report['skipped'])} skipped -> {Path(out) / 'report.json'}")
    print_skips(report["skipped"], report["videos"], noun, out)
    return 0
