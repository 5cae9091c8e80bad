"""`cezsar evaluate`: zero-shot accuracy of a trained model (or a baseline: objects-only, CLIP frame average)
under a protocol.

Reads a class dataset, its extracted features and its class descriptions, embeds videos and prototypes
(paper §3.5, Eqs. 8-9), scores every seeded run of the protocol (paper §4) and writes a results JSON with
every run's seed, classes and accuracy, the mean and the sample std (ddof recorded).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cezsar.commands import add_progress, int_at_least
from cezsar.config import DESCRIPTIONS_DIR, EvalConfig
from cezsar.base import checks
from cezsar.base.atomic import write_json
from cezsar.errors import CheckpointMismatch, DataError, UsageError
from cezsar.formats import manifest
from cezsar.formats.datasets import load_dataset, read_descriptions
from cezsar.reporting.results import protocol_record

HELP = "Zero-shot evaluation (Eqs. 8-9) of a checkpoint, the objects-only or the CLIP baseline under a protocol."
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar evaluate --dataset ucf101 --root data/raw/synthactions/ucf101 --features data/interim/embedded/features/ucf101 --model models/embedded/tau0.80/seed0/best.pt --protocol 0/8 --runs 5 --out runs/cli/ucf101.json',
    'cezsar evaluate --dataset ucf101 --root data/raw/synthactions/ucf101 --features data/interim/embedded/features/ucf101 --method objects --protocol 0/all --out runs/cli/objects.json',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = EvalConfig()
    parser.add_argument("--dataset", required=True, choices=("ucf101", "kinetics400", "hmdb51"),
                        help="dataset layout read by cezsar.formats.datasets.load_dataset")
    parser.add_argument("--root", required=True, help="dataset folder (or the authors' ucf101 JSON / a Kinetics CSV)")
    parser.add_argument("--features", required=True, help="feature folder written by `cezsar extract`")
    parser.add_argument("--objects", default=None,
                        help="objects folder of `cezsar objects --out` (for features without objects/, e.g. "
                        "released ones); default <features>/objects")
    parser.add_argument("--model", default=None, help="checkpoint (best.pt); required for --method cezsar")
    parser.add_argument("--method", default="cezsar", choices=("cezsar", "objects", "clip"),
                        help="cezsar: Eq. 9 in the joint space; objects: Estevam et al.'s SBERT objects-only baseline; "
                        "clip: CLIP frame average vs the class prompts' text embeddings (features of "
                        "`cezsar extract --backbone clip:<model>`)")
    parser.add_argument("--clip-model", default=None,
                        help="--method clip: the CLIP (hub id or local folder) whose text tower embeds the prompts; "
                        "default: the one the --features were extracted with (features.json)")
    parser.add_argument("--prompts", default="names", choices=("names", "descriptions"),
                        help="--method clip: class names in --template (default), or the class descriptions")
    parser.add_argument("--template", default=None,
                        help="--method clip, --prompts names: the prompt, {} = class name (default "
                        "'a photo of a person {}.', recorded in the results)")
    parser.add_argument("--protocol", default="0/all",
                        help="0/N (N random test classes), 0/all, or truze (with --split-file); paper: "
                             "ucf101 0/101 0/50 0/20, kinetics400 0/400 0/100 0/25, hmdb51 0/51 0/25")
    parser.add_argument("--runs", type=int, default=None, help="seeded runs for 0/N (default 50; 1 for all classes)")
    parser.add_argument("--split-file", default=None,
                        help="{training, testing} JSON whose testing classes are evaluated (TruZe: ucf101_truezsl_splits.json)")
    parser.add_argument("--alpha", type=float, default=d.alpha, help=f"Eq. 9 weight of VE(v) (paper: {d.alpha})")
    parser.add_argument("--beta", type=float, default=d.beta,
                        help=f"Eq. 9 weight of SE(O(v)) (paper: {d.beta}; 0 = VE only)")
    parser.add_argument("--released-sum", action="store_true",
                        help="add VE and SE(O) unnormalised, as the released code does (default: L2-normalise each)")
    parser.add_argument("--n-objects", type=int, default=d.n_objects,
                        help=f"objects per video for O(v) (docs/fidelity.md: {d.n_objects})")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="use only the first N seconds of each clip (released code: 16; default whole clip)")
    parser.add_argument("--descriptions", default=None,
                        help="class descriptions (JSON or folder of <class>.txt); default data/descriptions/<dataset>.json "
                             "for the real datasets, else <root>/../descriptions/<dataset>.json")
    parser.add_argument("--all-sentences", action="store_true",
                        help="average the prototypes of every description sentence (default: the first one)")
    parser.add_argument("--text-model", default=None,
                        help="SBERT model (minilm, mpnet, a path); default: the checkpoint's, else minilm")
    parser.add_argument("--skip-missing", action="store_true",
                        help="leave out videos without features (listed in the results) instead of failing")
    parser.add_argument("--device", default="auto", help="torch device for the model and SBERT: auto (CUDA when "
                        "present, default), cpu or cuda")
    add_progress(parser)
    g = parser.add_argument_group("released-code switches (docs/fidelity.md; default: the paper's reading)")
    g.add_argument("--released-objects", action="store_true",
                   help="O(v) as released: top-3 by the mean over the first 16 rows (padding included), the "
                   "definitions of every sense joined into one text")
    g.add_argument("--released-descriptions", action="store_true",
                   help="lower-case, expand contractions, keep letters and . , ! ? only, then the description "
                   "sentence closest to the class name")
    g.add_argument("--std-ddof", type=int_at_least(0, 1), default=d.std_ddof,
                   help=f"ddof of the std over runs (default {d.std_ddof}; released numpy: 0)")
    parser.add_argument("--out", required=True, help="results JSON; custom datasets keep split files beside it")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON document")


def default_descriptions(kind: str, root: str | Path, official: bool) -> Path:
    """data/descriptions/<kind>.json for a real dataset, else the SynthActions place <root>/../descriptions/."""

    ours = DESCRIPTIONS_DIR / f"{kind}.json"
    beside = Path(root).resolve().parent / "descriptions" / f"{kind}.json"
    order = [ours, beside] if official else [beside, ours]
    for p in order:
        if p.exists():
            return p

    raise UsageError(f"no class descriptions for {kind}: tried {order[0]} and {order[1]}; pass --descriptions")


def check_inputs(args: argparse.Namespace) -> None:
    """Every path and number checked before anything is loaded (docs/errors.md): UsageError, exit 2."""

    checks.require_path(args.root, "--root", "dataset folder or file")
    checks.require_dir(args.features, "--features", "feature folder", "give the --out folder of `cezsar extract`")
    if args.template is not None and "{}" not in args.template:
        raise UsageError(f"--template {args.template!r}: needs {{}} where the class name goes")
    if args.method == "clip" and (args.text_model or args.model):
        raise UsageError(f"--method clip takes no {'--text-model' if args.text_model else '--model'}: the "
                                "prompts are embedded by the CLIP's own text tower (--clip-model)")
    if args.method == "cezsar":
        if not args.model:
            raise UsageError("--method cezsar needs --model CHECKPOINT (or use --method objects or clip)")
        checks.require_file(args.model, "--model", "checkpoint", "pass the best.pt written by `cezsar train`")
    if args.descriptions:
        checks.require_path(args.descriptions, "--descriptions", "descriptions file or folder")
    if args.split_file:
        checks.require_file(args.split_file, "--split-file", "split file")
    checks.require_positive(args.runs, "--runs")
    checks.require_positive(args.n_objects, "--n-objects")
    for name in ("alpha", "beta"):
        value = getattr(args, name)
        if not (value == value and 0 <= value < float("inf")):
            raise UsageError(f"--{name} {value}: must be a finite number >= 0")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise UsageError(f"--max-seconds {args.max_seconds}: must be more than 0")
    checks.require_device(args.device)
    from cezsar.base.devices import resolve_device  # lazy: loads torch; `cezsar --help` runs without it

    args.device = str(resolve_device(args.device))  # "auto" -> the device it means here
    checks.require_output(args.out, "--out")


def _clip_for(args: argparse.Namespace, store):
    """--method clip: the CLIP whose image tower made --features (features.json) unless --clip-model names one;
    features of another backbone, or a --clip-model other than theirs, are usage errors."""
    from cezsar.encoders.clip import PREFIX, is_clip, model_spec  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.encoders.factory import frame_encoder  # lazy: loads torch; `cezsar --help` runs without it

    if not is_clip(store.backbone):
        raise UsageError(f"--method clip needs CLIP frame features; --features {args.features} holds "
                                f"{store.backbone or 'unknown'} features: extract with --backbone clip:<model>")
    spec = args.clip_model or model_spec(store.backbone)
    if args.clip_model and PREFIX + model_spec(args.clip_model) != store.backbone:
        raise UsageError(f"--clip-model {args.clip_model}: --features {args.features} were extracted with "
                                f"{store.backbone}; the text and image towers must be one model")
    return frame_encoder(PREFIX + model_spec(spec), None, option="--clip-model", device=args.device)


def _objects_off(args: argparse.Namespace, store) -> None:
    """Features without objects by nature (CLIP): the objects baseline is a usage error, Eq. 9 falls back to VE."""

    reason = store.objects_off_reason
    if reason is None or args.method == "clip":
        return
    if args.method == "objects":
        raise UsageError(f"--method objects: {reason} (--features {args.features}); use --method clip or cezsar")
    if args.beta != 0:
        print(f"note: {reason}; evaluating VE alone (beta 0)", file=sys.stderr)
        args.beta = 0.0


def check_model_fits(model_path: str, trained: dict, store, model) -> None:
    """Refuse a checkpoint whose features differ from the ones given (CheckpointMismatch; its sentence space is
    checked by `classify.checkpoint_text_encoder`)."""

    if trained["backbone"] not in ("unknown", store.backbone) and store.backbone is not None:
        raise CheckpointMismatch(f"--model {model_path}: trained on {trained['backbone']} features, but --features "
                                 f"{store.root} holds {store.backbone} features; evaluate on features extracted "
                                 f"with {trained['backbone']}")
    if store.dim != model.cfg.feat_dim:
        raise CheckpointMismatch(f"--model {model_path}: the VEM takes {model.cfg.feat_dim}-d features, --features "
                                 f"{store.root} holds {store.dim}-d ones ({store.backbone or 'unknown backbone'}); "
                                 f"use features of the backbone the model was trained on ({trained['backbone']})")


def check_manifest(meta: dict, store) -> None:
    """Refuse test features made another way than the checkpoint's training features (cezsar.formats.manifest: exit 1,
    one line naming both values); a folder or checkpoint from before manifests gives a line saying what is
    not checked."""
    from cezsar.training.checkpoints import training_manifest  # lazy: loads torch; `cezsar --help` runs without it

    recorded, here = training_manifest(meta), getattr(store, "manifest", None)
    # a run wholly from before manifests (neither side has one) is a note; one side without it, a warning
    level = "note" if recorded is None and here is None else "warning"
    for line in manifest.check_against_training(here, recorded, f"--features {store.root}"):
        print(f"{level}: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from cezsar.evaluation import protocols  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.encoders.factory import text_encoder  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.evaluation.classify import checkpoint_text_encoder  # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.encoders.feature_folder import feature_folder  # lazy: loads numpy; `cezsar --help` runs without it

    check_inputs(args)
    dataset = load_dataset(args.dataset, args.root)
    try:  # the protocol spec is part of the command line: a bad one is a usage error
        protocols.get_protocol(args.dataset, args.protocol, len(dataset.classes), args.runs, args.split_file)
    except ValueError as err:
        raise UsageError(f"--protocol {args.protocol}: {err}") from err
    official = protocols.official_classes(args.dataset)
    is_real = official is not None and sorted(official) == sorted(dataset.classes)
    desc_path = Path(args.descriptions) if args.descriptions else default_descriptions(args.dataset, args.root, is_real)
    descriptions = read_descriptions(desc_path)
    store = feature_folder(args.features, objects=args.objects)
    clip = _clip_for(args, store) if args.method == "clip" else None
    _objects_off(args, store)
    model, ckpt_meta = None, {}
    if args.method == "cezsar":
        # lazy: loads torch; `cezsar --help` runs without it
        from cezsar.training.checkpoints import describe_provenance, load_checkpoint

        model, ckpt_meta = load_checkpoint(args.model, option="--model")
        model.to(args.device)
    if model is not None:
        check_model_fits(args.model, ckpt_meta["trained_on"], store, model)
        encoder = checkpoint_text_encoder(ckpt_meta, args.text_model, f"--model {args.model}", device=args.device)
        print(f"note: {describe_provenance(ckpt_meta['trained_on'])}", file=sys.stderr)
        check_manifest(ckpt_meta, store)  # after the hard refusals: its warnings belong to a run that goes on
    elif clip is None:
        encoder = text_encoder(args.text_model or "minilm", device=args.device)
    else:
        encoder = None  # the CLIP baseline embeds its prompts with CLIP's own text tower
    out = Path(args.out)
    try:
        res = protocols.run_evaluation(
            dataset, store, descriptions, encoder, args.protocol, method=args.method, model=model, runs=args.runs,
            split_file=args.split_file, out_dir=out.parent, alpha=args.alpha, beta=args.beta,
            normalize_terms=not args.released_sum, n_objects=args.n_objects, max_seconds=args.max_seconds,
            all_sentences=args.all_sentences, skip_missing=args.skip_missing, std_ddof=args.std_ddof,
            released_objects=args.released_objects, released_descriptions=args.released_descriptions,
            clip=clip, prompts=args.prompts, template=args.template, progress=args.progress)
    except (ValueError, FileNotFoundError) as err:  # protocols names the class, video or split file at fault
        raise DataError(str(err)) from err
    res = protocol_record(res, checkpoint=Path(args.model).resolve() if model is not None else None,
                          trained_on=ckpt_meta.get("trained_on"), descriptions=desc_path, dataset_root=args.root,
                          features=args.features, text_model=clip.name if clip is not None else encoder.model,
                          text_model_id=clip.name if clip is not None else encoder.model_id,
                          backbone=getattr(store, "backbone", None))
    write_json(out, res)
    if args.json:
        print(json.dumps(res))
    else:
        std = f" ± {100 * res['top1_std']:.1f}" if res["top1_std"] is not None else ""
        print(f"{args.dataset} {res['protocol']} {res['variant']}: top-1 {100 * res['top1_mean']:.1f}{std} %, "
              f"top-5 {100 * res['top5_mean']:.1f} % over {res['n_runs']} run(s) of {res['n_classes']} classes "
              f"(chance {100 * res['chance']:.1f} %) -> {out}")
        skipped = res.get("skipped_videos") or []
        if skipped:
            print(f"  {len(skipped)} video(s) without features left out (listed in {out})")
    return 0
