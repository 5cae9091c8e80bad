"""Objects of released features: rows per second through BiT's ImageNet-21k head, against a numpy reference.

    python benchmarks/bench_objects.py [--rows 2000] [--classes 21843] [--device cpu]

The package path (`feature_objects.objects_from_features`: the rows of several videos per torch GEMM, top-k of
the logits and one log-sum-exp per row) against the reference a reader would write first (numpy GEMM, then
`objects.topk_from_logits`, a float64 softmax and a full stable sort per row), and against the previous package
path (per video, a float64 softmax over all classes then torch.topk); all over the same random (T, 4096) stacks
and the same random head, in the same run.
Checks that both give the same top-5 classes, and projects the package path to the full training corpus
(1.76 M one-second rows). Prints one JSON document.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cezsar.encoders.feature_objects import LinearHead, objects_from_features
from cezsar.encoders.objects import topk_from_logits

FULL_ROWS = 1_763_069


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2000, help="feature rows in all (stacks of 100 rows)")
    ap.add_argument("--classes", type=int, default=21843, help="head outputs (BiT-M: 21,843)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    head = LinearHead(rng.standard_normal((args.classes, 4096), dtype=np.float32) * np.float32(0.02),
                      np.zeros(args.classes, np.float32), "bit_m_r152x2", "random")
    with tempfile.TemporaryDirectory() as tmp:
        feats = Path(tmp) / "f"
        feats.mkdir()
        stacks = []
        for i in range(max(1, args.rows // 100)):
            x = np.abs(rng.standard_normal((100, 4096), dtype=np.float32))  # (100, 4096)
            np.save(feats / f"v{i:05d}.npy", x)
            stacks.append(x)
        t0 = time.perf_counter()
        rep = objects_from_features(feats, head, Path(tmp) / "o", device=args.device, progress=False)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = [topk_from_logits(x @ head.weight.T + head.bias, 5) for x in stacks]  # (100, 5) each
        reference = time.perf_counter() - t0
        w, b = torch.from_numpy(head.weight), torch.from_numpy(head.bias)
        t0 = time.perf_counter()
        for x in stacks:  # the previous package path: a float64 softmax over every class, then top-k
            torch.topk(torch.softmax((torch.from_numpy(x) @ w.T + b).double(), dim=1), 5, dim=1)
        softmax64 = time.perf_counter() - t0
        same = all(np.array_equal(np.load(Path(tmp) / "o" / f"v{i:05d}.npz")["indices"], r[0])
                   for i, r in enumerate(ref))
    rows = rep["rows"]
    print(json.dumps({"rows": rows, "classes": args.classes, "device": args.device,
                      "threads": torch.get_num_threads(), "package_s": round(ours, 2),
                      "reference_s": round(reference, 2), "ratio": round(reference / ours, 2),
                      "float64_softmax_s": round(softmax64, 2), "ratio_vs_float64_softmax": round(softmax64 / ours, 2),
                      "package_rows_per_s": round(rows / ours, 1), "same_top5": same,
                      "projected_full_corpus_h": round(FULL_ROWS / (rows / ours) / 3600, 2)}, indent=2))


if __name__ == "__main__":
    main()
