"""Atomic file writes, used for every output the package keeps (features, caches, triplets, checkpoints,
tables, results): the bytes go to a hidden temp file beside the target, reach the disk (fsync), and are
renamed over the target, so a killed run leaves either the old file or the new one, never half of one.

The temp name `.<name>.<pid>.tmp` is hidden (FeatureStore and the caches skip dot-files) and per process
(shards of one job array writing into one folder never share a temp file).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Callable


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(fh)` on a binary temp file, fsync it and rename it to `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():  # write() raised: leave nothing behind
            tmp.unlink()
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda fh: fh.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text, atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1, **dumps: Any) -> Path:
    """`json.dumps(obj, indent=indent, **dumps)` plus a final newline, atomically."""
    return write_text(path, json.dumps(obj, indent=indent, **dumps) + "\n")


def writer_alive(pid: int) -> bool:
    """Whether the process that owns a temp file still runs (our own pid counts as gone: a leftover of ours is
    from an earlier call that failed)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files `write_atomic` left in `folder` when its writer was killed (kill -9 skips the
    clean-up): `.<name>.<pid>.tmp` whose process no longer runs. A live writer's temp file (another shard) is
    kept. Returns what was removed."""
    folder = Path(folder)
    removed = []
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
        pid = tmp.name[:-len(".tmp")].rsplit(".", 1)[-1]
        if pid.isdigit() and not writer_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
