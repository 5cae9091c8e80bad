"""`cezsar check-data KIND PATH`: read a dataset with the project's readers and report counts and quirks."""
from __future__ import annotations

import argparse
import json

HELP = "Read a dataset (activitynet, ucf101, hmdb51, kinetics400, descriptions) and report counts and problems."
KINDS = ("activitynet", "ucf101", "hmdb51", "kinetics400", "descriptions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="dataset format")
    parser.add_argument(
        "path",
        help="activitynet: a captions JSON; ucf101: the official root folder (classInd.txt) or the authors' "
        "ucf101_dataset.json; hmdb51: the folder with the split lists; kinetics400: a CSV or a folder with "
        "test.csv + clips/; descriptions: our JSON or a folder of <class>.txt files",
    )
    parser.add_argument("--split", action="append", default=[], metavar="FILE",
                        help="a split JSON {training, testing} to resolve against the classes (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def summarize(kind: str, path: str, splits: list[str] = ()) -> tuple[dict, dict]:
    """Counts and problems of one dataset: ({kind, videos, segments, sentences, classes, problems}, examples)."""
    from cezsar import datasets as ds

    examples: dict = {}
    if kind == "activitynet":
        cap = ds.read_activitynet(path)
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
    from cezsar import checks

    if kind == "activitynet":
        checks.require_file(path, "PATH", "captions JSON file")
    elif kind == "hmdb51":
        checks.require_dir(path, "PATH", "HMDB-51 folder")
    else:
        checks.require_path(path, "PATH", f"{kind} file or folder")
    for f in splits:
        checks.require_file(f, "--split", "split JSON file")


def run(args: argparse.Namespace) -> int:
    check_inputs(args.kind, args.path, args.split)
    out, examples = summarize(args.kind, args.path, args.split)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{args.kind}: {args.path}")
    for key in ("videos", "segments", "sentences", "classes"):
        if key in out:
            print(f"  {key:10s} {out[key]:,}")
    for f, s in out.get("splits", {}).items():
        print(f"  split {f}: {s['training']} training / {s['testing']} testing classes {s['problems'] or ''}")
    if not out["problems"]:
        print("  problems   none")
    for name, count in sorted(out["problems"].items()):
        print(f"  problem {name}: {count:,}")
        for ex in examples.get(name, []):
            print(f"      e.g. {ex}")
    return 0
