"""`cezsar tables`: Tables 1 and 2 (.md and .csv) from notebook 05's results.json and/or `cezsar evaluate` results
of the CLIP rows; rows not computed read "needs weights" (docs/decisions.md §14)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cezsar.base import checks
from cezsar.errors import DataError, UsageError

HELP = "Tables 1/2 from notebook 05's results.json, adding `cezsar evaluate` results of the CLIP rows (--add)."
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar tables --results runs/embedded/results.json --out runs/cli/tables',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=None,
                        help="notebook 05's runs/<set>/results.json (the O, VE, VE + O rows); omit for the CLIP "
                        "rows alone")
    parser.add_argument("--add", nargs="+", default=[], metavar="EVAL.json",
                        help="results files of `cezsar evaluate --method clip` (either --prompts) and of "
                        "`--method cezsar` with a model trained on CLIP features, one per protocol")
    parser.add_argument("--out", required=True, help="folder for table1.{md,csv} and table2.{md,csv}")
    parser.add_argument("--json", action="store_true", help="print {table1, table2} markdown as one JSON document")


def run(args: argparse.Namespace) -> int:
    # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.harness.report import add_clip_results, write_tables

    if args.results is None and not args.add:
        raise UsageError("give --results (notebook 05's results.json), --add (evaluate results), or both")
    results = checks.read_json_file(args.results, "--results", "results.json") if args.results else None
    added = [checks.read_json_file(p, "--add", "evaluate results file") for p in args.add]
    checks.require_output_dir(args.out, "--out")
    try:
        merged = add_clip_results(results, added)
    except (ValueError, KeyError) as err:
        raise DataError(f"--add: {err}") from err
    for kind in ("ucf101", "kinetics400"):
        merged["datasets"].setdefault(kind, {"methods": {}, "source": ""})
    md = write_tables(merged, Path(args.out))
    print(json.dumps(md) if args.json else "\n".join(md.values()))
    return 0
