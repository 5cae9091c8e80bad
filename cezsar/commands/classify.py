"""`cezsar classify`: zero-shot labels for any video(s) from any label list (paper §3.5, Eqs. 8-9).

Without --model it runs the objects-only method (no training needed); with a checkpoint, Eq. 9. Labels
and every argument are checked before anything is loaded or decoded. An undecodable video prints an error
line naming it on stderr and makes the exit code 1, while the other videos are still classified and
printed. Exit code 2: unusable arguments (labels, a missing file, an option out of range); 1: an input
whose content is wrong (a corrupt checkpoint, a model that does not fit the encoders). With a checkpoint,
one stderr line says what the model was trained on (docs/errors.md).
"""
from __future__ import annotations

import argparse
import json
import sys

from cezsar.commands import add_progress
from cezsar.base import checks
from cezsar.base.checks import require_path
from cezsar.evaluation.class_labels import prepare_labels
from cezsar.errors import UsageError

HELP = "Classify videos against your own labels, zero-shot (objects-only, or Eq. 9 with --model)."
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar classify my_video.mp4 --labels "a rabbit in a meadow, a car race, cooking in a kitchen"',
    'cezsar classify a.mp4 b.mp4 --labels labels.txt --model models/embedded/tau0.80/seed0/best.pt --json',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video file(s) any FFmpeg build reads")
    parser.add_argument("--labels", required=True, metavar='FILE|"a, b, ..."',
                        help="a file with one label per line (blank lines, # comments skipped) or a comma list")
    parser.add_argument("--descriptions", default=None, metavar="JSON",
                        help="{label: [sentences]} (our descriptions format): richer sentences for the labels "
                        "it covers; others use their own text")
    parser.add_argument("--model", default=None, metavar="CKPT",
                        help="a CEZSAR checkpoint (best.pt) -> Eq. 9; without it the objects-only method runs")
    parser.add_argument("--alpha", type=float, default=None, help="Eq. 9 weight of VE(v) (default 0.8, paper §5)")
    parser.add_argument("--beta", type=float, default=None, help="Eq. 9 weight of SE(O(v)) (default 0.2; 0 = VE only)")
    parser.add_argument("--top-k", type=int, default=5, help="labels shown per video (default 5)")
    parser.add_argument("--n-objects", dest="objects", type=int, default=None, metavar="K",
                        help="objects per video for O(v) and the explanation (default 3, docs/fidelity.md)")
    parser.add_argument("--text-model", default=None,
                        help="SBERT model (minilm, mpnet, a path); default minilm, or the checkpoint's")
    parser.add_argument("--max-seconds", type=float, default=None, help="decode at most the first N seconds")
    parser.add_argument("--backbone", default="efficientnet_lite0",
                        help="frame CNN (efficientnet_lite0 offline; bit_m_r152x2 / resnet152 need --weights)")
    parser.add_argument("--weights", default=None, help="weights file for --backbone bit_m_r152x2 / resnet152")
    parser.add_argument("--image-size", type=int, default=160,
                        help="CNN input side in px (default 160); the model's training features' size, e.g. 224 "
                        "for BiT")
    parser.add_argument("--released-preprocess", action="store_true",
                        help="BGR frames, resize 256 + centre crop 224, as the released features were made")
    parser.add_argument("--released-sampling", action="store_true",
                        help="the released frame sampling: a 25-fps re-encode's frames at linspace(0, n-1, n//25)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, default), cpu or cuda")
    add_progress(parser)
    parser.add_argument("--json", action="store_true",
                        help="print JSON: one object per video, a list when several videos are given")


def format_result(res: dict) -> str:
    """A short readable block for one video's result dict."""
    from cezsar.evaluation.classify import METHOD_NOTES  # lazy: loads torch; `cezsar --help` runs without it

    head = f"{res['video']}  ({res['seconds']} s decoded; {METHOD_NOTES.get(res['method'], res['method'])})"
    width = max(len(x["label"]) for x in res["labels"])
    rows = [f"  {i + 1}. {x['label']:<{width}}  {x['score']:+.3f}" for i, x in enumerate(res["labels"])]
    objs = ", ".join(f"{o['lemma']} {o['score']:.2f}" for o in res["objects"])
    return "\n".join([head, *rows, f"  objects seen (mean prob.): {objs}"])


