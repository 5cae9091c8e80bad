"""The `cezsar` console script (also `python -m cezsar`): one subcommand per pipeline stage.

Each subcommand lives in `cezsar/commands/<name>.py` and exposes `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Command modules import heavy libraries (numpy, torch, av, sentence-transformers) inside
`run`, so `cezsar --help` stays fast.

`main` is the one place where errors meet the user (docs/errors.md): a bad argument or input becomes
one line `error: ...` on stderr and exit code 2 (usage) or 1 (data), the same for every command; an
unexpected exception becomes one line too, and `CEZSAR_DEBUG=1` shows its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings

from cezsar.errors import EXIT_DATA, EXIT_INTERRUPTED, EXIT_USAGE, LIBRARY_ERRORS, USAGE_ERRORS, InputError, UsageError

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
    "tables",
    "classify",
    "verify",
]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `cezsar <cmd>: error: ...; see cezsar <cmd> --help` (exit 2)."""

    def error(self, message: str):  # argparse's default prints the whole usage block first
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cezsar",
        description="CEZSAR: contrastive embedding for zero-shot action recognition (reproducibility package).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"cezsar.commands.{name.replace('-', '_')}")
        examples = "examples:\n" + "\n".join(f"  {line}" for line in mod.EXAMPLES)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, epilog=examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(err: BaseException) -> tuple[str, int]:
    """The one stderr line and the exit code for an exception that ends a command (docs/errors.md)."""
    code = EXIT_DATA
    if isinstance(err, InputError):
        code = err.exit_code
        text = str(err)
    elif isinstance(err, LIBRARY_ERRORS):  # the library's typed errors name the input (file, video, class)
        code = EXIT_USAGE if isinstance(err, USAGE_ERRORS) else EXIT_DATA
        text = str(err)
    elif isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    elif isinstance(err, MemoryError):
        text = "out of memory; use a smaller --batch or a machine with more memory"
    else:  # a bug, not a bad input: say so, and how to see where it happened
        text = (f"unexpected {type(err).__name__}: {err} (a bug in cezsar, please report it; "
                "CEZSAR_DEBUG=1 shows the traceback)")
    return "error: " + _one_line(text), code



def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit code (0 ok, 1 data error, 2 usage error, 130 interrupted)."""
    debug = os.environ.get("CEZSAR_DEBUG", "") not in ("", "0")
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        return _main(argv, debug)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings (a damaged cache shard, an empty mining result) as one `warning: ...` line each."""
    print("warning: " + _one_line(str(message)), file=sys.stderr if file is None else file)


def _main(argv: list[str] | None, debug: bool) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return EXIT_USAGE
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit:
        raise  # --help, or a command that chose its own exit
    except Exception as err:  # the one boundary: a user sees one line, never a traceback (module doc)
        line, code = error_line(err)
        if debug:
            traceback.print_exc()
        print(line, file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
