"""`cezsar doctor`: load every offline resource for real and say what is missing and how to fix it."""
from __future__ import annotations

import argparse
import json

HELP = "check every offline resource (loads it, runs one tiny inference); exit 1 if a required one is missing"
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar doctor',
    'cezsar doctor --json',
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    from cezsar.resources import doctor

    report = doctor()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, r in report["resources"].items():
            tag = "ok     " if r["ok"] else ("MISSING" if r["required"] else "absent ")
            print(f"{tag} {name:20s} {r['detail']}")
        print(f"torch {report['torch']}, CUDA {'available' if report['cuda'] else 'not available'}")
    return 0 if report["ok"] else 1
