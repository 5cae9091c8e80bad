"""benchmarks/bench_paper_gpu.py (issue 28 part 6) runs end to end at `--scale tiny` on a CPU: every stage of the
paper run is timed on real package code, the projection adds up its parts, and the JSON lands in $OUT."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~40 s on two shared cores: a full-size model trains a few steps for each of three τ
def test_bench_paper_gpu_tiny_runs_every_stage(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_paper_gpu.py"), "--scale", "tiny",
                          "--device", "cpu", "--skip", "sbert", "--limit-steps", "2"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(res.stdout)
    assert rep == json.loads((tmp_path / "out" / "bench_paper_gpu_tiny.json").read_text())
    assert rep["objects"]["rows"] == rep["bank"]["rows"] == 1600 and rep["objects"]["seconds"] > 0
    assert rep["objects"]["bytes_back"] == 1600 * 5 * (4 + 2)  # int32 indices + float16 scores, nothing more
    assert set(rep["mining"]["per_tau"]) == set(rep["training"]["per_tau"]) == {"0.7", "0.8", "0.9"}
    assert rep["training"]["fastest"] == "eager" and set(rep["training"]["trainers"]) == {"eager"}
    for tau in rep["training"]["per_tau"].values():
        assert tau["steps_timed"] == 2 and tau["triplets"] > 0 and tau["steps_per_epoch"] == -(-tau["triplets"] // 128)
    ext = rep["extraction"]
    assert ext["frames"] == 2 * 3 and ext["kept_frames_per_s"] > 0 and ext["cnn_alone_topk_frames_per_s"] > 0
    assert rep["evaluation"]["models"] == 3 and rep["sbert"] == {"skipped": "--skip"}
    parts = rep["projected"]["parts_s"]
    assert abs(sum(parts.values()) - rep["projected"]["total_s"]) < 0.1 + 1e-9
    assert rep["projected"]["within_goal"] == (rep["projected"]["total_s"] <= 900)
