"""Benchmark: training throughput (triplets/s) of the fast data path against the released code's style.

Reference, as the released code feeds its model: the triplets are a pickled list of (video id, start, end,
positive, negative); a torch Dataset does one `np.load` of the video's feature file per triplet, slices and
zero-pads its window; a DataLoader (batch 128, shuffled) collates them; every triplet's window goes through
the VEM. Fast path (`cezsar.training.featurebank` + `cezsar.training.eager_step.train_one_epoch`): one contiguous
feature array, windows as row-index matrices, each distinct window and sentence forwarded once per batch. Same model,
same optimiser, same number of steps, in the same process; the ratio is what to read on a noisy machine.
"fast_iid" is an i.i.d. shuffle (the training default, `batch_makeup: iid`), "fast_g8" chunks of 8 triplets of a
window (`batch_makeup: grouped`), "fast" all triplets of a window in one batch (group 0). "gemm_floor" says why the
i.i.d. batches cost more: each step forwards every row of ~128 distinct windows (~6x the rows of a grouped step),
and the row-wise matrix products alone, at the fp32 GEMM rate measured in the same run (oneDNN's, which the fast
path's training products use on a CPU, `cezsar.training.onednn_linear`), bound the ratio any fp32 implementation of
that step can reach against the reference.

    python benchmarks/bench_train.py                      # small workload, both paths, ratio (CPU ok)
    python benchmarks/bench_train.py --scale paper        # ~12,000 videos x ~120 s x 4096-d fp16, ~3 M
                                                          # triplets: one full epoch (GPU machine)
    python benchmarks/bench_train.py --scale paper --limit-steps 20 --videos 500   # CPU: extrapolate
    python benchmarks/bench_train.py --compare-steps      # the static step against the eager one (same run)
    python benchmarks/bench_train.py --compare-steps --scale paper --videos 300 --limit-steps 60

`--compare-steps` times `cezsar.training.static_step` (fixed shapes, tables built once per epoch, their build included
in its time) against the eager step (`train_one_epoch`) on the same batches from the same weights, in
interleaved rounds; `ratio_static_vs_eager` > 1 means the static step is faster. On CUDA it also times the
static step in CUDA graphs (`cezsar.training.graphed_step`, capture excluded): `ratio_graph_vs_eager`.
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cezsar.config import ModelConfig, TrainConfig
from cezsar.training.featurebank import TripletTensors, build_bank, epoch_order, to_tensors, window_index
from cezsar.base.devices import resolve_device
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.static_step import run_length, train_one_epoch_static
from cezsar.training.eager_step import make_optimizer, train_one_epoch
from cezsar.training.loss import triplet_loss
from cezsar.training.onednn_linear import inner_product, onednn_applies

SCALES = {  # videos, seconds (min, max), feature dim, windows per video, triplets per window, sentences
    "small": dict(videos=40, seconds=(40, 80), dim=1280, windows=8, per_window=30, sentences=3000, dtype="float32"),
    # paper §3.4/§4: ~12,000 ActivityNet videos (~120 s), 4096-d features, ~3 M triplets (3 positives x 10
    # negatives per window -> ~100,000 windows)
    "paper": dict(videos=12000, seconds=(60, 180), dim=4096, windows=9, per_window=28, sentences=150000,
                  dtype="float16"),
}


def workload(spec: dict, seed: int = 0) -> dict:
    """Random video lengths and triplets shaped like mined ActivityNet triplets (windows of 3-10 s)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(spec["seconds"][0], spec["seconds"][1] + 1, spec["videos"])
    w_video = np.repeat(np.arange(spec["videos"]), spec["windows"])  # (W,)
    dur = rng.uniform(3, 10, len(w_video))
    w_start = rng.uniform(0, np.maximum(lengths[w_video] - dur, 0))
    k = spec["per_window"]
    video = np.repeat(w_video, k).astype(np.int32)
    start = np.repeat(w_start, k).astype(np.float32)
    end = np.repeat(w_start + dur, k).astype(np.float32)
    pos = np.repeat(rng.integers(0, spec["sentences"], (len(w_video), 3)), k // 3 + 1, axis=1)[:, :k].reshape(-1)
    neg = rng.integers(0, spec["sentences"], len(video))
    return {"lengths": lengths, "video": video, "start": start, "end": end, "pos": pos.astype(np.int32),
            "neg": neg.astype(np.int32)}


class RefDataset(torch.utils.data.Dataset):
    """The released code's per-sample path: one np.load per triplet, zero padding to max_len."""

    def __init__(self, triplets: list, feat_dir: Path, text: np.ndarray, max_len: int) -> None:
        self.triplets, self.dir, self.text, self.max_len = triplets, feat_dir, text, max_len

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, i: int):
        vid, s, e, p, n = self.triplets[i]
        feats = np.load(self.dir / f"{vid}.npy").astype(np.float32)  # (T, D) the whole video, every sample
        lo = min(int(math.floor(s)), len(feats) - 1)
        win = feats[lo:max(int(math.ceil(e)), lo + 1)][: self.max_len]  # (t, D)
        x = np.zeros((self.max_len, feats.shape[1]), np.float32)
        x[: len(win)] = win
        mask = np.arange(self.max_len) < len(win)
        return torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(self.text[p]), torch.from_numpy(self.text[n])


