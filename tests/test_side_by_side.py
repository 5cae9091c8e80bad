"""Issue 26: the τ of the ablation train side by side, one process each with a fixed thread count, and give
exactly the numbers of one τ after another; a failing job is raised here, named, and stops the others."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cezsar import errors
from cezsar.harness import params, pipeline, pipeline_training
from cezsar.harness.side_by_side import run_side_by_side


def _echo(word: str, n: int) -> dict:
    """A job: prints two lines, returns what it was given and its torch thread count."""
    print(f"{word} starts")
    print(f"{word} ends")
    return {"word": word, "n": n, "threads": torch.get_num_threads()}


def _fail_or_wait(fail: bool) -> None:
    if fail:
        raise errors.DataError("captions.json line 3: not a caption")
    time.sleep(120)


def test_jobs_run_in_their_own_processes_and_their_lines_come_back_prefixed(capsys):
    done = run_side_by_side(_echo, {"a": ("alpha", 1), "b": ("beta", 2)}, threads=1)
    assert done == {"a": {"word": "alpha", "n": 1, "threads": 1}, "b": {"word": "beta", "n": 2, "threads": 1}}
    out = capsys.readouterr().out.splitlines()
    assert {"[a] alpha starts", "[a] alpha ends", "[b] beta starts", "[b] beta ends"} <= set(out)
    assert out.index("[a] alpha starts") < out.index("[a] alpha ends")


def test_a_failing_job_raises_its_own_error_naming_the_job_and_stops_the_others():
    t0 = time.perf_counter()
    with pytest.raises(errors.DataError, match="captions.json line 3") as err:
        run_side_by_side(_fail_or_wait, {"τ 0.7": (True,), "τ 0.9": (False,)})
    assert any("τ 0.7" in note for note in getattr(err.value, "__notes__", []))
    assert time.perf_counter() - t0 < 60, "the waiting job was not stopped"


def _settings(tmp_path: Path, synth_small: Path, models: str, **extra) -> params.Settings:
    values = {"data_root": str(synth_small), "work_dir": str(tmp_path / "work"), "models_dir": str(tmp_path / models),
              "use_objects": "off", "device": "cpu", "epochs": 2, "train_seeds": 2, "tau": 0.9,
              "tau_values": "0.7,0.9", "train_threads": 1, **extra}
    (tmp_path / f"{models}.yaml").write_text(yaml.safe_dump(values))
    return params.settings(tmp_path / f"{models}.yaml")


def _losses(run: Path) -> list[tuple]:
    return [(r["epoch"], r["train_loss"], r["val_loss"], r["val_acc"]) for r in json.loads((run / "log.json").read_text())]


@pytest.mark.slow
def test_taus_trained_side_by_side_equal_the_same_taus_trained_one_after_another(tmp_path: Path, synth_small: Path):
    s = _settings(tmp_path, synth_small, "together")
    lay = pipeline.layout_from(s)
    feats = lay.train_features
    feats.mkdir(parents=True)
    from cezsar.formats import captions

    rng = np.random.default_rng(0)
    for vid, d in captions.read_activitynet(lay.captions[0]).durations.items():
        np.save(feats / f"{vid}.npy", rng.standard_normal((int(d) + 1, 8), dtype=np.float32))
    assert pipeline_training.every_tau(s) == [0.7, 0.9]

    together = pipeline_training.train_taus(lay, s)
    assert sorted(together) == [0.7, 0.9]
    one = _settings(tmp_path, synth_small, "apart")
    before = torch.get_num_threads()
    apart = {tau: pipeline_training.train_model(pipeline.layout_from(one), one, tau) for tau in (0.7, 0.9)}
    assert torch.get_num_threads() == before, "train_model restores the thread count"
    for tau in (0.7, 0.9):
        assert together[tau]["seeds"] == apart[tau]["seeds"] == [0, 1]
        for k in (0, 1):
            a = Path(together[tau]["model_dir"]) / f"seed{k}"
            b = Path(apart[tau]["model_dir"]) / f"seed{k}"
            assert a != b
            # every loss of every epoch, to the last bit, and the best weights
            assert _losses(a) == _losses(b)
            wa, wb = torch.load(a / "best.pt", weights_only=False), torch.load(b / "best.pt", weights_only=False)
            assert all(torch.equal(wa["model"][n], wb["model"][n]) for n in wa["model"])
            assert json.loads((a / "provenance.json").read_text())["threads"] == 1
