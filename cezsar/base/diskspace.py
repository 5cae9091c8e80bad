"""Free disk space, checked before a stage writes and named when a write still fails (docs/errors.md "A full disk").

A stage that writes more than a few MB (extracted features, the training feature bank, checkpoints, the sentence
cache) estimates its output and calls `require_space` first, which refuses with one line
"needs ≈ N GB under DIR, M GB free". A write that still runs out of room (the disk filled meanwhile, a quota)
is turned by `cezsar.base.atomic.write_atomic` into a `DiskFullError` naming the file; its temp file is removed, so
nothing half-written is left under a final name.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from cezsar.errors import DiskFullError

# write failures that mean "no room": errno of the OS, and the messages of writers that drop the errno
# (numpy's short fwrite "N requested and M written", torch's zip writer "file write failed")
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_MESSAGES = ("no space left", "disk quota", "requested and", "file write failed")
SLACK = 16 << 20  # bytes kept free beyond an estimate: the file system's own metadata, logs, small files


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes free to this user on the file system that holds `path` (or its nearest existing parent)."""
    return shutil.disk_usage(_existing(Path(path).expanduser().absolute())).free


def gb(n: float) -> str:
    """Bytes as "1.2 GB" (decimal GB, as `df -H` says), two significant digits below 10."""
    value = n / 1e9
    return f"{value:.2g} GB" if value < 10 else f"{value:.0f} GB"


def require_space(folder: str | os.PathLike, need: int, what: str = "") -> None:
    """Refuse (DiskFullError) when `need` bytes (plus a small slack) do not fit under `folder` now."""
    need = int(need)
    if need <= 0:
        return
    free = free_bytes(folder)
    if need + SLACK > free:
        lead = f"{what}: " if what else ""
        raise DiskFullError(f"{lead}needs ≈ {gb(need)} under {folder}, {gb(free)} free; free some space or write "
                            "elsewhere", folder)


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` (or an exception it was raised from) is a write that ran out of room."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, DiskFullError):
            return True
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if isinstance(err, (OSError, RuntimeError)) and any(m in str(err).lower() for m in _FULL_MESSAGES):
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


def full_error(err: BaseException, path: str | os.PathLike) -> DiskFullError:
    """The one-line DiskFullError of a write to `path` that failed with `err` (`is_disk_full(err)`)."""
    if isinstance(err, DiskFullError):
        return err
    try:
        free = f", {gb(free_bytes(Path(path).parent))} free"
    except OSError:
        free = ""
    return DiskFullError(f"{path}: disk full while writing ({type(err).__name__}: {' '.join(str(err).split())[:80]}"
                         f"{free}); nothing was written under this name; free some space or write elsewhere", path)
