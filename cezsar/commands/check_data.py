"""`cezsar check-data KIND PATH`: read a dataset with the project's readers and report counts and quirks."""
from __future__ import annotations

import argparse
import json

from cezsar.base import checks
from cezsar.formats import datasets as ds
from cezsar.formats.captions import read_activitynet
from cezsar.errors import UsageError

HELP = ("Read a dataset (activitynet, ucf101, hmdb51, kinetics400, descriptions) and report counts and problems; "
        "with --features, check a feature folder against it (exit 1 when incomplete).")
KINDS = ("activitynet", "ucf101", "hmdb51", "kinetics400", "descriptions")
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar check-data activitynet data/raw/synthactions/activitynet/train.json',
    'cezsar check-data ucf101 data/raw/synthactions/ucf101 --features data/interim/embedded/features/ucf101',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="dataset format")
    parser.add_argument(
        "path",
        help="activitynet: a captions JSON; ucf101: the official root folder (classInd.txt) or the authors' "
        "ucf101_dataset.json; hmdb51: the folder with the split lists; kinetics400: a CSV or a folder with "
        "test.csv + clips/; descriptions: our JSON or a folder of <class>.txt files",
    )
    parser.add_argument("--split-file", action="append", default=[], metavar="FILE", dest="split",
                        help="a split JSON {training, testing} to resolve against the classes (repeatable)")
    parser.add_argument("--features", default=None, metavar="DIR",
                        help="also check a feature folder against the dataset's video list: videos without a stack, "
                        "stacks of no video, dim/backbone/objects, unreadable stacks (a sample of 200)")
    parser.add_argument("--objects", default=None, metavar="DIR",
                        help="the objects folder of --features when it is not <features>/objects")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def summarize(kind: str, path: str, splits: list[str] = ()) -> tuple[dict, dict]:
    """Counts and problems of one dataset: ({kind, videos, segments, sentences, classes, problems}, examples)."""

    examples: dict = {}
    if kind == "activitynet":
        cap = read_activitynet(path)
        out = {"kind": kind, "videos": len(cap.durations), "segments": len(cap.segments),
               "sentences": len(cap.segments), "problems": cap.problems}
        examples = cap.examples
        classes: list[str] = []
    elif kind == "descriptions":
        desc = ds.read_descriptions(path)
        classes = list(desc)
        out = {"kind": kind, "classes": len(desc), "sentences": sum(map(len, desc.values())), "problems": {}}
    else:
        data = ds.load_dataset(kind, path)
        classes = data.classes
        out = {"kind": kind, "videos": len(data.videos), "classes": len(data.classes), "problems": data.problems}
        examples = data.examples
    if splits:
        out["splits"] = {}
        for f in splits:
            s = ds.read_split(f, classes)
            out["splits"][f] = {"training": len(s.training), "testing": len(s.testing), "problems": s.problems}
    return out, examples


def check_inputs(kind: str, path: str, splits: list[str]) -> None:
    """The path must be what the kind reads (docs/errors.md): a file, a folder, or either; UsageError, exit 2."""

    if kind == "activitynet":
        checks.require_file(path, "PATH", "captions JSON file")
    elif kind == "hmdb51":
        checks.require_dir(path, "PATH", "HMDB-51 folder")
    else:
        checks.require_path(path, "PATH", f"{kind} file or folder")
    for f in splits:
        checks.require_file(f, "--split-file", "split JSON file")


def _video_ids(kind: str, path: str) -> list[str]:
    if kind == "activitynet":
        return sorted(read_activitynet(path).durations)
    return [v.video_id for v in ds.load_dataset(kind, path).videos]


def run(args: argparse.Namespace) -> int:
    from cezsar.encoders.feature_folder import feature_folder  # lazy: loads numpy; `cezsar --help` runs without it
    from cezsar.encoders.features import check_folder  # lazy: loads numpy; `cezsar --help` runs without it

    check_inputs(args.kind, args.path, args.split)
    if args.features and args.kind == "descriptions":
        raise UsageError("--features checks a dataset's videos: use it with activitynet, ucf101, hmdb51 or "
                                "kinetics400")
    store = feature_folder(args.features, objects=args.objects) if args.features else None
    out, examples = summarize(args.kind, args.path, args.split)
    if store is not None:
        out["features"] = check_folder(store, _video_ids(args.kind, args.path))
    rc = 0
    if args.json:
        print(json.dumps(out, indent=1))
        return 1 if "features" in out and not out["features"]["complete"] else 0
    print(f"{args.kind}: {args.path}")
    for key in ("videos", "segments", "sentences", "classes"):
        if key in out:
            print(f"  {key:10s} {out[key]:,}")
    if "features" in out:
        f = out["features"]
        objects = f"{f['label_space']}, {f['without_objects']} stacks without" if f["objects"] else "none"
        print(f"  features   {f['with_features']:,}/{f['videos']:,} videos have a stack in {f['folder']} "
              f"({f['dim']}-d, backbone {f['backbone'] or 'unknown'}, objects {objects})")
        if f["missing"]:
            print(f"  features   {f['missing']:,} videos without a stack, e.g. {', '.join(f['missing_examples'][:5])}")
        if f["extra"]:
            print(f"  features   {f['extra']:,} stacks of no video of this dataset, e.g. "
                  f"{', '.join(f['extra_examples'][:5])}")
        for b in f["bad"]:
            print(f"  features   unreadable: {b['reason']}")
        print(f"  features   {'complete' if f['complete'] else 'INCOMPLETE'} (checked {f['checked']} stacks)")
        if not f["complete"]:
            rc = 1
    for f, s in out.get("splits", {}).items():
        print(f"  split {f}: {s['training']} training / {s['testing']} testing classes {s['problems'] or ''}")
    if not out["problems"]:
        print("  problems   none")
    for name, count in sorted(out["problems"].items()):
        print(f"  problem {name}: {count:,}")
        for ex in examples.get(name, []):
            print(f"      e.g. {ex}")
    return rc