def check_inputs(args: argparse.Namespace) -> None:
    """Every argument checked before a model is loaded or a video decoded (docs/errors.md)."""

    checks.require_positive(args.top_k, "--top-k")
    checks.require_positive(args.image_size, "--image-size")
    checks.require_positive(args.objects, "--n-objects")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise UsageError(f"--max-seconds {args.max_seconds}: must be more than 0")
    for name in ("alpha", "beta"):
        value = getattr(args, name)
        if value is not None and not (value == value and 0 <= value < float("inf")):
            raise UsageError(f"--{name} {value}: must be a finite number >= 0")
    from cezsar.encoders.clip import is_clip  # lazy: loads torch; `cezsar --help` runs without it

    if is_clip(args.backbone):  # classify ranks labels through objects (and a checkpoint): CLIP has no objects
        raise UsageError(f"--backbone {args.backbone}: classify needs an ImageNet head (objects); for CLIP "
                                "use `cezsar extract --backbone clip:...` and `cezsar evaluate --method clip`")
    if args.alpha == 0 and args.beta == 0:
        raise UsageError("--alpha 0 --beta 0: Eq. 9 would score every label 0; give one of them > 0")
    for video in args.videos:
        checks.require_file(video, "VIDEO", "video file")
    if args.model is not None:
        checks.require_file(args.model, "--model", "checkpoint",
                            "pass the best.pt or last.pt written by `cezsar train`")
    if args.weights is not None:
        checks.require_file(args.weights, "--weights", "weights file")
    checks.require_device(args.device)
    from cezsar.base.devices import resolve_device  # lazy: loads torch; `cezsar --help` runs without it

    args.device = str(resolve_device(args.device))  # "auto" -> the device it means here


def run(args: argparse.Namespace) -> int:
    # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.evaluation.classify import classify_videos, load_classifier
    # lazy: loads torch; `cezsar --help` runs without it
    from cezsar.training.checkpoints import describe_provenance, is_synthetic

    if args.descriptions is not None:
        require_path(args.descriptions, "--descriptions", "descriptions file or folder")
    labels = prepare_labels(args.labels, args.descriptions)  # before any model load or decoding
    check_inputs(args)
    for note in labels.notes:
        print(note, file=sys.stderr)
    if args.model is None and (args.alpha is not None or args.beta is not None):
        print("note: --alpha/--beta apply to Eq. 9 with --model; the objects-only method ignores them", file=sys.stderr)
    clf = load_classifier(args.model, text_model=args.text_model, alpha=args.alpha, beta=args.beta,
                          n_objects=args.objects, backbone=args.backbone, weights=args.weights, device=args.device,
                          image_size=args.image_size, preprocess="released" if args.released_preprocess else "paper",
                          sampling="released" if args.released_sampling else "1fps")
    if clf.model is not None:
        trained = clf.meta["trained_on"]
        print(f"note: {describe_provenance(trained)}", file=sys.stderr)
        if is_synthetic(trained):
            print("warning: this model saw only synthetic clips (SynthActions); its ranking of real videos is "
                  "not meaningful: train on real captions and features for real use", file=sys.stderr)
    clf.prototypes(labels)  # label sentences encoded once, as part of the set-up

    def show(res: dict) -> None:  # each video's lines as soon as it is classified
        if "error" in res:
            print(f"error: cannot classify {res['video']}: {res['error']}", file=sys.stderr)
        elif not args.json:
            print(format_result(res), flush=True)

    out = classify_videos(args.videos, labels, top_k=args.top_k, max_seconds=args.max_seconds, errors="keep",
                          classifier=clf, on_result=show, progress=args.progress)
    results = [r for r in out if "error" not in r]
    failed = [r["video"] for r in out if "error" in r]
    if args.json:
        print(json.dumps(results[0] if len(args.videos) == 1 and results else results, indent=1))
    if failed:
        print(f"{len(failed)} of {len(args.videos)} video(s) could not be classified: {', '.join(failed[:5])}"
              + (" ..." if len(failed) > 5 else ""), file=sys.stderr)
    return 1 if failed else 0
