"""Bad inputs in a real `python -m cezsar` process: the exit code the shell sees, stderr without a traceback
(and with one under CEZSAR_DEBUG=1), and kill -9 of `cezsar mine` mid-write (docs/errors.md)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_bad_inputs import damaged_checkpoints, save_checkpoint, write_captions, write_clip

# real `python -m cezsar` processes (each imports torch, some load MiniLM): end to end, the slow tier; the same
# errors in-process are checked in the fast tier by tests/test_bad_inputs.py
pytestmark = pytest.mark.slow

PROJ_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(PROJ_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def cezsar(*argv, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cezsar", *map(str, argv)], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, timeout=timeout, cwd=PROJ_ROOT)


def test_damaged_checkpoints_in_real_processes(tmp_path):
    """The issue's three entry points of a damaged .pt: classify --model, evaluate --model, train --resume."""
    bad = damaged_checkpoints(tmp_path / "bad")
    clip = write_clip(tmp_path / "clip.mp4")
    p = cezsar("classify", clip, "--labels", "a, b", "--model", bad["truncated"])
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.startswith(f"error: --model {bad['truncated']}: not a readable checkpoint")

    (tmp_path / "ds" / "classInd.txt").parent.mkdir()
    (tmp_path / "ds" / "classInd.txt").write_text("1 Swimming\n2 Cycling\n")
    feats = tmp_path / "feats"
    feats.mkdir()
    (feats / "features.json").write_text('{"backbone": "efficientnet_lite0", "dim": 1280}')
    desc = tmp_path / "d.json"
    desc.write_text('{"Swimming": ["a person swims"], "Cycling": ["a person rides a bike"]}')
    p = cezsar("evaluate", "--dataset", "ucf101", "--root", tmp_path / "ds", "--features", feats, "--model",
               bad["empty"], "--descriptions", desc, "--out", tmp_path / "r.json")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip() == (f"error: --model {bad['empty']}: empty file (0 bytes), not a checkpoint; delete it "
                                "or re-create it with `cezsar train`")
    assert not (tmp_path / "r.json").exists()

    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(bad["truncated"].read_bytes())
    save_checkpoint(tmp_path / "t.npz")  # any existing file: the resume check comes first
    p = cezsar("train", "--triplets", tmp_path / "t.npz", "--features", feats, "--out", run, "--resume")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"error: {run / 'last.pt'}: not a readable checkpoint")
    assert "delete it to start over" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_usage_error_exit_code_and_debug_traceback(tmp_path):
    p = cezsar("mine", "--captions", tmp_path / "c.json")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip() == ("error: cezsar mine: the following arguments are required: --out "
                                "(see `cezsar mine --help`)")
    cap = tmp_path / "c.json"
    cap.write_text("{")
    p = cezsar("mine", "--captions", cap, "--out", tmp_path / "t.npz", env={"CEZSAR_DEBUG": "1"})
    assert p.returncode == 1
    assert "Traceback" in p.stderr and p.stderr.strip().splitlines()[-1].startswith(f"error: {cap}: malformed JSON")


# kill -9 inside TripletSet.save, after part of the zip is written: the worst moment for the output file
KILL_CHILD = textwrap.dedent("""
    import os, signal, sys, zipfile
    from cezsar.cli import main
    kill_at = int(sys.argv[1])
    real = zipfile.ZipFile.writestr
    calls = []
    def writestr(self, *a, **k):
        calls.append(1)
        if len(calls) == kill_at:
            self.fp.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, *a, **k)
    zipfile.ZipFile.writestr = writestr
    sys.exit(main(sys.argv[2:]))
""")


def test_mine_killed_mid_write_then_rerun(tmp_path):
    cap = write_captions(tmp_path / "train.json")
    script = tmp_path / "child.py"
    script.write_text(KILL_CHILD)
    cache = tmp_path / "cache"

    def child(out: Path, kill_at: int) -> int:
        argv = ["mine", "--captions", cap, "--out", out, "--cache-dir", cache, "--strategy", "exact", "--json"]
        return subprocess.run([sys.executable, str(script), str(kill_at), *map(str, argv)], env=ENV,
                              capture_output=True, timeout=180, cwd=PROJ_ROOT).returncode

    full, cut = tmp_path / "full.npz", tmp_path / "cut.npz"
    assert child(full, 0) == 0  # uninterrupted
    assert child(cut, 4) == -signal.SIGKILL
    temps = list(tmp_path.glob(".cut.npz.*.tmp"))
    assert not cut.exists() and len(temps) == 1 and temps[0].stat().st_size > 0  # killed mid-write
    assert child(cut, 0) == 0  # rerun
    assert cut.read_bytes() == full.read_bytes()
    assert not list(tmp_path.glob(".cut.npz.*")), "the killed run's partial temp file is cleared on rerun"
    assert child(cut, 4) == -signal.SIGKILL  # killed while replacing a finished file: the old one stays whole
    assert cut.read_bytes() == full.read_bytes()

