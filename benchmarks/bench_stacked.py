"""Benchmark: K training seeds stacked in one process (`cezsar.training.stacked`) against K sequential single-model
runs.

Same data (bench_train's "small" workload: 40 videos x 40-80 s x 1280-d, 9,600 triplets, the paper's
d_model 512 model, dropout 0.1), same seeds, same batch orders (each seed its own `epoch_order`), same number of
steps; the sequential path is `cezsar.training.eager_step.train_one_epoch` (the packed single-model step) once per seed,
the stacked path `cezsar.training.stacked._stacked_epoch` once for all. Both in the same process, rounds interleaved, so
the ratio is what to read on a shared machine.

    python benchmarks/bench_stacked.py                    # 5 seeds, 2 threads, 30 steps per round
    python benchmarks/bench_stacked.py --seeds 5 --threads 2 --steps 30 --rounds 3 --batch 128
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from cezsar.config import ModelConfig, TrainConfig
from cezsar.training.featurebank import epoch_order, to_tensors, window_index
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.stacked import _stacked_epoch, stack_optimizer
from cezsar.training.stacked_model import StackedEmbedders
from cezsar.training.train import seed_everything
from cezsar.training.eager_step import make_optimizer, train_one_epoch

SPEC = dict(videos=40, seconds=(40, 80), dim=1280, windows=8, per_window=30, sentences=3000)


def workload(seed: int = 0) -> dict:
    """Random video lengths and triplets shaped like mined ActivityNet triplets (windows of 3-10 s)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(SPEC["seconds"][0], SPEC["seconds"][1] + 1, SPEC["videos"])
    w_video = np.repeat(np.arange(SPEC["videos"]), SPEC["windows"])
    dur = rng.uniform(3, 10, len(w_video))
    w_start = rng.uniform(0, np.maximum(lengths[w_video] - dur, 0))
    k = SPEC["per_window"]
    return {"lengths": lengths, "video": np.repeat(w_video, k), "start": np.repeat(w_start, k).astype(np.float32),
            "end": np.repeat(w_start + dur, k).astype(np.float32),
            "pos": rng.integers(0, SPEC["sentences"], len(w_video) * k),
            "neg": rng.integers(0, SPEC["sentences"], len(w_video) * k)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30, help="steps per seed per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--group", type=int, default=8, help="FastPathConfig.group of the batch order")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    w = workload()
    rng = np.random.default_rng(1)
    offsets = np.concatenate([[0], np.cumsum(w["lengths"])]).astype(np.int64)
    bank = rng.normal(size=(int(offsets[-1]), SPEC["dim"])).astype(np.float16)
    text = rng.normal(size=(SPEC["sentences"], 384)).astype(np.float32)
    cfg = ModelConfig(feat_dim=SPEC["dim"], text_dim=384)
    tcfg = TrainConfig(batch=args.batch, device="cpu")
    rows, mask, win, _ = window_index(w["video"], w["start"], w["end"], offsets, cfg.max_len)
    data = to_tensors(bank, rows, mask, win, w["pos"], w["neg"], text, device)
    idx = np.arange(len(w["video"]))
    seeds = list(range(args.seeds))
    n = args.steps * args.batch

    def orders(epoch: int) -> list[np.ndarray]:
        return [epoch_order(win, idx, s, epoch, args.group)[:n] for s in seeds]

    def sequential(epoch: int) -> float:
        t = 0.0
        for s, order in zip(seeds, orders(epoch)):
            seed_everything(s)
            model = JointEmbedder(cfg)
            opt = make_optimizer(model, tcfg)
            train_one_epoch(model, data, opt, order[:args.batch], tcfg, device)  # warm-up step
            t0 = time.perf_counter()
            train_one_epoch(model, data, opt, order, tcfg, device)
            t += time.perf_counter() - t0
        return t

    def stacked(epoch: int) -> float:
        models = []
        for s in seeds:
            seed_everything(s)
            models.append(JointEmbedder(cfg))
        net = StackedEmbedders(models)
        opt = stack_optimizer(net, tcfg, [None] * len(seeds))
        o = orders(epoch)
        _stacked_epoch(net, data, opt, [x[:args.batch] for x in o], tcfg, device)  # warm-up step
        t0 = time.perf_counter()
        _stacked_epoch(net, data, opt, o, tcfg, device)
        return time.perf_counter() - t0

    seq, stk = [], []
    for rnd in range(args.rounds):  # interleaved: machine noise hits both alike
        seq.append(sequential(rnd))
        stk.append(stacked(rnd))
        print(f"round {rnd}: {args.seeds} sequential {seq[-1]:.2f} s, {args.seeds} stacked {stk[-1]:.2f} s, "
              f"ratio {seq[-1] / stk[-1]:.2f}", flush=True)
    ratio = statistics.median(a / b for a, b in zip(seq, stk))
    out = {"seeds": args.seeds, "threads": args.threads, "steps_per_seed": args.steps, "batch": args.batch,
           "group": args.group, "sequential_s": seq, "stacked_s": stk, "ratio_median": round(ratio, 2),
           "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    print(json.dumps(out))
    print(f"stacked / sequential speed-up (median of {args.rounds} rounds): {ratio:.2f}x")


if __name__ == "__main__":
    main()
