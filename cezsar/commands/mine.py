"""`cezsar mine --captions JSON --out FILE.npz`: hard negative mining into a triplet file (paper §3.4)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings

from cezsar.commands import SEED, add_progress, float_in, int_at_least
from cezsar.config import MiningConfig
from cezsar.base import checks
from cezsar.base.checks import clear_stale_temps
from cezsar.errors import DataError
from cezsar.formats.captions import read_activitynet

HELP = "Mine (window, positive, negative) triplets from ActivityNet-form captions with the tau rule (paper §3.4)."
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar mine --captions data/raw/synthactions/activitynet/train.json --features data/interim/embedded/features/activitynet --out data/processed/embedded/cli/triplets.npz',
    'cezsar mine --captions data/raw/activitynet/train.json --features data/raw/activitynet/features_bit --objects data/interim/paper/objects/activitynet --object-positives 2 --out data/processed/paper/triplets.npz',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = MiningConfig()
    parser.add_argument("--captions", required=True, help="ActivityNet Captions-form JSON (e.g. train.json)")
    parser.add_argument("--features", default=None,
                        help="feature folder of `cezsar extract` (objects/ gives object positives); "
                        "omitted = captions-only")
    parser.add_argument("--objects", default=None,
                        help="objects folder of `cezsar objects --out` (for features without objects/, e.g. the "
                        "released ones); default <features>/objects")
    parser.add_argument("--out", required=True, help="triplet file to write (.npz)")
    parser.add_argument("--tau", type=float_in(0, 2), default=d.tau, help=f"similar if cos > 1 - tau (default {d.tau})")
    parser.add_argument("--negatives", type=int, default=d.n_negatives, help=f"negatives per positive "
                        f"(default {d.n_negatives})")
    parser.add_argument("--rule", choices=("released", "different"), default=d.rule,
                        help="released: negatives have cos > 1 - tau (default); different: cos <= 1 - tau")
    parser.add_argument("--exclude-same-video", action="store_true",
                        help="never draw a negative that captions the anchor's own video")
    parser.add_argument("--max-sim", type=float, default=d.max_sim,
                        help="paraphrase guard: drop candidates with cos >= this")
    parser.add_argument("--object-positives", type=int_at_least(0), default=d.object_positives,
                        help=f"object sentences per window added as positives (default {d.object_positives}, "
                        "params/embedded.yaml; paper §3.4: 2; 0 = captions only; needs objects)")
    parser.add_argument("--no-object-negatives", action="store_true",
                        help="object sentences are not negatives (default: they are; see MiningConfig)")
    parser.add_argument("--windows", type=int, default=d.windows_per_segment,
                        help=f"random windows per segment (default {d.windows_per_segment})")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction,
                        help=f"share of videos held out for validation (default {d.val_fraction})")
    parser.add_argument("--strategy", choices=("auto", "exact", "sample"), default="auto",
                        help="exact: every positive x candidate cosine; sample: random candidate batches per "
                        "positive with an exact fallback for short ones; auto (default): exact up to 20,000 "
                        "candidates, sample above")
    parser.add_argument("--block", type=int, default=d.block, help=f"similarity rows per block (default {d.block})")
    parser.add_argument("--text-model", default="minilm", help="minilm (default), mpnet, or a local model folder")
    parser.add_argument("--cache-dir", default=None, help="sentence cache root (default: the package cache)")
    parser.add_argument("--seed", type=SEED, default=d.seed, help=f"seed (default {d.seed})")
    g = parser.add_argument_group("released-code and paper-wording switches (docs/fidelity.md)")
    g.add_argument("--split", choices=("video", "triplet"), default=d.split,
                   help="validation split by video (default) or by triplet at random (released, with --val-fraction 0.3)")
    g.add_argument("--draw", choices=("uniform", "released"), default=d.draw,
                   help="negatives: distinct, uniform (default) or with replacement from the list of positive "
                   "entries (released)")
    g.add_argument("--released-objects", action="store_true",
                   help="object positives from all-sense definition fragments (> 5 words, cut to 20) of the top-5 "
                   "objects over 10 s from a random whole second of the segment")
    g.add_argument("--far-from-all", action="store_true",
                   help="paper §3.4: a negative passes the rule for its positive and is far "
                   "(cos <= 1 - tau) from the other positives of its window")
    g.add_argument("--object-tau", action="store_true",
                   help="paper §3.4: object positives must pass the similarity rule (cos > 1 - tau) too")
    parser.add_argument("--device", default="auto", help="torch device of SBERT: auto (CUDA when present, default), "
                        "cpu or cuda")
    add_progress(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON document")


def check_inputs(args: argparse.Namespace, cfg) -> None:
    """Options and paths checked before any sentence is encoded (docs/errors.md); UsageError, exit 2."""

    checks.require_device(args.device)
    checks.require_positive(cfg.n_negatives, "--negatives")
    checks.require_positive(cfg.windows_per_segment, "--windows")
    checks.require_positive(cfg.block, "--block")
    checks.require_range(args.tau, "--tau", 0.0, 2.0)
    checks.require_range(args.val_fraction, "--val-fraction", 0.0, 0.9)
    if args.max_sim is not None:
        checks.require_range(args.max_sim, "--max-sim", -1.0, 1.0)
    checks.require_file(args.captions, "--captions", "captions file", "give an ActivityNet Captions-form JSON")
    if args.features:
        checks.require_dir(args.features, "--features", "feature folder", "give the --out folder of `cezsar extract`")
    checks.require_output(args.out, "--out")


def run(args: argparse.Namespace) -> int:
    from cezsar.encoders.factory import text_encoder  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.base.devices import resolve_device  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.encoders.feature_folder import feature_folder  # lazy: loads numpy; `cezsar --help` runs without it
    from cezsar.triplet_mining.mine import mine  # lazy: loads numpy; `cezsar --help` runs without it

    cfg = MiningConfig(tau=args.tau, n_negatives=args.negatives, rule=args.rule,
                       object_positives=args.object_positives, object_negatives=not args.no_object_negatives,
                       exclude_same_video=args.exclude_same_video, max_sim=args.max_sim,
                       windows_per_segment=args.windows, val_fraction=args.val_fraction, block=args.block,
                       seed=args.seed, split=args.split, draw=args.draw, released_objects=args.released_objects,
                       far_from_all=args.far_from_all, object_tau=args.object_tau)
    check_inputs(args, cfg)
    captions = read_activitynet(args.captions)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(captions.problems.items()))
    if not captions.segments:
        raise DataError(f"--captions {args.captions}: no usable captioned segment in {len(captions.durations)} "
                        f"video(s) ({counts or 'no entries'}); nothing to mine")
    if counts:  # repairs and drops are counted, never silent (docs/errors.md)
        print(f"note: {args.captions}: {counts} (`cezsar check-data activitynet {args.captions}` lists examples)",
              file=sys.stderr)
    store = feature_folder(args.features, objects=args.objects) if args.features else None
    reason = store.objects_off_reason if store is not None else None
    if reason and (cfg.object_positives > 0 or cfg.released_objects):  # CLIP features: captions-only mining
        print(f"note: {reason}; mining captions only (--object-positives 0)", file=sys.stderr)
        cfg = dataclasses.replace(cfg, object_positives=0, released_objects=False)
    encoder = text_encoder(args.text_model, cache_dir=args.cache_dir, device=str(resolve_device(args.device)))
    with warnings.catch_warnings():  # an empty result is reported below as the error it is, not twice
        warnings.filterwarnings("ignore", message="mine: 0 triplets")
        ts = mine(captions, lambda s: encoder.encode(s, progress=args.progress), store, cfg, strategy=args.strategy)
    if len(ts) == 0:  # refuse to write an empty triplet file that training would only reject later
        raise DataError(f"--captions {args.captions}: 0 triplets from {ts.summary['segments']} segment(s): none of "
                        f"the {ts.summary['positives']} positives has an admissible negative (rule {cfg.rule}, tau "
                        f"{cfg.tau}); use more captions, another --tau or --rule; {args.out} not written")
    ts.text_model = ts.summary["text_model"] = encoder.model_id
    clear_stale_temps(args.out)  # a killed earlier run's half-written temp file
    ts.save(args.out)
    if ts.summary["val_triplets"] in (0, len(ts)):
        part = "validation" if ts.summary["val_triplets"] == 0 else "training"
        print(f"warning: no {part} triplets ({ts.summary['videos']} video(s), --val-fraction {cfg.val_fraction}); "
              "training needs both: mine more videos", file=sys.stderr)
    s = dict(ts.summary, out=str(args.out), encoded_now=encoder.encoded)
    if args.json:
        print(json.dumps(s))
        return 0
    print(f"{s['triplets']:,} triplets ({s['val_triplets']:,} validation) -> {args.out}")
    print(f"  {s['segments']:,} segments in {s['videos']:,} videos ({s['val_videos']:,} held out); "
          f"positives {s['positives']:,} = {s['caption_positives']:,} captions + {s['object_positives']:,} objects")
    if "admissible" in s:  # exact strategy: exact counts for every positive
        adm = s["admissible"]
        counts = f"mean {adm['mean']}, median {adm['median']}, min {adm['min']}, max {adm['max']}"
    else:  # sample strategy: an estimate from the draws (exact for the positives that fell back)
        adm = s["admissible_estimate"]
        counts = f"~mean {adm['mean']}, ~median {adm['median']} (estimated from {s['sample']['pairs_evaluated']:,} " \
                 f"sampled pairs; {s['sample']['fallback_positives']:,} positives mined exactly)"
    print(f"  strategy {s['strategy']}, rule {s['rule']}, tau {s['tau']}: admissible per positive {counts}; "
          f"{s['positives_short']:,} positives with fewer than {cfg.n_negatives} ({s['positives_none']:,} with none)")
    t = s["time"]
    print(f"  time: embed {t['embed_s']} s ({encoder.encoded:,} sentences encoded, the rest cached), "
          f"mine {t['mine_s']} s, total {t['total_s']} s")
    return 0
