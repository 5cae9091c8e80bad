"""Work that `cezsar.training.train.fit` moves off the training loop's path (docs/decisions.md §16): the next epoch's
batch order is drawn on a thread while this epoch trains, and an epoch's checkpoints and logs are written on a
thread while the next epoch trains.

Crash safety is unchanged: a checkpoint is still written atomically (`cezsar.base.atomic.write_atomic`), at most one
write is in flight, and the state it holds is a copy taken when the epoch ended (the model, the optimiser and
the RNG states, the history so far). A kill -9 while epoch e + 1 trains leaves last.pt at epoch e (or e - 1 if
e's write had not finished), and `--resume` recomputes the rest bit for bit on a CPU: nothing recorded as done
is lost. `on_epoch_end` hooks run on the calling thread, once that epoch's files are on disk.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch


class OrderAhead:
    """`order(epoch)` (a pure function of the epoch) for the epoch asked, and the next one started on a thread."""

    def __init__(self, order: Callable[[int], np.ndarray], enabled: bool) -> None:
        self.order = order
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="epoch-order") if enabled else None
        self.pending: dict[int, Future] = {}

    def get(self, epoch: int, next_epoch: int | None = None) -> np.ndarray:
        """The order of `epoch` (drawn ahead when it was), then starts `next_epoch`'s."""
        future = self.pending.pop(epoch, None)
        order = future.result() if future is not None else self.order(epoch)
        if self.pool is not None and next_epoch is not None:
            self.pending[next_epoch] = self.pool.submit(self.order, next_epoch)
        return order

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending.clear()


def snapshot(obj: Any) -> Any:
    """A copy of a checkpoint's contents that later training steps cannot change: tensors copied to host memory
    (pinned, non-blocking from a GPU; `CheckpointWriter.submit` waits for the copies), dicts, lists and tuples
    rebuilt, other values shared (they are immutable or replaced, never mutated, by `fit`)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.device.type == "cpu":
            return t.clone()
        out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        return out.copy_(t, non_blocking=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """Runs an epoch's file writes on one thread, at most one at a time; `enabled=False` runs them inline.

    `submit(write, done)`: waits for the previous write (and runs its `done` hook), then starts `write`.
    `close()`: waits for the last one. An error in a write is raised by the next `submit` or by `close`.
    """

    def __init__(self, enabled: bool) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint") if enabled else None
        self.future: Future | None = None
        self.done: Callable[[], None] | None = None

    def submit(self, write: Callable[[], None], done: Callable[[], None] | None = None) -> None:
        self.wait()
        if self.pool is None:
            write()
            if done is not None:
                done()
            return
        event = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            event = torch.cuda.Event()
            event.record()  # after the snapshot's non-blocking copies to pinned memory

        def job() -> None:
            if event is not None:
                event.synchronize()
            write()

        self.future, self.done = self.pool.submit(job), done

    def wait(self) -> None:
        """Blocks until the write in flight is on disk, then runs its hook."""
        future, done = self.future, self.done
        self.future = self.done = None
        if future is not None:
            future.result()
            if done is not None:
                done()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
