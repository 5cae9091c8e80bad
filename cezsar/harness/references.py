"""Which committed digests a run is compared with (docs/interfaces.md, "verify").

A parameter set has one committed run, data/digests/<set>.json, the run whose tables and figures the repository
shows. It may also have reference runs made on other training kernels, data/digests/<set>.<name>.json (e.g.
embedded.avx2.json): training's float sums round by the kernels that compute them (the CPU's vector family and its
matrix-product library, or the GPU), so two machines with the same kernels train the same bits and two with other
kernels part at the first epoch (docs/decisions.md, "CPU matrix products"). A run is compared with the reference of
its own kernels where one is committed, else with the committed run.
"""
from __future__ import annotations

import json
from pathlib import Path

from cezsar import config
from cezsar.base.environment import training_kernels


def _committed(params_file: str | Path, folder: Path | None) -> Path:
    """data/digests/<set>.json (or <set>.json in `folder`): the committed run's digests, present or not."""
    return (folder or config.PROJ_ROOT / "data" / "digests") / f"{Path(params_file).stem}.json"


def reference_files(params_file: str | Path, folder: Path | None = None) -> list[Path]:
    """The committed digests of a parameter set: <set>.json (the committed run) first, then each <set>.<name>.json
    by name. Only files that exist."""
    main = _committed(params_file, folder)
    return ([main] if main.is_file() else []) + sorted(main.parent.glob(f"{main.stem}.*.json"))


def choose(params_file: str | Path, env: dict | None, folder: Path | None = None) -> Path:
    """The reference a run made in `env` is compared with: the first of `reference_files` recorded with the same
    `environment.training_kernels`, else the first of them (the committed run where it exists), else the absent
    <set>.json (the caller says there is nothing to compare with)."""
    files = reference_files(params_file, folder)
    want = training_kernels(env)
    for path in files:
        if want and training_kernels(json.loads(path.read_text()).get("environment")) == want:
            return path
    return files[0] if files else _committed(params_file, folder)


def role(path: Path, params_file: str | Path) -> str:
    """How a verdict names a reference file: "the committed run" (<set>.json), the reference run of some training
    kernels (<set>.<name>.json), or a reference given by path."""
    stem = Path(params_file).stem
    if path.name == f"{stem}.json":
        return "the committed run"
    if path.name.startswith(f"{stem}.") and path.suffix == ".json":
        return "the reference run of these training kernels"
    return "the reference given"


def shown(path: Path) -> str:
    """A reference's path as a verdict prints it: relative to the project when inside it (data/digests/…)."""
    try:
        return path.resolve().relative_to(config.PROJ_ROOT.resolve()).as_posix()
    except ValueError:
        return str(path)
