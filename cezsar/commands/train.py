"""`cezsar train --triplets FILE --features DIR --out DIR`: contrastive training of the joint embedder
(paper §3.3 and §4). `cezsar train --params params/paper.yaml` runs notebook 03's training of one τ instead.

Under `torchrun --nproc-per-node N -m cezsar train ...` both forms train data-parallel on N processes
(docs/decisions.md §13); rank 0 alone prints.
"""
from __future__ import annotations

import argparse
import json
import sys

from cezsar.commands import SEED, add_progress, float_in, int_at_least
from cezsar.config import FastPathConfig, ModelConfig, TrainConfig
from cezsar.base import checks
from cezsar.errors import DataError, FeatureError, ParameterError, UsageError
from cezsar.formats.captions import read_activitynet
from cezsar.formats.manifest import BUILT_IN

HELP = "Train the joint embedder on mined triplets with the Eq. 7 triplet loss (paper §3.3-§4)."
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar train --triplets data/processed/embedded/triplets_tau0.80.npz --features data/interim/embedded/features/activitynet --out models/embedded/cli --epochs 2',
    'cezsar train --params params/embedded.yaml --tau 0.8',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--triplets", help="triplet file written by `cezsar mine` (.npz); required unless "
                        "--params")
    parser.add_argument("--features", help="feature folder written by `cezsar extract`; required unless --params")
    parser.add_argument("--features-manifest", default=None, metavar="NAME",
                        help="how a --features folder without manifest.json was made: released_bit = the authors' "
                        "released BiT features (recorded in the checkpoint; docs/fidelity.md \"feature manifests\")")
    parser.add_argument("--out", help="run folder: last.pt, best.pt, log.csv, log.json, cache/; required unless "
                        "--params")
    parser.add_argument("--params", default=None, metavar="YAML",
                        help="instead of the three above: the training stage of notebook 03 for this parameter set "
                        "(e.g. params/paper.yaml), its folders and settings, resuming like the notebook; for "
                        "running that stage under torchrun")
    parser.add_argument("--tau", type=float_in(0, 2, low_open=True), default=None,
                        help="with --params: the triplet file of this tau (default: the set's tau)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs}, params/embedded.yaml; paper §4: 25)")
    parser.add_argument("--batch", type=int, default=d.batch,
                        help=f"triplets per optimiser step (default {d.batch}, paper §4); under torchrun the global "
                        "batch, each of the N ranks takes batch/N")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr}, paper §4)")
    parser.add_argument("--patience", type=int, default=d.patience,
                        help=f"early-stopping patience in epochs on the validation loss (default {d.patience})")
    parser.add_argument("--device", default=d.device, help="auto (CUDA when present, default), cpu or cuda")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt when it exists")
    parser.add_argument("--seed", type=SEED, default=d.seed, help=f"seed (default {d.seed})")
    parser.add_argument("--text-model", default="minilm",
                        help="sentence encoder for the triplet sentences: minilm (default), mpnet or a folder; "
                        "should be the one `cezsar mine` used")
    parser.add_argument("--cache-dir", default=None, help="sentence cache root (default: the package cache)")
    fast = FastPathConfig()
    parser.add_argument("--batch-makeup", choices=("iid", "grouped"), default=d.batch_makeup,
                        help=f"iid: i.i.d. mini-batches as the paper and the released code ({d.batch_makeup}, "
                        f"default) | grouped: triplets of one window kept together in chunks of --group, "
                        "faster on a CPU (docs/fidelity.md \"batch makeup\")")
    parser.add_argument("--group", type=int, default=None,
                        help=f"with --batch-makeup grouped: triplets of one window per chunk, {fast.group} "
                        "(default), 0 = the whole window (fastest)")
    parser.add_argument("--bank-dtype", choices=("float16", "float32"), default=fast.bank_dtype,
                        help=f"storage of the contiguous feature array (default {fast.bank_dtype})")
    parser.add_argument("--step", choices=("static", "eager"), default=fast.step,
                        help=f"training step (default {fast.step}): static = fixed shapes, windows and sentences "
                        "found once per epoch; eager = per batch. Same loss and gradients (docs/decisions.md §16)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="CUDA only, --step static: the whole step (forward, backward, AdamW) in CUDA graphs")
    parser.add_argument("--no-positional", action="store_true", help="released VEM: no positional encoding")
    parser.add_argument("--released-sem", action="store_true", help="released SEM: Dropout + Linear + LayerNorm")
    parser.add_argument("--set-name", default=None, metavar="NAME",
                        help="name of the parameter set this run belongs to (e.g. embedded, paper); recorded in "
                        "the checkpoint with the data it was trained on")
    add_fidelity_arguments(parser)
    add_progress(parser)
    parser.add_argument("--json", action="store_true", help="print the run summary as one JSON document")


def check_inputs(args: argparse.Namespace):
    """Options, paths and a resumable last.pt checked before anything is loaded (docs/errors.md).

    Returns (triplets, store); UsageError (exit 2) for the command line, DataError (exit 1) for content.
    """
    from cezsar.base import distributed  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.encoders.feature_folder import feature_folder  # lazy: loads numpy; `cezsar --help` runs without it
    from cezsar.formats.triplets import TripletSet  # lazy: loads numpy; `cezsar --help` runs without it

    missing = [o for o in ("triplets", "features", "out") if getattr(args, o) is None]
    if missing:
        raise UsageError("cezsar train: give " + ", ".join("--" + o for o in missing) +
                                " (or --params for the notebooks' training stage)")
    checks.require_positive(args.epochs, "--epochs")
    checks.require_positive(args.batch, "--batch")
    if args.batch < distributed.world_size():
        raise UsageError(f"--batch {args.batch}: the global batch needs at least one triplet for each of "
                                f"the {distributed.world_size()} torchrun processes")
    checks.require_positive(args.patience, "--patience")
    if args.group is not None:
        checks.require_positive(args.group, "--group", minimum=0)
        if args.batch_makeup != "grouped":
            raise UsageError(f"--group {args.group}: applies to --batch-makeup grouped only "
                                    f"(this run's batches are {args.batch_makeup})")
    if not (args.lr == args.lr and 0 < args.lr < float("inf")):
        raise UsageError(f"--lr {args.lr}: must be a finite number > 0")
    checks.require_device(args.device)
    path = checks.require_file(args.triplets, "--triplets", "triplet file", "give the --out file of `cezsar mine`")

    if args.features_manifest is not None and args.features_manifest not in BUILT_IN:
        raise UsageError(f"--features-manifest {args.features_manifest}: not a built-in manifest (known: "
                                f"{', '.join(sorted(BUILT_IN))})")

    store = feature_folder(args.features, declared_manifest=args.features_manifest)
    out = checks.require_output_dir(args.out, "--out")
    checks.check_feature_bank_cache(out / "cache")
    if args.resume and (out / "last.pt").is_file():  # a damaged last.pt fails now, not after the set-up
        from cezsar.training.checkpoints import read_checkpoint  # lazy: torch, only when resuming

        read_checkpoint(out / "last.pt", None, training=True, remedy="delete it to start over, or use another --out")
    try:
        triplets = TripletSet.load(path)
    except ValueError as err:
        raise DataError(f"--triplets {err}; re-create it with `cezsar mine`") from err
    if len(triplets) == 0:
        raise DataError(f"--triplets {path}: holds 0 triplets; mine more captions or a larger --tau")
    have = set(store.ids)
    lacking = [v for v in triplets.video_ids if v not in have]
    if lacking:  # a partial feature set still trains: the triplets of those videos are left out, counted
        n = len(triplets)
        triplets = triplets.subset_videos(have)
        if len(triplets) == 0:
            raise DataError(f"--features {store.root}: none of the {len(lacking)} triplet videos has features; "
                                   "give the folder the triplets were mined from")
        if distributed.is_main():
            print(f"note: {len(lacking)} of {len(lacking) + len(triplets.video_ids)} triplet videos have no features "
                  f"in {store.root} (e.g. {', '.join(lacking[:3])}); their {n - len(triplets)} triplets are left out",
                  file=sys.stderr)
    return triplets, store


def add_fidelity_arguments(parser: argparse.ArgumentParser) -> None:
    """The released code's training behaviours, each a switch, off by default (docs/fidelity.md)."""

    m = ModelConfig()
    g = parser.add_argument_group("released-code switches (docs/fidelity.md; default: the paper's reading)")
    g.add_argument("--window", choices=("paper", "released"), default="paper",
                   help="visual input: the mined window of up to 10 s (paper §3.4, default) or the first 16 s of "
                   "the captioned segment (released; needs --captions)")
    g.add_argument("--captions", default=None, help="the captions the triplets were mined from (--window released)")
    g.add_argument("--released-padding", action="store_true",
                   help="always --max-len rows, zero padded, padding inside attention and the mean (released: 16)")
    g.add_argument("--released-attention", action="store_true",
                   help="attention across the batch in training, none across time at test (batch_first unset)")
    g.add_argument("--released-head", action="store_true",
                   help="ReLU-FC-Dropout-encoder-Dropout-ReLU-mean-FC, no output ReLU, affine LayerNorm "
                   "on VEM/SEM outputs in training only")
    g.add_argument("--xavier-init", action="store_true", help="Xavier-normal weights (released); default torch's init")
    g.add_argument("--d-model", type=int_at_least(2), default=m.d_model,
                   help=f"transformer width (paper §4: {m.d_model}; released 1024)")
    g.add_argument("--dropout", type=float_in(0, 1, high_open=True), default=m.dropout,
                   help=f"dropout (default {m.dropout}; released 0.15-0.2)")
    g.add_argument("--max-len", type=int_at_least(1), default=m.max_len,
                   help=f"rows per clip (paper §4: {m.max_len}; released 16)")
    g.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA (the released code trained in fp32)")
    g.add_argument("--released-validation", action="store_true",
                   help="validation loss in train mode, dropout on (the released loop never called model.eval())")


def run(args: argparse.Namespace) -> int:
    from cezsar.base import distributed  # lazy: loads torch; `cezsar --help` runs without it

    try:
        return run_stage(args) if args.params else run_files(args)
    finally:
        distributed.cleanup()


def run_stage(args: argparse.Namespace) -> int:
    """`--params`: notebook 03's training (`pipeline_training.train_model`) of one τ of that parameter set."""
    from cezsar.base import distributed  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.harness import pipeline, pipeline_training  # lazy: loads torch; `cezsar --help` runs without it

    given = [o for o in ("triplets", "features", "out") if getattr(args, o) is not None]
    if given:
        raise UsageError(f"--params takes its folders from the parameter set; drop "
                                f"{', '.join('--' + o for o in given)}")

    if not pipeline.resolve(args.params).is_file():  # relative paths resolve against the project root
        raise UsageError(f"--params {args.params}: no such file (e.g. params/paper.yaml)")
    try:
        s = pipeline.settings(args.params)
    except ParameterError as err:
        raise DataError(f"--params {' '.join(str(err).split())}") from err
    res = pipeline_training.train_model(pipeline.layout_from(s), s, args.tau)
    if distributed.is_main():
        summary = {k: v for k, v in res.items() if k not in ("history", "runs")}
        summary["runs"] = [{k: v for k, v in r.items() if k not in ("history", "data")} for r in res.get("runs", [])]
        print(json.dumps(res) if args.json else json.dumps(summary, indent=1, default=str))
    return 0


def run_files(args: argparse.Namespace) -> int:
    """`--triplets/--features/--out`: train on those files."""
    from cezsar.base import distributed  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.encoders.factory import text_encoder  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.base.devices import resolve_device  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.training.train import fit  # lazy: loads torch; `cezsar --help` runs without it

    triplets, store = check_inputs(args)
    distributed.init(resolve_device(args.device))  # under torchrun: join the group before the shared caches
    main = distributed.is_main()
    encoder = text_encoder(args.text_model, cache_dir=args.cache_dir)
    if triplets.text_model and triplets.text_model != encoder.model_id and main:
        print(f"warning: {args.triplets} was mined with text model {triplets.text_model!r}, training uses "
              f"{encoder.model_id!r}", file=sys.stderr)
    with distributed.main_first():  # one process fills the sentence cache, the others read it
        text_emb = encoder.encode(triplets.sentences, progress=args.progress and main)  # (S, text_dim)
    train_cfg = TrainConfig(lr=args.lr, batch=args.batch, epochs=args.epochs, patience=args.patience,
                            seed=args.seed, device=args.device, window=args.window, autocast=not args.fp32,
                            batch_makeup=args.batch_makeup,
                            released_validation=args.released_validation)
    model_cfg = ModelConfig(positional=not args.no_positional, released_sem=args.released_sem,
                            released_padding=args.released_padding, released_attention=args.released_attention,
                            released_head=args.released_head, xavier_init=args.xavier_init, d_model=args.d_model,
                            dropout=args.dropout, max_len=args.max_len)
    bounds = None
    if args.window == "released":
        from cezsar.training.train_inputs import segment_bounds  # lazy: loads torch; `cezsar --help` runs without it

        if not args.captions:
            raise UsageError("--window released needs --captions (the segments' bounds)")
        checks.require_file(args.captions, "--captions", "captions JSON file")
        bounds = segment_bounds(read_activitynet(args.captions))  # a DatasetError is one line at the boundary
    fast = FastPathConfig(bank_dtype=args.bank_dtype, step=args.step, graph=args.cuda_graphs)
    if args.group is not None:
        fast.group = args.group
    try:
        res = fit(triplets, store, text_emb, train_cfg, model_cfg, args.out, resume=args.resume, fast=fast,
                  text_model=encoder.model_id, text_model_name=args.text_model, params=args.set_name,
                  progress=args.progress, segment_bounds=bounds)
    except (ValueError, KeyError, FeatureError) as err:  # the message names the file or array at fault
        raise DataError(" ".join(str(err).split())) from err
    d = res["data"]
    if not main:  # every rank returns the same summary; one prints it
        return 0
    if d["past_end"]:
        print(f"warning: {d['past_end']:,} of {d['windows']:,} windows start after their video's last feature "
              "row; they use the last second", file=sys.stderr)
    if args.json:
        print(json.dumps(res))
        return 0
    for row in res["history"]:
        val = "-" if row["val_loss"] is None else f"{row['val_loss']:.4f} (acc {row['val_acc']:.3f})"
        print(f"epoch {row['epoch']:3d}  train {row['train_loss']:.4f}  val {val}  "
              f"{row['seconds']:.1f} s  {row['triplets_per_s']:.0f} triplets/s")
    print(f"{d['triplets']:,} triplets, {d['windows']:,} windows, {d['videos']:,} videos on {res['device']}; "
          f"best epoch {res['best_epoch']} (score {res['best_score']:.4f})"
          f"{', stopped early' if res['stopped_early'] else ''} -> {res['out_dir']}")
    return 0
