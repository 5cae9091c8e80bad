"""Benchmark: scoring the 3 Kinetics protocols (50 runs each where random) on a Kinetics-sized synthetic set.

20,000 videos, 400 classes, random 128-d video and prototype embeddings. The fast path
(`protocols.evaluate_runs`: one (V, C) cosine matrix, each run an index job) is timed against a simple
per-run reference that recomputes everything for every run (normalise, cosine of the run's videos against
its prototypes, full `zsar.metrics`). Prints one JSON document; the target is <= 5 s on 2 cores.

    python benchmarks/bench_eval.py [--videos 20000] [--classes 400] [--runs 50] [--no-reference]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")  # the target machine: 2 cores
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from cezsar.evaluation import protocols as P  # noqa: E402
from cezsar.evaluation import zsar  # noqa: E402


def fast(vid: np.ndarray, proto: np.ndarray, labels: np.ndarray, classes: list[str], plan: dict) -> dict:
    scores = zsar.cosine_scores(vid, proto)  # (V, C) once for every run
    return {name: P.summarize(P.evaluate_runs(scores, labels, classes, runs)) for name, runs in plan.items()}


def reference(vid: np.ndarray, proto: np.ndarray, labels: np.ndarray, classes: list[str], plan: dict) -> dict:
    col = {c: i for i, c in enumerate(classes)}
    out = {}
    for name, runs in plan.items():
        res = []
        for r in runs:
            cols = [col[c] for c in r["classes"]]
            rows = np.isin(labels, cols)
            local = np.searchsorted(np.array(cols), labels[rows])  # cols are sorted (official order)
            m = zsar.metrics(zsar.cosine_scores(vid[rows], proto[cols]), local)
            res.append({"top1": m["top1"], "top5": m["top5"]})
        out[name] = P.summarize(res)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=20000)
    ap.add_argument("--classes", type=int, default=400)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    classes = [f"class {i:03d}" for i in range(args.classes)]
    proto = rng.normal(size=(args.classes, args.dim)).astype(np.float32)
    labels = rng.integers(0, args.classes, args.videos)
    vid = (proto[labels] + 4.0 * rng.normal(size=(args.videos, args.dim))).astype(np.float32)  # noisy: ~chance-ish
    # the three Kinetics protocols as defined (paper §4: 0/400 one run, 0/100 and 0/25 `runs` runs each), and a
    # stress plan with `runs` runs of every protocol (0/400's runs are then identical: pure extra work)
    sizes = (args.classes, args.classes // 4, args.classes // 16)
    plan = {f"0/{n}": P.make_runs(classes, n, 1 if n == args.classes else args.runs) for n in sizes}
    stress = {f"0/{n}": P.make_runs(classes, n, args.runs) for n in sizes}

    def timed(fn, *a):
        t0, c0 = time.perf_counter(), time.process_time()
        res = fn(*a)
        return res, time.perf_counter() - t0, time.process_time() - c0

    got, t_fast, cpu_fast = timed(fast, vid, proto, labels, classes, plan)
    _, t_stress, cpu_stress = timed(fast, vid, proto, labels, classes, stress)
    report = {"benchmark": "eval_runs", "videos": args.videos, "classes": args.classes, "dim": args.dim,
              "runs": {k: len(v) for k, v in plan.items()}, "fast_s": round(t_fast, 3),
              "fast_cpu_s": round(cpu_fast, 3), "stress_runs": {k: len(v) for k, v in stress.items()},
              "stress_fast_s": round(t_stress, 3), "stress_cpu_s": round(cpu_stress, 3), "target_s": 5.0,
              "within_target": max(t_fast, t_stress) <= 5.0,
              "threads": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine(),
              "top1_mean": {k: round(v["top1_mean"], 4) for k, v in got.items()}}
    if not args.no_reference:
        ref, t_ref, cpu_ref = timed(reference, vid, proto, labels, classes, plan)
        same = all(abs(ref[k][m] - got[k][m]) < 1e-9 for k in plan for m in ("top1_mean", "top5_mean"))
        report.update({"reference_s": round(t_ref, 3), "reference_cpu_s": round(cpu_ref, 3),
                       "speedup": round(t_ref / t_fast, 2), "same_result": same})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
