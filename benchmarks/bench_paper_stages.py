"""Peak RAM, disk and time of each notebook stage on the paper-shaped fixture, and the projection to full scale.

    python benchmarks/bench_paper_stages.py [--sizes 80,160] [--out stages.json]

Builds tests/paper_fixture.py at two sizes (training videos; the test sets stay at 101 / 400 classes), runs
notebooks 00-06 with params/paper.yaml pointed at it (1 epoch, MiniLM, as the fixture test), and records for
each notebook the peak resident memory of its kernel (the largest process of the papermill run), its wall
time, and the disk used by the run's work folder after it. Each stage's RAM and disk are then fitted linearly
in the number of training feature rows (seconds of video) and projected to the full training corpus
(ActivityNet Captions train + val: 14,926 videos, 1,763,069 one-second rows of BiT features); the test-side
sizes are projected per test video. Prints one JSON document.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import paper_fixture as pf  # noqa: E402

NOTEBOOKS = ["00_data", "01_features", "02_mining", "03_training", "04_tau_ablation", "05_tables", "06_figures"]
FULL = {"train_rows": 1_763_069, "train_videos": 14_926, "ucf101_videos": 13_320, "kinetics400_videos": 20_000}
_MEASURE = ("import resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode;"
            " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t, rc)")


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run_size(train_videos: int, tmp: Path) -> dict:
    fx = pf.build(tmp / "data", train_videos=train_videos, val_videos=train_videos // 5)
    rows = sum(int(__import__("numpy").load(p, mmap_mode="r").shape[0]) for p in Path(fx["train_features"]).glob("*.npy"))
    params = pf.paper_params(fx, tmp / "work", tmp / "figures")
    pfile = tmp / "bench.yaml"
    pfile.write_text(yaml.safe_dump(params))
    out_dir = tmp / "runs"
    out_dir.mkdir(exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CEZSAR_PROGRESS": "off",
           "CEZSAR_HEADLESS": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    stages = {}
    for nb in NOTEBOOKS:
        cmd = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{nb}.ipynb"),
               str(out_dir / f"{nb}.ipynb"), "-f", str(pfile), "-p", "params_file", str(pfile), "-p", "run_dir",
               str(out_dir), "--cwd", str(ROOT / "notebooks"), "--log-level", "ERROR", "--no-progress-bar"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        kb, seconds, rc = res.stdout.split()[-3:]
        if int(rc) != 0:
            raise RuntimeError(f"{nb} failed:\n{res.stderr[-2000:]}")
        stages[nb] = {"peak_rss_mb": round(int(kb) / 1024, 1), "seconds": round(float(seconds), 1),
                      "work_disk_mb": round(_du(tmp / "work") / 2**20, 1)}
    return {"train_videos": fx["counts"]["train_features"], "train_rows": rows,
            "train_features_mb": round(_du(Path(fx["train_features"])) / 2**20, 1),
            "test_videos": fx["counts"]["ucf101_videos"] + fx["counts"]["kinetics400_videos"], "stages": stages}


def project(a: dict, b: dict) -> dict:
    """Linear in training rows between the two sizes, extended to FULL."""
    out = {}
    span = b["train_rows"] - a["train_rows"]
    for nb in NOTEBOOKS:
        sa, sb = a["stages"][nb], b["stages"][nb]
        proj = {}
        for key in ("peak_rss_mb", "work_disk_mb"):
            slope = (sb[key] - sa[key]) / span  # MB per training row
            proj[key.replace("_mb", "_gb")] = round(max(sb[key], sb[key] + slope * (FULL["train_rows"] - b["train_rows"]))
                                                    / 1024, 2)
        out[nb] = proj
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="80,160", help="two fixture sizes (training videos), comma-separated")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    if not pf.available():
        sys.exit("bench_paper_stages: the reference annotation files are not present")
    sizes = [int(x) for x in args.sizes.split(",")]
    t0 = time.perf_counter()
    measured = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            measured.append(run_size(n, Path(tmp)))
    report = {"measured": measured, "full_scale": FULL, "projection": project(measured[0], measured[-1]),
              "seconds": round(time.perf_counter() - t0, 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
