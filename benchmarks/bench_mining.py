"""Benchmark: the miner (exact and sample strategies) vs a per-pair loop in the released style, real captions.

Prints one JSON document. The loop reference (for each positive, draw random partners one at a time and
compute the cosine each time until n admissible are found, as the released code does) runs on a seeded
subset of positives; its per-positive cost is extrapolated to all positives (stated in the output).
Sentence embeddings come from the on-disk cache (the first run encodes, later runs are free); mining
time is measured after embedding. Usage:
    python benchmarks/bench_mining.py [--captions train.json] [--subset 300] [--taus 0.7,0.8,0.9]
                                      [--strategies exact,sample] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from cezsar.config import MiningConfig
from cezsar.formats.captions import read_activitynet
from cezsar.triplet_mining.mine import mine
from cezsar.encoders.text import SentenceEncoder

REF = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "activitynet_captions" / "train.json"


def loop_reference(emb: np.ndarray, pos: list[int], n: int, tau: float, seed: int) -> tuple[list[list[int]], int]:
    """Released-code style: per positive, draw a random partner, compute its cosine, keep it if admissible."""
    rnd = random.Random(seed)
    out, pairs = [], 0
    n_cand = emb.shape[0]
    for i in pos:
        got: list[int] = []
        tries = 0
        while len(got) < n and tries < 10 * n_cand:  # released: no cap (hangs); 10 C draws see ~all
            j = rnd.randrange(n_cand)
            tries += 1
            a, b = emb[i], emb[j]
            cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
            if j != i and j not in got and 0.0 < 1.0 - cos < tau:
                got.append(j)
        pairs += tries
        out.append(got)
    return out, pairs


def exact_loop_reference(emb: np.ndarray, pos: list[int], n: int, tau: float, seed: int) -> list[list[int]]:
    """The same output as the miner by plain loops: every pair's cosine (exact admissible set), then n drawn."""
    rnd = random.Random(seed)
    out = []
    for i in pos:
        a = emb[i]
        adm = [j for j in range(emb.shape[0])
               if j != i and float(np.dot(a, emb[j]) / (np.linalg.norm(a) * np.linalg.norm(emb[j]))) > 1 - tau]
        out.append(rnd.sample(adm, min(n, len(adm))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", default=str(REF))
    ap.add_argument("--subset", type=int, default=300, help="positives run through the loop reference")
    ap.add_argument("--taus", default="0.7,0.8,0.9")
    ap.add_argument("--strategies", default="exact,sample", help="mine() strategies to time (last = the default)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the sampled strategy and of the loop per tau (best kept)")
    args = ap.parse_args()
    if not Path(args.captions).exists():
        print(json.dumps({"skipped": f"{args.captions} absent"}))
        return
    res: dict = {"cores": os.cpu_count(), "load_avg": os.getloadavg()[0]}
    cap = read_activitynet(args.captions)
    enc = SentenceEncoder("minilm")
    t = time.perf_counter()
    sentences = list(dict.fromkeys(s.sentence for s in cap.segments))
    emb = enc.encode(sentences, progress=True)
    res["embedding"] = {"sentences": len(cap.segments), "unique": len(sentences), "encoded_now": enc.encoded,
                        "seconds": round(time.perf_counter() - t, 2), "model": enc.model_id}
    cached = lambda s: enc.encode(s)  # noqa: E731  (all cached now: mining time excludes encoding)

    res["tau"] = {}
    u_all = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    # loop references on seeded subsets of caption positives (n = 10), extrapolated per positive
    rng = np.random.default_rng(0)
    pos = rng.choice(len(sentences), size=min(args.subset, len(sentences)), replace=False).tolist()
    res["repeat"] = {"n": args.repeat, "note": "the sampled strategy and the loop reference run alternately "
                     f"{args.repeat} times per tau and each keeps its best time (the exact strategy runs once): "
                     "the machine's speed drifts by tens of percent within a minute"}
    res["loop_reference"] = {"note": "released style: per positive, random partners one at a time, a cosine "
                             "each, until n admissible (capped at 10 C draws); per-positive cost on the subset "
                             "x all positives of the full run (3 windows x 37,421 captions)"}
    for tau in [float(x) for x in args.taus.split(",")]:
        row: dict = {}
        loop_best, same, first_run = float("inf"), True, {}
        for rep in range(args.repeat):
            for strategy in args.strategies.split(","):
                if rep and strategy != "sample":
                    continue
                ts = mine(cap, cached, None, MiningConfig(tau=tau), strategy=strategy)
                s = ts.summary
                if rep:  # a repeat: same seed, so the same triplets; keep the faster time
                    same &= bool(np.array_equal(ts.neg, first_run[strategy].neg))
                    row[strategy]["mine_s"] = min(row[strategy]["mine_s"], s["time"]["mine_s"])
                    row[strategy]["mine_s_runs"].append(s["time"]["mine_s"])
                    continue
                first_run[strategy] = ts
                cos = np.einsum("nd,nd->n", u_all[ts.pos], u_all[ts.neg])  # (N,) every mined pair, re-checked
                use = np.bincount(ts.neg, minlength=s["candidates"])  # times each candidate serves as a negative
                row[strategy] = {
                    "triplets": s["triplets"], "val_triplets": s["val_triplets"], "positives": s["positives"],
                    "positives_short": s["positives_short"], "positives_none": s["positives_none"],
                    "admissible": s.get("admissible") or s["admissible_estimate"],
                    # re-checked with another float32 summation order: pairs within rounding of the threshold
                    # (|cos - (1 - tau)| < 1e-6) may land on either side, so they are counted, not failed
                    "negatives_satisfy_rule": bool((cos > 1 - tau - 1e-6).all() and (ts.pos != ts.neg).all()),
                    "negatives_within_rounding_of_threshold": int((np.abs(cos - (1 - tau)) < 1e-6).sum()),
                    "mine_s": s["time"]["mine_s"], "mine_s_runs": [s["time"]["mine_s"]],
                    "neg_sim_hist": s["neg_sim_hist"]["counts"],
                    # pools shared by many positives would leave candidates unused: compare with the exact strategy
                    "negative_usage": {"candidates_used": round(float((use > 0).mean()), 4),
                                       "usage_std_over_mean": round(float(use.std() / use.mean()), 3)},
                    **({"sample": s["sample"]} if "sample" in s else {})}
            t = time.perf_counter()
            negs, pairs = loop_reference(emb, pos, 10, tau, seed=0)
            loop_best = min(loop_best, (time.perf_counter() - t) / len(pos))
        for v in row.values():
            v["repeats_identical"] = same
        res["tau"][str(tau)] = row
        some = next(iter(row.values()))
        extrap = loop_best * some["positives"]
        res["loop_reference"][str(tau)] = {
            "positives_run": len(pos), "pairs_evaluated": pairs, "pairs_per_positive": round(pairs / len(pos), 1),
            "per_positive_ms": round(1000 * loop_best, 3),
            "negatives_satisfy_rule": all(float(u_all[i] @ u_all[j]) > 1 - tau and j != i
                                          for i, g in zip(pos, negs) for j in g),
            "extrapolated_full_s": round(extrap, 1),
            **{f"{k}_s": v["mine_s"] for k, v in row.items()},
            **{f"speedup_{k}": round(extrap / v["mine_s"], 2) for k, v in row.items()}}
    first = args.strategies.split(",")[-1]
    default = (res["tau"].get("0.8") or next(iter(res["tau"].values())))[first]
    res["miner_full_mine_s"] = {k: v["mine_s"] for k, v in (res["tau"].get("0.8") or {}).items()}
    res["miner_per_positive_ms"] = round(1000 * default["mine_s"] / default["positives"], 4)
    # the same output as the miner (exact admissible set per positive) by a per-pair loop: a few positives
    few = pos[:3]
    t = time.perf_counter()
    exact_loop_reference(emb, few, 10, 0.8, seed=0)
    per_pos = (time.perf_counter() - t) / len(few)
    extrap = per_pos * default["positives"]
    res["exact_loop_reference"] = {
        "note": "per pair over all candidates (the miner's exact admissible sets), tau 0.8, extrapolated",
        "positives_run": len(few), "per_positive_ms": round(1000 * per_pos, 1),
        "extrapolated_full_s": round(extrap, 1), "speedup": round(extrap / default["mine_s"], 1),
        "speedup_of": first}
    res["speedup"] = {k: res["loop_reference"].get("0.8", {}).get(f"speedup_{k}") for k in args.strategies.split(",")}
    res["goals"] = {"speedup_ge_100": (res["speedup"].get(first) or 0) >= 100, "full_mine_le_60s": default["mine_s"] <= 60,
                    "judged_on": f"{first} strategy, tau 0.8"}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
