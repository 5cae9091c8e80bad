"""The process group of a `torchrun` launch (docs/decisions.md §13): rank, world size, collectives.

`torchrun --nproc-per-node N` (or a cluster launcher that sets the same variables) starts N copies of a
command with RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT) in their environment. Every function here
is a no-op, or returns the one-process answer, when WORLD_SIZE is 1 or unset, so a plain run computes exactly
what it computed before this module existed.

Backends: NCCL when the run's device is CUDA, Gloo otherwise (and for extraction, whose only collective is
the final barrier, `init(..., backend="gloo")`).
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in this launch: WORLD_SIZE, 1 when unset."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    """This process's rank in [0, world_size()): RANK, 0 when unset."""
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    """This process's index on its machine (which GPU it uses): LOCAL_RANK, 0 when unset."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_distributed() -> bool:
    """Whether this process is one of several (WORLD_SIZE > 1)."""
    return world_size() > 1


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints, logs, merged reports and prints."""
    return rank() == 0


def init(device: torch.device | str = "cpu", backend: str | None = None,
         timeout: datetime.timedelta | None = None) -> bool:
    """Join the launch's process group (idempotent); True when there is one (WORLD_SIZE > 1).

    backend: NCCL for a CUDA device, Gloo otherwise, unless given. On CUDA the process first selects its
    own GPU, `cuda:LOCAL_RANK`, so NCCL and every `.to("cuda")` use it.
    """
    if not is_distributed():
        return False
    if dist.is_initialized():
        return True
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device.index if device.index is not None else local_rank())
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    kwargs = {"timeout": timeout} if timeout is not None else {}
    dist.init_process_group(backend=backend, **kwargs)  # env:// — RANK, WORLD_SIZE, MASTER_ADDR/PORT
    # a group still alive at interpreter exit can abort the process ("terminate called without an active
    # exception") after its work is done; leaving it first makes a finished rank exit 0
    atexit.register(cleanup)
    return True


def active() -> bool:
    """Whether collectives are live: several processes and the group joined (`init`)."""
    return is_distributed() and dist.is_initialized()


def barrier() -> None:
    """Wait until every rank gets here (no-op alone)."""
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first, then the others: for a cache only one process should build (the
    feature bank, the sentence cache) and the others then read."""
    if not active():
        yield
        return
    if not is_main():
        dist.barrier()
    try:
        yield
    finally:
        if is_main():
            dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s picklable `obj` on every rank (the shared early-stopping decision)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order, on every rank ([obj] alone)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """`t` summed over the ranks, in place (unchanged alone)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def cleanup() -> None:
    """Leave the process group (end of a command); no-op when none was joined."""
    if dist.is_available() and dist.is_initialized():
        # every rank reaches this point before any leaves: rank 0 hosts the group's store, and a rank still
        # talking to it after rank 0 exited aborts (SIGABRT) instead of ending cleanly
        with contextlib.suppress(RuntimeError):
            dist.barrier()
        dist.destroy_process_group()
