"""Atomic file writes, used for every output the package keeps (features, caches, triplets, checkpoints,
tables, results): the bytes go to a hidden temp file beside the target, reach the disk (fsync), and are
renamed over the target, so a killed run leaves either the old file or the new one, never half of one.

The temp name `.<name>.<pid>@<host>.tmp` is hidden (FeatureStore and the caches skip dot-files) and per process
and machine (shards of one job array, or ranks on several nodes, writing into one shared folder never share a
temp file, and a clean-up on one node never takes another node's file in flight for a dead writer's).
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import IO, Any, Callable

from cezsar.base.diskspace import full_error, is_disk_full


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(fh)` on a binary temp file, fsync it and rename it to `path`; returns the path.

    A write that runs out of room (ENOSPC, EDQUOT, or a writer's short write) raises `diskspace.DiskFullError`
    naming `path`; the temp file is removed and `path` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}@{_HOST}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        if is_disk_full(err):
            raise full_error(err, path) from err
        raise
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


_HOST = socket.gethostname().replace(".", "_").replace("@", "_") or "host"  # no dots: the name splits on them


def stale_temp(owner: str) -> bool:
    """Whether a temp file whose name carries `owner` ("<pid>@<host>", or "<pid>" from before hosts were
    recorded) was left by a dead writer of this machine. Another machine's file is never judged stale: its pid
    means nothing here."""
    pid, _, host = owner.partition("@")
    if not pid.isdigit() or (host and host != _HOST):
        return False
    return not writer_alive(int(pid))


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
    clean-up): `.<name>.<pid>@<host>.tmp` whose process no longer runs (`stale_temp`). A live writer's temp
    file (another shard) and another machine's are kept. Returns what was removed."""
    folder = Path(folder)
    removed = []
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
        if stale_temp(tmp.name[:-len(".tmp")].rsplit(".", 1)[-1]):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