def run_reference(model, opt, loader, steps: int) -> dict:
    model.train()
    t0, c0, seen = time.perf_counter(), time.process_time(), 0
    for i, (x, mask, sp, sn) in enumerate(loader):
        if i == steps:
            break
        loss = triplet_loss(model.encode_video(x, mask), model.encode_text(sp), model.encode_text(sn)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(x)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"triplets": seen, "seconds": round(dt, 3), "cpu_seconds": round(cpu, 3),
            "triplets_per_s": round(seen / dt, 1), "triplets_per_cpu_s": round(seen / cpu, 1)}


def run_fast(model, opt, data: TripletTensors, cfg: TrainConfig, device, steps: int | None, group: int, epoch: int) -> dict:
    order = epoch_order(data.win.cpu().numpy(), np.arange(len(data.win)), 0, epoch, group)
    c0 = time.process_time()
    r = train_one_epoch(model, data, opt, order, cfg, device, limit_steps=steps)
    cpu = time.process_time() - c0
    return {"triplets": r["triplets"], "seconds": round(r["seconds"], 3), "cpu_seconds": round(cpu, 3),
            "triplets_per_s": round(r["triplets"] / r["seconds"], 1),
            "triplets_per_cpu_s": round(r["triplets"] / max(cpu, 1e-9), 1), "steps": r["steps"]}


def run_step(kind: str, model, opt, data: TripletTensors, cfg: TrainConfig, device, steps: int | None,
             order: np.ndarray, t: int) -> dict:
    """One (possibly limited) epoch over `order` with the eager or the static step, or (CUDA) the static step
    in CUDA graphs: its capture (and one step) before the clock starts."""
    if kind == "graph":
        from cezsar.training.graphed_step import GraphedTrainer

        trainer = GraphedTrainer(model, data, make_optimizer(model, cfg, capturable=True), cfg, t)
        trainer.train_epoch(order, limit_steps=1)
    c0 = time.process_time()
    if kind == "graph":
        r = trainer.train_epoch(order, limit_steps=steps)
    elif kind == "static":
        r = train_one_epoch_static(model, data, opt, order, cfg, device, t, limit_steps=steps)
    else:
        r = train_one_epoch(model, data, opt, order, cfg, device, limit_steps=steps)
    cpu = time.process_time() - c0
    return {"triplets": r["triplets"], "seconds": round(r["seconds"], 3), "cpu_seconds": round(cpu, 3),
            "triplets_per_s": round(r["triplets"] / r["seconds"], 1),
            "triplets_per_cpu_s": round(r["triplets"] / max(cpu, 1e-9), 1), "steps": r["steps"],
            "loss": round(r["loss"], 6)}


