"""`cezsar verify RUN_DIR`: compare a run's stage digests with the committed ones (docs/interfaces.md, "verify").

Exit 0 when every stage is within its tolerance; 1 naming the first stage that diverges, by how much, and the
recorded environment differences that might explain it. `--write FILE` only writes the run's digests (the
command that refreshes the committed reference: `cezsar verify runs/embedded --write data/digests/embedded.json`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from cezsar import config
from cezsar.base import checks
from cezsar.base.atomic import write_json
from cezsar.errors import ParameterError, UsageError

HELP = "Compare a run's stage digests (data, features, SBERT, triplets, first epoch, accuracies) with the committed."
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar verify runs/embedded',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the run's folder, e.g. runs/embedded (results.json, executed notebooks)")
    parser.add_argument("--params", default=None,
                        help="its parameter set (default: params/<run folder name>.yaml)")
    parser.add_argument("--reference", default=None,
                        help="the reference digests (default: data/digests/<set>.<name>.json of the run's "
                             "training kernels where one is committed, else data/digests/<set>.json)")
    parser.add_argument("--write", default=None, metavar="FILE",
                        help="write the run's digests to FILE and compare nothing (refreshes a reference)")
    parser.add_argument("--stages", default=None,
                        help="comma-separated subset of data,features,sbert,triplets,first_epoch,accuracies")
    parser.add_argument("--json", action="store_true", help="print the verdict as one JSON document")


def run(args: argparse.Namespace) -> int:
    from cezsar.base import environment  # lazy: loads importlib.metadata; `cezsar --help` runs without it
    from cezsar.harness import digests  # lazy: loads numpy; `cezsar --help` runs without it
    from cezsar.harness import references  # lazy: with digests, as above
    from cezsar.harness.layout import layout_from  # lazy: loads numpy; `cezsar --help` runs without it
    from cezsar.harness.params import settings  # lazy: loads yaml; `cezsar --help` runs without it

    run_dir = checks.require_dir(args.run_dir, None, "run folder")
    params = Path(args.params) if args.params else config.PROJ_ROOT / "params" / f"{run_dir.name}.yaml"
    checks.require_file(params, "--params", "parameter set")
    stages = digests.STAGES
    if args.stages:
        stages = tuple(x.strip() for x in args.stages.split(",") if x.strip())
        bad = [x for x in stages if x not in digests.STAGES]
        if bad:
            raise UsageError(f"--stages: unknown stage {bad[0]!r} (known: {', '.join(digests.STAGES)})")
    try:
        s = settings(params)
    except ParameterError as err:
        raise UsageError(f"--params: {err}") from err
    lay = dataclasses.replace(layout_from(s), run_dir=run_dir)
    ours = digests.compute(lay, s, stages)
    if args.write:
        target = checks.require_output(args.write, "--write")

        if ours["environment"] is None:  # a run without results.json: record this process's environment
            ours["environment"] = environment.record(str(s.device))
        write_json(target, ours, indent=1)
        print(f"wrote the digests of {run_dir} to {target}")
        return 0
    now = environment.record(str(s.device))
    # the run's own record decides its kernels (it may have been trained elsewhere); this process's when it has none
    ref_path = Path(args.reference) if args.reference else references.choose(params, ours["environment"] or now)
    reference = checks.read_json_file(ref_path, "--reference", "reference digests")
    verdict = digests.compare(ours, reference, now=now)
    verdict["reference"] = references.shown(ref_path)
    verdict["reference_role"] = references.role(ref_path, params)

    write_json(run_dir / "digests.json", ours, indent=1)  # the run's own digests, beside its results
    write_json(run_dir / "verify.json", verdict, indent=1)  # the report shows it
    print(json.dumps(verdict, indent=1) if args.json else digests.verdict_text(verdict))
    return 0 if verdict["same"] else 1
