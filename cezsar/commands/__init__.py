"""Thin argparse front-ends, one file per `cezsar` subcommand."""
from __future__ import annotations


def print_skips(skipped: list[dict], total: int, noun: str, where: str) -> None:
    """A long job's skipped items, one line each, then how many (docs/errors.md: never a silent drop)."""
    for s in skipped:
        print(f"  skipped {s['video_id']}: {s['reason']}")
    if skipped:
        print(f"{len(skipped)} of {total} {noun}(s) skipped (listed above and in the report in {where})")
