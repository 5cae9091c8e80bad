"""torchrun on CPU with Gloo and 2 processes (docs/decisions.md §13): data-parallel training equals one process,
a rank killed mid-epoch resumes, 2-rank extraction equals one process byte for byte, report merging."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from cezsar.base import distributed
from cezsar.config import ModelConfig, TrainConfig
from cezsar.commands.extract import collect_videos
from cezsar.encoders.feature_objects import LinearHead, objects_from_features
from cezsar.encoders.extraction import extract
from cezsar.errors import ShardReportsMissing
from cezsar.encoders.shards import merge_reports
from cezsar.training.train import fit
from cezsar.training.eager_step import rank_slice
from test_features import MockEncoder, _snapshot, make_corpus
from test_train import TINY, FakeStore, make_toy

TESTS = Path(__file__).resolve().parent
PROJ_ROOT = TESTS.parent
# the run both sides train: dropout 0, so 2 ranks x 16 triplets compute what 1 process x 32 does
RUN = dict(lr=1e-3, batch=32, epochs=4, device="cpu", seed=3)
# tolerance of 2 ranks against 1 process: the same steps up to float summation order (gradient all-reduce,
# each rank's own windows), which AdamW carries on; measured ~1e-7 relative on this toy
RTOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_weights_close(got: dict, want: dict, atol: float) -> None:
    """State dicts equal within RTOL/atol, except the attention's key bias: softmax ignores a shift added to
    every key score, so its true gradient is 0 and AdamW turns the float noise there into steps of ~lr in
    either direction, weights that differ between any two summation orders and change no output."""
    for k, w in want.items():
        g = got[k]
        if k.endswith("self_attn.in_proj_bias"):
            d = w.shape[0] // 3  # [query | key | value]
            g, w = torch.cat([g[:d], g[2 * d:]]), torch.cat([w[:d], w[2 * d:]])
        torch.testing.assert_close(g, w, rtol=RTOL, atol=atol, msg=k)


def torchrun(script: Path, *args: str, nproc: int = 2, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone` (a free port of its own) with 2 CPU processes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJ_ROOT), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "--monitor-interval=0.1", str(script), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


TRAIN_CHILD = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from pathlib import Path
    import cezsar.training.eager_step as eager_step
    import cezsar.training.train as train
    from cezsar.config import ModelConfig, TrainConfig
    from test_train import FakeStore, make_toy, TINY
    out, kill_rank, kill_step, resume = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    # the triplets and sentence vectors (seeded); the features are the fixture's files, never rewritten while
    # another rank reads them
    trip, _, text = make_toy(Path(out + ".arrays" + os.environ["RANK"]))
    store = FakeStore(Path({feats!r}))
    original, calls = eager_step.batch_loss, [0]
    def batch_loss(model, *a, **k):  # SIGKILL this rank in the middle of a training epoch
        if model.training:
            calls[0] += 1
            if int(os.environ["RANK"]) == kill_rank and calls[0] == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)
        return original(model, *a, **k)
    eager_step.batch_loss = batch_loss
    train.fit(trip, store, text, TrainConfig(**{run!r}), ModelConfig(**{tiny!r}), out, resume=resume,
              progress=False)
""")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_toy(root / "feats")
    script = root / "train_child.py"
    script.write_text(TRAIN_CHILD.format(feats=str(root / "feats"), run=RUN, tiny=TINY))
    return root, script


@pytest.fixture(scope="module")
def two_ranks(toy):
    """An uninterrupted 2-rank run: its folder."""
    root, script = toy
    res = torchrun(script, str(root / "ddp"), "-1", "0", "0")
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "ddp"


def test_rank_slices_are_disjoint_and_cover_the_batch():
    for n in (1, 5, 31, 32):
        parts = [rank_slice(n, 2, r) for r in range(2)]
        assert [i for p in parts for i in range(n)[p]] == list(range(n))
    assert rank_slice(32, 2, 1) == slice(16, 32) and rank_slice(1, 2, 1) == slice(1, 1)


def test_alone_every_collective_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.world_size() == 1 and distributed.is_main() and not distributed.init("cpu")
    assert distributed.broadcast_object({"a": 1}) == {"a": 1} and distributed.gather_objects(3) == [3]
    t = torch.ones(2)
    assert distributed.all_reduce_sum(t) is t and torch.equal(t, torch.ones(2))
    with distributed.main_first():
        distributed.barrier()



def test_a_rank_takes_its_shard_device_and_decoders(monkeypatch):
    """Under torchrun (env only; no group is joined for an explicit --shard): --shard K/N splits by rank, a GPU
    run's decoders share the machine's cores between its ranks, CUDA means the rank's own GPU."""
    from cezsar.base.devices import resolve_device
    from cezsar.encoders.extraction import decoders_for
    from cezsar.encoders.shards import for_this_process

    assert for_this_process((1, 3)) == ((1, 3), False) and for_this_process(None) == ((0, 1), False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert for_this_process((1, 3)) == ((4, 6), False)  # positions 1 mod 3, then this rank's half of them
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert decoders_for(torch.device("cuda"), 0) == 2 and decoders_for("cpu", 0) == 1  # 16 / 4 cores, 2 kept
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.device_count() > 1:
        assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)