def compare_steps(args, device, data: TripletTensors, cfg: ModelConfig, steps: int | None) -> dict:
    """The static step against the eager one: interleaved rounds, the same order and initial weights."""
    tcfg = TrainConfig(batch=args.batch)
    t = run_length(data)
    order = epoch_order(data.win.cpu().numpy(), np.arange(len(data.win)), 0, 0, args.group)
    res = {"eager": [], "static": [], **({"graph": []} if device.type == "cuda" else {})}
    for kind in res:  # warm-up: allocator, first-call costs
        model, opt = fresh(cfg, device)
        run_step(kind, model, opt, data, tcfg, device, 2, order, t)
    for _ in range(args.rounds):
        for kind in res:
            model, opt = fresh(cfg, device)
            res[kind].append(run_step(kind, model, opt, data, tcfg, device, steps, order, t))
    best = {k: max(r["triplets_per_s"] for r in v) for k, v in res.items()}
    best_cpu = {k: max(r["triplets_per_cpu_s"] for r in v) for k, v in res.items()}
    extra = {"ratio_graph_vs_eager": round(best["graph"] / best["eager"], 3)} if "graph" in best else {}
    return {"group": args.group, "time_axis": t, "rounds": res, "best_triplets_per_s": best, **extra,
            "ratio_static_vs_eager": round(best["static"] / best["eager"], 3),
            "cpu_ratio_static_vs_eager": round(best_cpu["static"] / best_cpu["eager"], 3),
            # the median round: steadier than the best one when other jobs share the cores
            "median_cpu_ratio_static_vs_eager": round(
                float(np.median([r["cpu_seconds"] for r in res["eager"]])
                      / np.median([r["cpu_seconds"] for r in res["static"]])), 3)}


def profile_steps(model, opt, data: TripletTensors, cfg: TrainConfig, device, steps: int, group: int) -> dict:
    """Where a step's time goes: `steps` steps with a device sync after each phase (gather = the windows' and
    sentences' rows from the bank, forward = Eqs. 1-7, backward, optimizer), then torch.profiler's top
    operators over the same number of unsynced steps. The synced phases add up to more than a normal step
    (the syncs stop the CPU from queueing ahead); their shares are what to read."""
    from cezsar.training.loss import autocast

    order = torch.as_tensor(epoch_order(data.win.cpu().numpy(), np.arange(len(data.win)), 0, 7, group)).to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    phases = dict.fromkeys(("gather", "forward", "backward", "optimizer"), 0.0)
    model.train()
    for i in range(steps):
        b = order[i * cfg.batch:(i + 1) * cfg.batch]
        sync()
        t0 = time.perf_counter()
        s, inv_p, inv_n = data.text_batch(b)
        x, mask, index, inv_v = data.packed_video_batch(b)
        sync()
        t1 = time.perf_counter()
        with autocast(device, cfg.autocast):
            ve = model.encode_video_packed(x, mask, index).float()  # (U, d_emb)
            se = model.encode_text(s).float()  # (Us, d_emb)
            loss = triplet_loss(ve[inv_v], se[inv_p], se[inv_n], cfg.margin).mean()
        sync()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t3 = time.perf_counter()
        opt.step()
        sync()
        t4 = time.perf_counter()
        for k, a, z in (("gather", t0, t1), ("forward", t1, t2), ("backward", t2, t3), ("optimizer", t3, t4)):
            phases[k] += z - a
    total = sum(phases.values())
    out = {"steps": steps, "synced_ms_per_step": {k: round(1000 * v / steps, 3) for k, v in phases.items()},
           "share": {k: round(v / total, 3) for k, v in phases.items()}}
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        train_one_epoch(model, data, opt, order.cpu().numpy(), cfg, device, limit_steps=steps)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0.0), reverse=True)[:15]
    out["top_ops"] = [{"op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1000 / steps, 3),
                       "self_device_ms": round(getattr(e, "self_device_time_total", 0.0) / 1000 / steps, 3)}
                      for e in rows]
    # GPU busy time per step against the step's wall time: far below it = the CPU (launches, syncs) is the limit
    out["device_busy_ms_per_step"] = round(sum(getattr(e, "self_device_time_total", 0.0)
                                               for e in prof.key_averages()) / 1000 / steps, 3)
    out["kernels_per_step"] = round(sum(e.count for e in prof.key_averages()
                                        if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA) / steps, 1) \
        if device.type == "cuda" else None
    return out


