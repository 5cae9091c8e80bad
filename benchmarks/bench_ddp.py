"""Benchmark: data-parallel training on 2 torchrun ranks against 1 process (docs/decisions.md §13).

The same workload (bench_train's "small" one: 40 videos, 1280-d, 9,600 triplets), the same global batch
(128), the same `cezsar.training.train.fit`, launched by `python -m torch.distributed.run --standalone`:

    one process, T threads      torchrun --nproc-per-node 1, torch.set_num_threads(T)   (all the cores: the baseline)
    2 ranks, T/2 threads each   torchrun --nproc-per-node 2                              (the same cores, DDP over Gloo)
    one process, T/2 threads    (what one rank would do alone: the ideal 2x is against this)

The ratio to read, `ratio_two_ranks_over_one_process`, is 2 ranks over the faster one-process setting (on a
small shared CPU, one thread can beat all of them: OpenMP threads spin-wait on busy cores).

Each run trains `--epochs` epochs without validation triplets; the figure is the median training throughput of
the epochs after the first (warm-up). Runs alternate `--repeats` times in one invocation; the ratio of medians
is what to read on a shared machine.

    python benchmarks/bench_ddp.py                      # prints one JSON document with the ratio
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_train import SCALES, workload  # noqa: E402  (a sibling script, not a package)

from cezsar.config import FastPathConfig, ModelConfig, TrainConfig  # noqa: E402
from cezsar.training.train import fit  # noqa: E402


class MemoryStore:
    """FeatureStore's interface over arrays in memory (the workload's random features)."""

    def __init__(self, stacks: dict[str, np.ndarray]) -> None:
        self.stacks, self.ids = stacks, sorted(stacks)
        self.dim = int(next(iter(stacks.values())).shape[1])

    def load(self, vid: str) -> np.ndarray:
        return self.stacks[vid]


class Triplets:
    """The TripletSet fields `fit` reads."""

    def __init__(self, w: dict, n_sentences: int) -> None:
        self.video, self.start, self.end, self.pos, self.neg = w["video"], w["start"], w["end"], w["pos"], w["neg"]
        self.val = np.zeros(len(self.video), bool)  # training throughput only: no validation pass
        self.video_ids = [f"v{i:05d}" for i in range(len(w["lengths"]))]
        self.sentences = [f"s{i}" for i in range(n_sentences)]
        self.text_model, self.summary = "random", {}


def worker(args: argparse.Namespace) -> None:
    """One rank (or the one process): build the workload, train, rank 0 writes the epochs' throughput."""
    torch.set_num_threads(args.threads)
    spec = SCALES[args.scale]
    w = workload(spec)
    rng = np.random.default_rng(1)
    stacks = {f"v{i:05d}": rng.standard_normal((int(n), spec["dim"])).astype(np.float32)
              for i, n in enumerate(w["lengths"])}  # (T, D) per video
    text = rng.standard_normal((spec["sentences"], 384)).astype(np.float32)  # (S, 384) sentence vectors
    res = fit(Triplets(w, spec["sentences"]), MemoryStore(stacks), text,
              TrainConfig(batch=args.batch, epochs=args.epochs, patience=args.epochs, device="cpu"),
              ModelConfig(dropout=0.0), args.folder, fast=FastPathConfig(bank_dtype="float32"), progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(args.result).write_text(json.dumps({"history": res["history"], "triplets": res["data"]["triplets"]}))


def launch(nproc: int, threads: int, args: argparse.Namespace, tmp: Path, tag: str) -> dict:
    """One run under torchrun: its epochs' triplets/s (median after the first epoch)."""
    result = tmp / f"{tag}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           __file__, "--worker", "--threads", str(threads), "--folder", str(tmp / tag), "--result", str(result),
           "--epochs", str(args.epochs), "--batch", str(args.batch), "--scale", args.scale]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    hist = json.loads(result.read_text())["history"]
    rates = [r["triplets_per_s"] for r in hist[1:]]
    return {"ranks": nproc, "threads_per_rank": threads, "triplets_per_s": statistics.median(rates),
            "epoch_seconds": [r["seconds"] for r in hist], "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help="threads of the one-process baseline (default: all cores)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up (default 3)")
    ap.add_argument("--batch", type=int, default=128, help="global batch (default 128, paper §4)")
    ap.add_argument("--scale", default="small", choices=sorted(SCALES), help="bench_train's workload (default small)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each setting (default 2)")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    cores = args.threads or os.cpu_count() or 2
    half = max(1, cores // 2)
    runs: dict[str, list[dict]] = {"one_process_all_cores": [], "two_ranks": [], "one_process_half_cores": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for r in range(args.repeats):
            runs["one_process_all_cores"].append(launch(1, cores, args, tmp, f"one{r}"))
            runs["two_ranks"].append(launch(2, half, args, tmp, f"two{r}"))
            runs["one_process_half_cores"].append(launch(1, half, args, tmp, f"half{r}"))
    med = {k: statistics.median(x["triplets_per_s"] for x in v) for k, v in runs.items()}
    print(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2), "torch": torch.__version__},
        "workload": {"scale": args.scale, "global_batch": args.batch, "epochs": args.epochs,
                     "backend": "gloo", "device": "cpu"},
        "triplets_per_s": med,
        # the speed-up to report: 2 ranks against the faster of the two one-process settings on the same cores
        "ratio_two_ranks_over_one_process": round(med["two_ranks"] / max(med["one_process_all_cores"],
                                                                       med["one_process_half_cores"]), 3),
        "ratio_two_ranks_over_one_process_all_cores": round(med["two_ranks"] / med["one_process_all_cores"], 3),
        "ratio_two_ranks_over_one_rank_alone": round(med["two_ranks"] / med["one_process_half_cores"], 3),
        "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