@pytest.mark.slow
def test_two_ranks_train_like_one_process(toy, two_ranks, tmp_path):
    root, _ = toy
    trip, _, text = make_toy(tmp_path / "arrays")  # the child's arrays (same seed) over the same feature files
    store = FakeStore(root / "feats")
    one = fit(trip, store, text, TrainConfig(**RUN), ModelConfig(**TINY), tmp_path / "one", progress=False)
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    b = torch.load(two_ranks / "last.pt", weights_only=True)
    assert b["world_size"] == 2 and len(b["rng_ranks"]) == 2 and "world_size" not in a
    ha, hb = a["history"], b["history"]
    assert len(ha) == len(hb) == RUN["epochs"]
    for key in ("train_loss", "val_loss", "val_acc"):
        np.testing.assert_allclose([r[key] for r in hb], [r[key] for r in ha], rtol=RTOL, err_msg=key)
    assert ha[-1]["val_loss"] < ha[0]["val_loss"]  # it learned: the comparison is not between two no-ops
    # two summation orders of the same gradients: on an AVX2 CPU one weight of 65,536 in linear1 ended 1.4e-5 apart
    # (AdamW divides by sqrt(v), so an element whose gradient is rounding noise moves by noise-sized steps); 1e-4
    # holds that 7-fold and is still 10x below one step of lr = 1e-3, the size a wrong gradient average gives
    assert_weights_close(b["model"], a["model"], atol=1e-4)
    assert json.loads((two_ranks / "log.json").read_text()) == hb  # rank 0 wrote the logs
    assert one["history"] == ha


