"""The `cezsar` console script (also `python -m cezsar`): one subcommand per pipeline stage.

Each subcommand lives in `cezsar/commands/<name>.py` and exposes `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Command modules import heavy libraries (torch, av, sentence-transformers) inside
`run`, so `cezsar --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module under cezsar.commands (dashes become underscores)
COMMANDS = [
    "doctor",
    "setup",
    "synth",
    "check-data",
    "extract",
    "objects",
    "mine",
    "train",
    "evaluate",
    "classify",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cezsar",
        description="CEZSAR: contrastive embedding for zero-shot action recognition (reproducibility package).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"cezsar.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("cezsar.commands"):
                continue  # a stage not built yet; keep the others usable
            raise
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
