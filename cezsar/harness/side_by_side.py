"""Jobs run side by side, one spawned process each, every process with a fixed number of torch threads
(docs/decisions.md, 'Training threads'). Training the τ of the ablation this way keeps a small CPU's cores busy
(each process's products run at one core's full rate; two threads on one product share a core far less well),
and the fixed thread count keeps every trained number independent of how many cores the machine has.

Each process's printed lines come back to this process, prefixed with its job's name, so a notebook shows them.
When a job fails, the others are stopped (a training run resumes from its last epoch) and the job's own exception
is raised here, with the job named.
"""
from __future__ import annotations

import io
import multiprocessing as mp
import pickle
import queue as queue_mod
import sys
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout

import torch


class _Lines(io.TextIOBase):
    """A text stream that sends each complete line to a queue, prefixed; progress-bar redraws ('\\r') are dropped
    (a bar is one process's view; the epoch lines say the same)."""

    def __init__(self, q, prefix: str) -> None:
        self.q, self.prefix, self.buf = q, prefix, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.buf += text
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            if line.strip() and "\r" not in line:
                self.q.put(("line", self.prefix + line))
        return len(text)


def _worker(q, name: str, fn: Callable, args: tuple, threads: int) -> None:
    torch.set_num_threads(threads)
    out = _Lines(q, f"[{name}] ")
    try:
        with redirect_stdout(out), redirect_stderr(out):
            result = fn(*args)
        out.write("\n")
        q.put(("done", name, pickle.dumps(result)))
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        out.write("\n")
        try:  # pickled here, and read back, so that an exception that cannot cross is sent as its text
            payload = pickle.dumps(err)
            pickle.loads(payload)
        except Exception:
            payload = pickle.dumps(RuntimeError(f"{type(err).__name__}: {err}"))
        q.put(("error", name, payload, traceback.format_exc()))


def run_side_by_side(fn: Callable, jobs: dict[str, tuple], threads: int = 1) -> dict[str, object]:
    """`fn(*jobs[name])` for every job at once, each in its own spawned process with `threads` torch threads;
    {name: its return value}. `fn` and its arguments must be importable and picklable."""
    ctx = mp.get_context("spawn")  # no inherited torch or thread-pool state
    q = ctx.Queue()
    procs = {name: ctx.Process(target=_worker, args=(q, name, fn, args, threads), name=f"cezsar {name}", daemon=True)
             for name, args in jobs.items()}
    for p in procs.values():
        p.start()
    results: dict[str, object] = {}
    try:
        while len(results) < len(procs):
            try:
                msg = q.get(timeout=1.0)
            except queue_mod.Empty:
                dead = [n for n, p in procs.items() if n not in results and not p.is_alive() and q.empty()]
                if dead:
                    raise RuntimeError(f"{dead[0]}: its process ended without a result (exit code "
                                       f"{procs[dead[0]].exitcode}; out of memory?); finished epochs are kept")
                continue
            if msg[0] == "line":
                print(msg[1], flush=True)
            elif msg[0] == "done":
                results[msg[1]] = pickle.loads(msg[2])
            else:
                _, name, payload, tb = msg
                err = pickle.loads(payload)
                print(f"[{name}] {tb.rstrip()}", file=sys.stderr, flush=True)
                if hasattr(err, "add_note"):
                    err.add_note(f"(in the side-by-side job {name})")
                raise err
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
        for p in procs.values():
            p.join(timeout=30)
    return results