def gemm_gflops(rows: int = 700, reps: int = 20, onednn: bool = False) -> float:
    """The fp32 matrix-product rate of this machine now (best of `reps`), at the shape of the FFN's first layer:
    torch's own product (MKL on a CPU), or with `onednn` oneDNN's inner product, which the fast path's large
    training products use (`cezsar.training.onednn_linear`)."""
    a, w = torch.randn(rows, 2048), torch.randn(512, 2048)
    if onednn:
        product = lambda: inner_product(a, w)
    else:
        product = lambda: a @ w.t()
    for _ in range(3):
        product()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - t)
    return 2 * rows * 2048 * 512 / best / 1e9


def rows_per_step(data: TripletTensors, group: int, steps: int, batch: int) -> tuple[float, float]:
    """Mean (valid rows, distinct windows) a step of this batch makeup forwards through the VEM."""
    order = torch.as_tensor(epoch_order(data.win.cpu().numpy(), np.arange(len(data.win)), 0, 0, group))
    rows, wins = [], []
    for i in range(steps):
        _, mask, _, _ = data.packed_video_batch(order[i * batch:(i + 1) * batch])
        rows.append(int(mask.sum()))
        wins.append(int(mask.shape[0]))
    return float(np.mean(rows)), float(np.mean(wins))


def gemm_floor(data: TripletTensors, cfg: ModelConfig, batch: int, ref_step_s: float, gflops: float,
               onednn_gflops: float | None = None) -> dict:
    """Matrix-product FLOPs per step of each batch makeup (Eq. 1 projection, q/k/v, W^0, the FFN of Eq. 4; forward
    and backward, no input gradient for Eq. 1) and the time they take at the rate the fast path's products run at
    (oneDNN's `onednn_gflops` where the path uses it, else torch's `gflops`): a lower bound on a step, so
    `ref_step_s / floor` bounds the ratio against the reference."""
    d, f, dm = cfg.d_model, 2048, cfg.feat_dim
    fwd = dm * d + 3 * d * d + d * d + 2 * d * f  # multiply-adds per row, forward
    per_row = 2 * (3 * fwd - dm * d)  # FLOP per row: forward + backward (weights and inputs, Eq. 1 weights only)
    out = {"flop_per_row": per_row, "fp32_gemm_gflops": round(gflops, 1),
           "onednn_fp32_gemm_gflops": None if onednn_gflops is None else round(onednn_gflops, 1)}
    for name, group in (("iid", 1), ("grouped_g8", 8)):
        rows, wins = rows_per_step(data, group, 20, batch)
        rate = onednn_gflops or gflops
        floor_s = rows * per_row / (rate * 1e9)
        out[name] = {"rows_per_step": round(rows, 1), "windows_per_step": round(wins, 1),
                     "gemm_gflops": round(rate, 1), "gemm_floor_ms": round(1000 * floor_s, 1),
                     "max_ratio_vs_reference": round(ref_step_s / floor_s, 2)}
    return out


