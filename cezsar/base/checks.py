"""Input checks at the command boundary: cheap checks of paths, numbers and files that a command runs before its
first expensive step, each failure one line of `cezsar.errors` (`UsageError`, exit 2; `DataError`, exit 1) naming
the input (option and path), what is wrong and what to do (docs/errors.md).

No model is loaded and no video decoded here, and torch only by `require_device` (inside it, lazy on purpose), so a
usage error is reported before torch loads. A feature folder and the encoders a command names are opened with the
same one-line errors by `cezsar.encoders.feature_folder` and `cezsar.encoders.factory`.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from cezsar.base.atomic import stale_temp
from cezsar.errors import DataError, UsageError
from cezsar.base.textio import read_json


def first_sentence(err: BaseException, limit: int = 120) -> str:
    """The first sentence of an exception's message, on one line (library messages can run for lines)."""
    text = " ".join(str(err).split())
    first = re.split(r"(?<=[a-z0-9)])\. ", text, maxsplit=1)[0] if text else ""
    return (first[:limit] + ("..." if len(first) > limit else "")) or type(err).__name__


def _label(option: str | None, path: Path) -> str:
    return f"{option} {path}" if option else str(path)


def _require(path: str | os.PathLike, option: str | None, what: str, hint: str | None, folder: bool) -> Path:
    """`path` must exist as a readable file (folder=False) or folder; else UsageError naming `option` and the path."""
    p = Path(path).expanduser()
    where = _label(option, p)
    tail = f"; {hint}" if hint else ""
    if folder and p.is_file():
        raise UsageError(f"{where}: is a file, expected a {what}{tail}")
    if not folder and p.is_dir():
        raise UsageError(f"{where}: is a folder, expected a {what}{tail}")
    if not p.exists() or (folder and not p.is_dir()):
        raise UsageError(f"{where}: no such {what}{tail}")
    if not folder and not p.is_file():
        raise UsageError(f"{where}: not a regular file, expected a {what}{tail}")
    if not os.access(p, os.R_OK | (os.X_OK if folder else 0)):
        raise UsageError(f"{where}: not readable (permissions){tail}")
    return p


def require_file(path: str | os.PathLike, option: str | None = None, what: str = "file",
                 hint: str | None = None) -> Path:
    """`path` must be an existing, readable regular file; else UsageError naming `option` and the path."""
    return _require(path, option, what, hint, folder=False)


def require_dir(path: str | os.PathLike, option: str | None = None, what: str = "folder",
                hint: str | None = None) -> Path:
    """`path` must be an existing, readable folder; else UsageError naming `option` and the path."""
    return _require(path, option, what, hint, folder=True)


def require_path(path: str | os.PathLike, option: str | None = None, what: str = "file or folder",
                 hint: str | None = None) -> Path:
    """`path` must exist (a file or a folder)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"{_label(option, p)}: no such {what}" + (f"; {hint}" if hint else ""))
    return p


def _writable_parent(p: Path, where: str) -> None:
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{where}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{where}: cannot write under {parent} (permissions)")


def require_output(path: str | os.PathLike, option: str | None = None) -> Path:
    """An output file: not a folder, and its nearest existing parent a writable folder (nothing created)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{_label(option, p)}: is a folder, expected a file name to write")
    _writable_parent(p, _label(option, p))
    return p


def require_output_dir(path: str | os.PathLike, option: str | None = None) -> Path:
    """An output folder: an existing folder, or a path whose nearest existing parent is a writable folder."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{_label(option, p)}: is a file, expected a folder to write into")
    if not p.exists():
        _writable_parent(p, _label(option, p))
    return p


def require_positive(value: float | int | None, option: str, minimum: float = 1, allow_none: bool = True) -> None:
    """A numeric option must be >= `minimum` (and finite)."""
    if value is None and allow_none:
        return
    if value is None or value != value or value < minimum or value in (float("inf"), float("-inf")):
        raise UsageError(f"{option} {value}: must be at least {minimum:g}")


def require_range(value: float | None, option: str, low: float, high: float) -> None:
    """A numeric option must lie in [low, high]."""
    if value is None:
        return
    if value != value or not (low <= value <= high):
        raise UsageError(f"{option} {value}: must lie between {low:g} and {high:g}")


def read_json_file(path: str | os.PathLike, option: str | None = None, what: str = "JSON file") -> Any:
    """Parse a JSON file the command needs; DataError naming it when it is unreadable or malformed."""
    p = require_file(path, option, what)
    return read_json(p, what, DataError) if option is None else _with_option(option, read_json, p, what)


def _with_option(option: str, read: Any, p: Path, what: str) -> Any:
    """`read(p, what, DataError)` with the option named before the path in its message."""
    try:
        return read(p, what, DataError)
    except DataError as err:
        raise DataError(f"{option} {err}") from None


def require_device(name: str, option: str = "--device") -> str:
    """A torch device the machine has: "cpu", "auto", or "cuda[:k]" only when CUDA is available."""
    if name in ("cpu", "auto"):
        return name
    if not (name == "cuda" or name.startswith("cuda:")):
        raise UsageError(f"{option} {name}: unknown device; use cpu, cuda or auto")
    import torch  # lazy: only a CUDA device needs torch; a usage error is reported before torch loads

    if not torch.cuda.is_available():
        raise UsageError(f"{option} {name}: torch sees no CUDA device here; use --device cpu")
    return name


def clear_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the hidden temp files `cezsar.base.atomic` left beside `path` when a writer was killed (kill -9
    skips its clean-up): `.<name>.<pid>@<host>.tmp` whose process no longer runs (`atomic.stale_temp`).
    Returns what was removed."""
    p = Path(path)
    removed = []
    for tmp in p.parent.glob(f".{p.name}.*.tmp") if p.parent.is_dir() else []:
        if stale_temp(tmp.name[len(p.name) + 2:-len(".tmp")]):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def check_feature_bank_cache(folder: str | os.PathLike) -> None:
    """The training feature-bank cache (`featurebank-<dtype>.npy` + `.json` in a run's cache/ folder) must be
    readable where it exists; a damaged one is a DataError naming the file (it is rebuilt once deleted)."""
    import numpy as np  # lazy: CLI start-up (every command imports this module; only this check reads arrays)

    for index in sorted(Path(folder).glob("featurebank-*.json")):
        bank = index.with_suffix(".npy")
        try:
            meta = json.loads(index.read_text(encoding="utf-8"))
            rows = int(meta["offsets"][-1]) if isinstance(meta, dict) and meta.get("offsets") else None
            if bank.exists():
                shape = np.load(bank, mmap_mode="r", allow_pickle=False).shape
                if rows is not None and shape[0] != rows:
                    raise ValueError(f"{shape[0]} rows, its index says {rows}")
        except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
            reason = first_sentence(err, 100)
            raise DataError(f"{index.parent}: damaged feature-bank cache {index.name} / {bank.name} ({reason}); "
                            f"delete both files, they are rebuilt from --features") from err
