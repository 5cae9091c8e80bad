"""`cezsar mine --captions JSON --out FILE.npz`: hard negative mining into a triplet file (paper §3.4)."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "Mine (window, positive, negative) triplets from ActivityNet-form captions with the tau rule (paper §3.4)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cezsar.config import MiningConfig

    d = MiningConfig()
    parser.add_argument("--captions", required=True, help="ActivityNet Captions-form JSON (e.g. train.json)")
    parser.add_argument("--features", default=None,
                        help="feature folder of `cezsar extract` (objects/ gives object positives); "
                        "omitted = captions-only")
    parser.add_argument("--out", required=True, help="triplet file to write (.npz)")
    parser.add_argument("--tau", type=float, default=d.tau, help=f"similar if cos > 1 - tau (default {d.tau})")
    parser.add_argument("--negatives", type=int, default=d.n_negatives, help=f"negatives per positive "
                        f"(default {d.n_negatives})")
    parser.add_argument("--rule", choices=("released", "different"), default=d.rule,
                        help="released: negatives have cos > 1 - tau (default); different: cos <= 1 - tau")
    parser.add_argument("--exclude-same-video", action="store_true",
                        help="never draw a negative that captions the anchor's own video")
    parser.add_argument("--max-sim", type=float, default=d.max_sim,
                        help="paraphrase guard: drop candidates with cos >= this")
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
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed (default {d.seed})")
    g = parser.add_argument_group("released-code and paper-wording switches (docs/fidelity.md)")
    g.add_argument("--split", choices=("video", "triplet"), default=d.split,
                   help="validation split by video (default) or by triplet at random (released, with --val-fraction 0.3)")
    g.add_argument("--draw", choices=("uniform", "released"), default=d.draw,
                   help="negatives: distinct, uniform (default) or with replacement weighted by entry count (released)")
    g.add_argument("--released-objects", action="store_true",
                   help="object positives from all-sense definition fragments (> 5 words, cut to 20) of the top-5 "
                   "objects over the 10 s from int(window start)")
    g.add_argument("--far-from-all", action="store_true",
                   help="paper §3.4: a negative must pass the rule against every positive of its window")
    g.add_argument("--object-tau", action="store_true",
                   help="paper §3.4: object positives must pass the similarity rule (cos > 1 - tau) too")
    parser.add_argument("--progress", action="store_true", help="show a progress bar while encoding")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON document")


def run(args: argparse.Namespace) -> int:
    from cezsar.config import MiningConfig
    from cezsar.datasets import DatasetError, read_activitynet
    from cezsar.mining import mine
    from cezsar.text import SentenceEncoder

    cfg = MiningConfig(tau=args.tau, n_negatives=args.negatives, rule=args.rule,
                       exclude_same_video=args.exclude_same_video, max_sim=args.max_sim,
                       windows_per_segment=args.windows, val_fraction=args.val_fraction, block=args.block,
                       seed=args.seed, split=args.split, draw=args.draw, released_objects=args.released_objects,
                       far_from_all=args.far_from_all, object_tau=args.object_tau)
    if cfg.n_negatives < 1 or cfg.windows_per_segment < 1 or cfg.block < 1:
        print("error: --negatives, --windows and --block must be at least 1", file=sys.stderr)
        return 2
    try:
        captions = read_activitynet(args.captions)
    except (DatasetError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    store = None
    if args.features:
        from cezsar.features import FeatureStore

        store = FeatureStore(args.features)
    encoder = SentenceEncoder(args.text_model, cache_dir=args.cache_dir)
    ts = mine(captions, lambda s: encoder.encode(s, progress=args.progress), store, cfg, strategy=args.strategy)
    ts.text_model = ts.summary["text_model"] = encoder.model_id
    ts.save(args.out)
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