def fresh(cfg: ModelConfig, device) -> tuple[JointEmbedder, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = JointEmbedder(cfg).to(device)
    return model, make_optimizer(model, TrainConfig())  # the same fused AdamW for both paths


def small(args, device) -> dict:
    spec = SCALES["small"]
    w = workload(spec)
    rng = np.random.default_rng(1)
    text = rng.normal(size=(spec["sentences"], 384)).astype(np.float32)
    cfg = ModelConfig(feat_dim=spec["dim"], text_dim=384)
    tcfg = TrainConfig(batch=args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        feat_dir = Path(tmp) / "features"
        feat_dir.mkdir()
        ids = [f"vid{i:05d}" for i in range(spec["videos"])]
        for vid, n in zip(ids, w["lengths"]):
            np.save(feat_dir / f"{vid}.npy", rng.normal(size=(int(n), spec["dim"])).astype(np.float32))
        # reference setup: the triplets as a pickled python list, unpickled before training
        tuples = [(ids[v], float(s), float(e), int(p), int(n))
                  for v, s, e, p, n in zip(w["video"], w["start"], w["end"], w["pos"], w["neg"])]
        (Path(tmp) / "triplets.pkl").write_bytes(pickle.dumps(tuples))
        t0 = time.perf_counter()
        triplets = pickle.loads((Path(tmp) / "triplets.pkl").read_bytes())
        ref_setup = time.perf_counter() - t0
        loader = torch.utils.data.DataLoader(RefDataset(triplets, feat_dir, text, cfg.max_len), batch_size=args.batch,
                                             shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(0))

        class Store:
            dir, dim = feat_dir, spec["dim"]

            def __init__(self):
                self.ids = ids

            def load(self, vid):
                return np.load(feat_dir / f"{vid}.npy")

        t0 = time.perf_counter()
        bank, offsets = build_bank(Store(), ids, Path(tmp) / "cache" / "bank.npy", args.bank_dtype)
        rows, mask, win, _ = window_index(w["video"], w["start"], w["end"], offsets, cfg.max_len)
        data = to_tensors(bank, rows, mask, win, w["pos"], w["neg"], text, device)
        fast_setup = time.perf_counter() - t0

        if args.compare_steps:
            return {"scale": "small", "workload": {"triplets": int(len(w["video"])), "windows": int(len(rows)),
                                                   "dim": spec["dim"], "bank_dtype": args.bank_dtype},
                    **compare_steps(args, device, data, cfg, args.limit_steps)}
        gflops_before = gemm_gflops()
        dnn = onednn_applies(torch.ones(1, device=device))  # the fast path's products go through oneDNN here
        dnn_before = gemm_gflops(onednn=True) if dnn else None
        results = {"reference": [], "fast": [], "fast_g8": [], "fast_iid": []}
        for rnd in range(args.rounds):  # interleaved rounds: machine noise hits both paths alike
            model, opt = fresh(cfg, device)
            run_reference(model, opt, loader, 1)  # warm-up
            results["reference"].append(run_reference(model, opt, loader, args.steps))
            model, opt = fresh(cfg, device)
            run_fast(model, opt, data, tcfg, device, 1, 0, 99)
            results["fast"].append(run_fast(model, opt, data, tcfg, device, args.steps, 0, rnd))
            model, opt = fresh(cfg, device)
            results["fast_g8"].append(run_fast(model, opt, data, tcfg, device, args.steps, 8, rnd))
            model, opt = fresh(cfg, device)
            results["fast_iid"].append(run_fast(model, opt, data, tcfg, device, args.steps, 1, rnd))
        gflops = max(gemm_gflops(), gflops_before)  # before and after the timed rounds: the better of the two
        dnn_gflops = max(gemm_gflops(onednn=True), dnn_before) if dnn else None
    best = {k: max(r["triplets_per_s"] for r in v) for k, v in results.items()}
    best_cpu = {k: max(r["triplets_per_cpu_s"] for r in v) for k, v in results.items()}
    return {"scale": "small", "workload": {**{k: v for k, v in spec.items() if k != "seconds"},
                                           "triplets": int(len(w["video"])), "windows": int(len(rows))},
            "setup_s": {"reference_unpickle": round(ref_setup, 3), "fast_bank_and_index": round(fast_setup, 3)},
            "rounds": results, "best_triplets_per_s": best, "best_triplets_per_cpu_s": best_cpu,
            "ratio_fast_vs_reference": round(best["fast"] / best["reference"], 2),
            "ratio_fast_iid_vs_reference": round(best["fast_iid"] / best["reference"], 2),
            # CPU seconds of this process: steadier than wall time when other jobs share the cores
            "cpu_ratio_fast_vs_reference": round(best_cpu["fast"] / best_cpu["reference"], 2),
            "ratio_fast_g8_vs_reference": round(best["fast_g8"] / best["reference"], 2),
            "cpu_ratio_fast_g8_vs_reference": round(best_cpu["fast_g8"] / best_cpu["reference"], 2),
            "cpu_ratio_fast_iid_vs_reference": round(best_cpu["fast_iid"] / best_cpu["reference"], 2),
            "gemm_floor": gemm_floor(data, cfg, args.batch, args.batch / best["reference"], gflops,
                                     dnn_gflops)}


def paper(args, device) -> dict:
    spec = dict(SCALES["paper"])
    if args.videos:
        spec["videos"] = args.videos  # a smaller bank only; the step cost does not depend on it
    w = workload(spec)
    n_full = SCALES["paper"]["videos"] * SCALES["paper"]["windows"] * SCALES["paper"]["per_window"]
    t0 = time.perf_counter()
    lengths = w["lengths"]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # the bank is random fp16 made where it will live (no 12 GB file needed to time the training step)
    gen = torch.Generator(device=device).manual_seed(0)
    bank_t = torch.randn(int(offsets[-1]), spec["dim"], generator=gen, device=device).to(torch.float16) \
        if device.type == "cpu" else torch.randn(int(offsets[-1]), spec["dim"], generator=gen, device=device,
                                                dtype=torch.float16)
    rows, mask, win, _ = window_index(w["video"], w["start"], w["end"], offsets, 15)
    text = np.random.default_rng(1).normal(size=(spec["sentences"], 384)).astype(np.float32)
    data = to_tensors(np.zeros((1, spec["dim"]), np.float16), rows, mask, win, w["pos"], w["neg"], text, device)
    data.bank = bank_t
    setup = time.perf_counter() - t0
    cfg = ModelConfig(feat_dim=spec["dim"], text_dim=384)
    model, opt = fresh(cfg, device)
    tcfg = TrainConfig(batch=args.batch)
    if args.compare_steps:
        return {"scale": "paper", "workload": {"triplets": int(len(w["video"])), "windows": int(len(rows)),
                                               "dim": spec["dim"], "bank_dtype": "float16"},
                **compare_steps(args, device, data, cfg, args.limit_steps)}
    run_fast(model, opt, data, tcfg, device, 3, args.group, 99)  # warm-up
    r = run_fast(model, opt, data, tcfg, device, args.limit_steps, args.group, 0)
    steps_full = math.ceil(n_full / args.batch)
    epoch_s = r["seconds"] / r["steps"] * steps_full
    out = {"scale": "paper", "workload": {**{k: v for k, v in spec.items() if k != "seconds"},
                                          "triplets": int(len(w["video"])), "windows": int(len(rows)),
                                          "bank_rows": int(offsets[-1]), "bank_gib": round(bank_t.numel() * 2 / 2**30, 2)},
           "setup_s": round(setup, 2), "group": args.group, "fast": r,
           "full_triplets": n_full, "steps_per_epoch": steps_full,
           "epoch_s": round(epoch_s, 1), "projected_25_epochs_min": round(25 * epoch_s / 60, 2),
           "epoch_cpu_s": round(r["cpu_seconds"] / r["steps"] * steps_full, 1),
           "extrapolated": args.limit_steps is not None}
    if device.type == "cuda":
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if args.profile:
        out["profile"] = profile_steps(model, opt, data, tcfg, device, args.profile, args.group)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=tuple(SCALES), default="small")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=128, help="triplets per step (paper §4: 128)")
    ap.add_argument("--steps", type=int, default=6, help="small: timed steps per path and round")
    ap.add_argument("--rounds", type=int, default=2, help="small: interleaved rounds (best kept)")
    ap.add_argument("--bank-dtype", choices=("float16", "float32"), default="float32")
    ap.add_argument("--limit-steps", type=int, default=None, help="paper: time this many steps and extrapolate")
    ap.add_argument("--videos", type=int, default=None, help="paper: fewer videos in the bank (CPU memory)")
    ap.add_argument("--group", type=int, default=1,
                    help="paper: triplets of a window per batch: 1 = i.i.d. (default batch makeup), 8 = grouped, 0 = all")
    ap.add_argument("--profile", type=int, default=0,
                    help="paper: then profile this many steps (time per phase, top operators)")
    ap.add_argument("--compare-steps", action="store_true",
                    help="time the static step against the eager one (ratio_static_vs_eager); --limit-steps "
                         "limits both, default a whole epoch")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's; 1 is steadier on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    res = small(args, device) if args.scale == "small" else paper(args, device)
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(json.dumps({"device": f"{device.type}: {dev}", "torch_threads": torch.get_num_threads(), **res}, indent=1))


if __name__ == "__main__":
    main()