@pytest.mark.slow
@pytest.mark.parametrize("rank, epoch, step", [(1, 2, 3), (0, 1, 6)])
def test_a_rank_killed_mid_epoch_resumes_and_finishes(toy, two_ranks, tmp_path, rank, epoch, step):
    _, script = toy
    out = tmp_path / "cut"
    steps = 10  # 300 training triplets / batch 32 per epoch
    killed = torchrun(script, str(out), str(rank), str(epoch * steps + step), "0")  # SIGKILL inside that step
    assert killed.returncode != 0 and (out / "last.pt").is_file(), killed.stderr[-3000:]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == epoch - 1  # the epochs before it were saved
    done = torchrun(script, str(out), "-1", "0", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    a = torch.load(two_ranks / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == RUN["epochs"] - 1
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose([r[key] for r in b["history"]], [r[key] for r in a["history"]], rtol=RTOL)
    assert_weights_close(b["model"], a["model"], atol=1e-6)


@pytest.mark.slow
def test_torchrun_runs_the_train_command(toy, tmp_path):
    """`torchrun -m cezsar train`: real TripletSet file and MiniLM sentences; rank 0 alone prints the summary."""
    from cezsar.formats.triplets import TripletSet

    root, _ = toy
    trip, _, _ = make_toy(tmp_path / "arrays")
    TripletSet(trip.sentences, trip.video_ids, trip.video, trip.start, trip.end, trip.pos, trip.neg,
               trip.val).save(tmp_path / "triplets.npz")
    env = {**os.environ, "PYTHONPATH": str(PROJ_ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "cezsar",
           "train", "--triplets", str(tmp_path / "triplets.npz"), "--features", str(root / "feats"),
           "--out", str(tmp_path / "run"), "--epochs", "2", "--batch", "32", "--lr", "1e-3", "--device", "cpu",
           "--json"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # one summary, from rank 0
    summary = json.loads(lines[0])
    assert summary["world_size"] == 2 and summary["epochs_run"] == 2
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["world_size"] == 2



def test_train_command_forms_are_checked(tmp_path, capsys):
    """Either the three files or --params; usage errors exit 2 (docs/errors.md)."""
    from cezsar.cli import main

    assert main(["train", "--triplets", str(tmp_path / "t.npz")]) == 2
    assert "give --features, --out (or --params" in capsys.readouterr().err
    assert main(["train", "--params", "params/embedded.yaml", "--out", str(tmp_path)]) == 2
    assert "drop --out" in capsys.readouterr().err
    assert main(["train", "--params", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: no such file" in capsys.readouterr().err


# --- extraction and objects ------------------------------------------------------------------------
EXTRACT_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from test_distributed import mock_head
    from test_features import MockEncoder
    from cezsar.commands.extract import collect_videos
    from cezsar.encoders.feature_objects import objects_from_features
    from cezsar.encoders.extraction import extract
    corpus, out = sys.argv[1], sys.argv[2]
    extract(collect_videos("folder", corpus), out, encoder=MockEncoder(), progress=False)  # shard = the rank
    objects_from_features(out, mock_head(), out + "_objects", topk=3, progress=False)
""")
COUNTS = ("videos", "done", "encoded", "reused", "frames", "skipped")


def mock_head() -> LinearHead:
    """A 1000-class linear head over MockEncoder's 12-d features (objects of a feature folder)."""
    rng = np.random.default_rng(1)
    return LinearHead(rng.standard_normal((1000, 12)).astype(np.float32), rng.standard_normal(1000).astype(np.float32),
                      "mock", "mock-head.npz")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.slow
def test_two_rank_extraction_equals_one_process_byte_for_byte(corpus, tmp_path):
    script = tmp_path / "extract_child.py"
    script.write_text(EXTRACT_CHILD)
    res = torchrun(script, str(corpus), str(tmp_path / "ranks"))
    assert res.returncode == 0, res.stderr[-3000:]
    one = extract(collect_videos("folder", corpus), tmp_path / "one", encoder=MockEncoder(), progress=False)
    objects_from_features(tmp_path / "one", mock_head(), tmp_path / "one_objects", topk=3, progress=False)
    ranks = tmp_path / "ranks"
    assert sorted(p.name for p in ranks.glob("report*.json")) == [
        "report.json", "report_shard0of2.json", "report_shard1of2.json"]
    assert _snapshot(ranks) == _snapshot(tmp_path / "one") and len(_snapshot(ranks)) > 5
    assert _snapshot(tmp_path / "ranks_objects") == _snapshot(tmp_path / "one_objects")
    merged = json.loads((ranks / "report.json").read_text())
    assert {k: merged[k] for k in COUNTS} == {k: one[k] for k in COUNTS}
    assert merged["shards"] == 2 and len(merged["shard_seconds"]) == 2
    obj = json.loads((tmp_path / "ranks_objects" / "report.json").read_text())
    assert (obj["done"], obj["computed"], obj["shards"]) == (one["done"], one["done"], 2)


def test_job_array_merge_names_a_missing_shard_then_merges(corpus, tmp_path, capsys):
    from cezsar.cli import main

    out = tmp_path / "array"
    videos = collect_videos("folder", corpus)
    one = extract(videos, tmp_path / "one", encoder=MockEncoder(), progress=False)
    extract(videos, out, shard=(0, 3), encoder=MockEncoder(), progress=False)
    extract(videos, out, shard=(2, 3), encoder=MockEncoder(), progress=False)
    with pytest.raises(ShardReportsMissing, match=r"report_shard1of3\.json missing"):
        merge_reports(out)
    assert main(["extract", "--merge-reports", "--out", str(out)]) == 1  # a data error (docs/errors.md)
    assert "report_shard1of3.json missing" in capsys.readouterr().err and not (out / "report.json").exists()
    extract(videos, out, shard=(1, 3), encoder=MockEncoder(), progress=False)  # the missing shard, alone
    assert main(["extract", "--merge-reports", "--out", str(out)]) == 0
    merged = json.loads((out / "report.json").read_text())
    assert {k: merged[k] for k in COUNTS} == {k: one[k] for k in COUNTS} and merged["shards"] == 3
    assert _snapshot(out) == _snapshot(tmp_path / "one")
    extract(videos, out, shard=(0, 2), encoder=MockEncoder(), progress=False)  # a stale shard count beside it
    with pytest.raises(ShardReportsMissing, match=r"\[2, 3\] shards"):
        merge_reports(out)
    assert main(["extract", "--merge-reports", "--out", str(tmp_path / "nowhere")]) == 2
    objs = tmp_path / "objects"
    objects_from_features(out, mock_head(), objs, topk=3, progress=False, shard=(1, 2))
    assert main(["objects", "--merge-reports", "--out", str(objs)]) == 1  # shard 0 of 2 has not run
    assert "report_shard0of2.json missing" in capsys.readouterr().err
    objects_from_features(out, mock_head(), objs, topk=3, progress=False, shard=(0, 2))
    assert main(["objects", "--merge-reports", "--out", str(objs)]) == 0
    assert json.loads((objs / "report.json").read_text())["computed"] == one["done"]


def test_temp_clean_up_keeps_another_nodes_files_in_flight(tmp_path):
    """Ranks on several nodes write into one shared folder: a node judges only its own dead writers' temps."""
    from cezsar.base.atomic import _HOST, remove_stale_temps, write_bytes

    dead = 2**22 + 12345  # above the default pid_max: no process has it
    mine_dead, old_dead = tmp_path / f".a.npy.{dead}@{_HOST}.tmp", tmp_path / f".b.npy.{dead}.tmp"
    elsewhere = tmp_path / f".c.npy.{dead}@another-node.tmp"  # a live writer there, for all this node knows
    for p in (mine_dead, old_dead, elsewhere):
        p.write_bytes(b"half")
    assert sorted(remove_stale_temps(tmp_path)) == sorted([mine_dead, old_dead])
    assert elsewhere.exists()
    write_bytes(tmp_path / "d.npy", b"x")  # the writer's own temp name carries this host and is gone after
    assert sorted(p.name for p in tmp_path.iterdir()) == [elsewhere.name, "d.npy"]
