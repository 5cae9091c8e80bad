"""Issue 14: the pieces of the real-data path — objects from released features, parameter sets, several caption
files, description sets, input checks, reuse keys — each on small real inputs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cezsar import errors
from cezsar.formats import captions, datasets
from cezsar.harness import params, pipeline, pipeline_evaluation, pipeline_mining, pipeline_training
from cezsar.encoders.feature_objects import load_head, objects_from_features, topk_probs
from cezsar.encoders.features import FeatureStore, ReadOnce
from cezsar.encoders.objects import topk_from_logits
from paper_fixture import REFERENCE

ROOT = Path(__file__).resolve().parents[1]
REF = REFERENCE
# the sets' own epochs, read from the files: these tests are about which value wins, not about the values
PAPER_EPOCHS = yaml.safe_load((ROOT / "params" / "paper.yaml").read_text())["epochs"]
EMBEDDED_EPOCHS = yaml.safe_load((ROOT / "params" / "embedded.yaml").read_text())["epochs"]


def _head(path: Path, dim: int, classes: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, **{"resnet/head/conv2d/kernel": rng.standard_normal((1, 1, dim, classes), dtype=np.float32),
                      "resnet/head/conv2d/bias": rng.standard_normal(classes).astype(np.float32)})
    return path


def _stacks(folder: Path, n: int, dim: int, seed: int = 0, rows: int = 6) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"v_{i:05d}" for i in range(n)]
    for i, vid in enumerate(ids):
        np.save(folder / f"{vid}.npy", rng.standard_normal((rows + i % 3, dim), dtype=np.float32))
    return ids


# --- objects from features ---------------------------------------------------------------------
def test_bit_head_objects_equal_the_head_applied_by_hand(tmp_path: Path):
    head = load_head(_head(tmp_path / "h.npz", 32, 1000))
    assert (head.dim, head.num_classes, head.label_space, head.backbone) == (32, 1000, "imagenet1k", "bit_m_r152x2")
    _stacks(tmp_path / "f", 3, 32)
    rep = objects_from_features(tmp_path / "f", head, tmp_path / "o", topk=5, progress=False)
    assert (rep["computed"], rep["reused"], rep["skipped"]) == (3, 0, [])
    x = np.load(tmp_path / "f" / "v_00001.npy")
    kernel = np.load(tmp_path / "h.npz")["resnet/head/conv2d/kernel"][0, 0]  # (D, C), TensorFlow layout
    want_idx, want_sc = topk_from_logits(x @ kernel + np.load(tmp_path / "h.npz")["resnet/head/conv2d/bias"], 5)
    with np.load(tmp_path / "o" / "v_00001.npz") as z:
        assert np.array_equal(z["indices"], want_idx)
        np.testing.assert_allclose(z["scores"].astype(np.float32), want_sc.astype(np.float32), atol=1e-3)
    store = FeatureStore(tmp_path / "f", tmp_path / "o")
    assert store.label_space == "imagenet1k" and store.has_objects and store.objects("v_00002")[0].shape[1] == 5
    again = objects_from_features(tmp_path / "f", head, tmp_path / "o", topk=5, progress=False)
    assert (again["computed"], again["reused"]) == (0, 3)


def test_topk_probs_matches_the_sorting_reference():
    logits = torch.randn(40, 1000, generator=torch.Generator().manual_seed(0))
    idx, sc = topk_probs(logits, 5)
    ref_idx, ref_sc = topk_from_logits(logits.numpy(), 5)
    assert np.array_equal(idx, ref_idx) and np.array_equal(sc, ref_sc)


def test_efficientnet_head_is_the_offline_classifier():
    head = load_head(None)
    assert (head.backbone, head.dim, head.num_classes, head.label_space) == \
        ("efficientnet_lite0", 1280, 1000, "imagenet1k")


def test_head_of_the_wrong_width_and_a_file_without_a_head_are_named(tmp_path: Path):
    _stacks(tmp_path / "f", 1, 16)
    head = load_head(_head(tmp_path / "h.npz", 32, 1000))
    with pytest.raises(ValueError, match="16-d but the head"):
        objects_from_features(tmp_path / "f", head, tmp_path / "o", progress=False)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: no BiT head"):
        load_head(tmp_path / "other.npz")
    odd = _head(tmp_path / "odd.npz", 16, 7)
    with pytest.raises(ValueError, match="7 classes has no ImageNet label space"):
        objects_from_features(tmp_path / "f", load_head(odd), tmp_path / "o2", progress=False)


@pytest.mark.slow
def test_objects_command_killed_midway_then_resumed_equals_one_run(tmp_path: Path):
    ids = _stacks(tmp_path / "f", 1500, 64, rows=8)
    _head(tmp_path / "h.npz", 64, 1000)
    base = [sys.executable, "-m", "cezsar", "objects", "--features", str(tmp_path / "f"), "--weights",
            str(tmp_path / "h.npz"), "--device", "cpu", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(base + ["--out", str(tmp_path / "killed")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "killed").glob("v_*.npz"))) < 200:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((tmp_path / "killed").glob("v_*.npz")))
    assert 0 < done_before < len(ids), "the kill must land mid-run"
    out = subprocess.run(base + ["--out", str(tmp_path / "killed"), "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["reused"] >= done_before - 1 and rep["done"] == len(ids) and rep["skipped"] == []
    whole = subprocess.run(base + ["--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    for vid in ids:
        with np.load(tmp_path / "killed" / f"{vid}.npz") as a, np.load(tmp_path / "whole" / f"{vid}.npz") as b:
            assert np.array_equal(a["indices"], b["indices"]) and np.array_equal(a["scores"], b["scores"]), vid
    assert not [p for p in (tmp_path / "killed").iterdir() if p.name.startswith(".")], "temp files left behind"


# --- parameter sets ---------------------------------------------------------------------------------
def test_a_misspelt_key_is_an_error_naming_the_nearest(tmp_path: Path):
    (tmp_path / "p.yaml").write_text("mode: paper\nepcohs: 3\n")
    with pytest.raises(errors.ParameterError, match="'epcohs' \\(did you mean 'epochs'\\?\\)"):
        params.load(tmp_path / "p.yaml")


def test_notebook_values_override_the_set_visibly_and_none_does_not():
    s = params.settings("params/paper.yaml", {"epochs": None, "tau": None, "batch": None})
    assert s.epochs == PAPER_EPOCHS and not s.overrides  # None: the set's value is used
    s = params.settings("params/paper.yaml", {"epochs": 3})
    assert s.epochs == 3 and s.overrides == {"epochs": (PAPER_EPOCHS, 3)}
    assert "epochs" in s._repr_markdown_() and "**3**" in s._repr_markdown_()
    with pytest.raises(errors.ParameterError, match="epochs: 'many' is not a whole number"):
        params.settings("params/paper.yaml", {"epochs": "many"})


def test_a_notebook_value_equal_to_the_embedded_default_still_overrides_another_set(tmp_path: Path):
    """Issue 29: in a set with `tau: 0.7`, a notebook's `tau = 0.8` (the embedded default) is used, and so is a
    notebook's `epochs = 16` under params/paper.yaml (epochs 25)."""
    (tmp_path / "p.yaml").write_text("tau: 0.7\n")
    s = params.settings(tmp_path / "p.yaml", {"tau": 0.8, "epochs": None})
    assert s.tau == 0.8 and s.overrides == {"tau": (0.7, 0.8)}
    assert EMBEDDED_EPOCHS != PAPER_EPOCHS
    assert params.settings("params/paper.yaml", {"epochs": EMBEDDED_EPOCHS}).epochs == EMBEDDED_EPOCHS


def test_every_relative_path_resolves_against_the_project_root():
    lay = pipeline.layout_from(params.settings("params/paper.yaml"))
    assert lay.weights == ROOT / "data/raw/weights/BiT-M-R152x2.npz"
    assert lay.captions == tuple(ROOT / f"data/raw/activitynet/{n}.json" for n in ("train", "val_1", "val_2"))
    assert lay.figures == ROOT / "figures" / "paper" and lay.run_dir == ROOT / "runs" / "paper"
    # released features live outside the work folder: their objects are written under it, not beside them
    assert lay.train_objects == ROOT / "data/interim/paper/objects/activitynet"


def test_a_description_folder_in_the_authors_layout_is_selectable(tmp_path: Path):
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "apply_eye_makeup.txt").write_text("Someone paints their eyelids with a small brush.")
    (folder / "archery.txt").write_text("A person draws a bow and shoots an arrow at a target.")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"mode": "paper", "ucf101_descriptions": str(folder)}))
    lay = pipeline.layout_from(params.settings(tmp_path / "p.yaml"))
    assert lay.descriptions["ucf101"] == folder
    assert datasets.read_descriptions(lay.descriptions["ucf101"])["archery"][0].startswith("A person draws")


def test_notebook_00_lists_every_missing_input_before_anything_runs(tmp_path: Path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({
        "mode": "paper", "anet_captions": str(tmp_path / "none.json"), "anet_features": str(tmp_path / "nofeat"),
        "ucf101_root": str(tmp_path / "noucf"), "kinetics400_root": str(tmp_path / "nok400"),
        "ucf101_descriptions": str(tmp_path / "nodesc.json"), "backbone": "bit_m_r152x2",
        "backbone_weights": str(tmp_path / "BiT.npz"), "work_dir": str(tmp_path / "work")}))
    s = params.settings(tmp_path / "p.yaml")
    with pytest.raises(FileNotFoundError) as err:
        pipeline.check_inputs(pipeline.layout_from(s), s)
    text = str(err.value)
    for what in ("none.json", "nofeat", "noucf", "nok400", "nodesc.json", "BiT.npz"):
        assert what in text, what
    assert "stage 01" in text and "stages 00-04" in text


@pytest.mark.skipif(not (REF / "activitynet_captions" / "val_2.json").is_file(), reason="reference data absent")
def test_train_and_both_validation_files_read_as_one_corpus():
    a = REF / "activitynet_captions"
    caps = captions.read_activitynet_files(f"{a / 'train.json'},{a / 'val_1.json'},{a / 'val_2.json'}")
    train = captions.read_activitynet(a / "train.json")
    v1, v2 = captions.read_activitynet(a / "val_1.json"), captions.read_activitynet(a / "val_2.json")
    # val_1 and val_2 annotate the same videos; ActivityNet Captions' published split sizes: 10,009 training
    # videos + 4,917 validation videos = 14,926 distinct videos
    assert len(caps.durations) == len(set(train.durations) | set(v1.durations) | set(v2.durations)) == 10_009 + 4_917
    dups = caps.problems.get("duplicate_across_files", 0)
    assert len(caps.segments) == len(train.segments) + len(v1.segments) + len(v2.segments) - dups


def test_a_triplet_file_is_not_reused_when_an_input_changes(tmp_path: Path, synth_small: Path):
    import shutil

    root = tmp_path / "synth"
    shutil.copytree(synth_small, root)  # its captions file is changed below
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"data_root": str(root), "work_dir": str(tmp_path / "work"),
                                                     "use_objects": "off"}))
    s = params.settings(tmp_path / "p.yaml")
    lay = pipeline.layout_from(s)
    feats = lay.train_features
    feats.mkdir(parents=True)
    caps = captions.read_activitynet(lay.captions[0])
    rng = np.random.default_rng(0)
    for vid, d in caps.durations.items():
        np.save(feats / f"{vid}.npy", rng.standard_normal((int(d) + 1, 8), dtype=np.float32))
    first = pipeline_mining.mine_triplets(lay, s)
    assert first["reused"] is False and first["videos_without_features"] == 0
    assert pipeline_mining.mine_triplets(lay, s)["reused"] is True
    data = json.loads(lay.captions[0].read_text())
    vid = sorted(data)[0]
    data[vid]["sentences"][0] = "a completely different caption about a red kite"
    lay.captions[0].write_text(json.dumps(data))
    again = pipeline_mining.mine_triplets(lay, s)
    assert again["reused"] is False, "a changed captions file must not reuse old triplets"
    assert list(lay.triplets(s.tau).parent.glob("*.stale-*")), "the old file is set aside, not deleted"


def test_evaluation_reads_each_test_stack_once(tmp_path: Path):
    _stacks(tmp_path / "f", 4, 8)
    store = ReadOnce(FeatureStore(tmp_path / "f"))
    for _ in range(3):  # three methods
        for vid in store.ids:
            assert store.load(vid).shape[1] == 8
    assert store.disk_reads == 4 and store.dim == 8
    capped = ReadOnce(FeatureStore(tmp_path / "f"), budget_gb=0)
    for _ in range(2):
        capped.load("v_00000")
    assert capped.disk_reads == 2, "over the budget nothing is kept"


def test_a_feature_folder_is_checked_against_the_dataset_list(tmp_path: Path):
    from cezsar.encoders.features import check_folder

    _stacks(tmp_path / "f", 3, 8)
    np.save(tmp_path / "f" / "v_nan.npy", np.full((2, 8), np.nan, np.float32))
    rep = check_folder(FeatureStore(tmp_path / "f"), ["v_00000", "v_00001", "v_nan", "v_gone"])
    assert (rep["videos"], rep["with_features"], rep["missing"], rep["extra"]) == (4, 3, 1, 1)
    assert rep["missing_examples"] == ["v_gone"] and rep["extra_examples"] == ["v_00002"]
    assert [b["video_id"] for b in rep["bad"]] == ["v_nan"] and rep["complete"] is False


def test_a_value_set_on_a_control_survives_run_all_until_reset(tmp_path: Path, monkeypatch):
    from cezsar.harness import widgets

    monkeypatch.setenv("CEZSAR_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("CEZSAR_HEADLESS", raising=False)
    ns = {"epochs": None, "tau": None}
    panel = widgets.tuner(ns, ["epochs", "tau"], "params/embedded.yaml")
    epochs_control = panel.children[1]
    epochs_control.value = 3  # a person moves the control
    assert ns["epochs"] == 3
    fresh = {"epochs": None, "tau": None}  # "Run All": the parameters cell runs again
    panel = widgets.tuner(fresh, ["epochs", "tau"], "params/embedded.yaml")
    assert fresh["epochs"] == 3 and "remembered: epochs=3" in panel.children[0].value
    assert params.settings("params/embedded.yaml", fresh).overrides == {"epochs": (EMBEDDED_EPOCHS, 3)}
    monkeypatch.setenv("CEZSAR_HEADLESS", "1")  # papermill: the parameter set rules
    headless = {"epochs": None, "tau": None}
    widgets.tuner(headless, ["epochs", "tau"], "params/embedded.yaml")
    assert headless["epochs"] is None and params.settings("params/embedded.yaml", headless).epochs == EMBEDDED_EPOCHS
    monkeypatch.delenv("CEZSAR_HEADLESS")
    panel.children[-1].click()  # reset
    again = {"epochs": None, "tau": None}
    widgets.tuner(again, ["epochs", "tau"], "params/embedded.yaml")
    assert again["epochs"] is None and fresh["epochs"] is None  # forgotten: the set's value again


def test_the_released_parameter_set_switches_every_stage_of_the_notebooks():
    """params/released.yaml is a valid set, and the notebooks' stages build their configs from it (issue 16)."""
    from cezsar.harness.fidelity import RELEASED

    s = params.settings("params/released.yaml")
    mine, model, train, ev = (pipeline_mining.mining_config(s), pipeline_training.model_config(s),
                              pipeline_training.train_config(s), pipeline_evaluation.eval_config(s))
    assert (mine.split, mine.draw, mine.released_objects, mine.val_fraction) == ("triplet", "released", True, 0.3)
    assert (model.released_padding, model.released_attention, model.released_head, model.max_len,
            model.d_model, model.positional) == (True, True, True, 16, 1024, False)
    assert (train.window, train.autocast) == ("released", False)
    assert (ev.normalize_terms, ev.released_objects, ev.released_descriptions, ev.max_seconds, ev.std_ddof) == \
        (False, True, True, 16, 0)
    assert {k: s[k] for k in RELEASED} == RELEASED
    # with every switch off (the embedded set) the stages get the dataclass defaults: the paper's reading
    e = params.settings("params/embedded.yaml")
    from cezsar.config import ModelConfig

    assert pipeline_training.model_config(e) == ModelConfig()
    assert pipeline_training.train_config(e).window == "paper"


def test_the_config_dataclasses_default_to_the_embedded_parameter_set():
    """One source of defaults (issue 29): every parameter-set key that sets a config field has the same default in
    the dataclass (and so in the CLI, whose defaults are the dataclasses') as in params/embedded.yaml."""
    from cezsar.config import EvalConfig, MiningConfig, ModelConfig, TrainConfig

    made = {"mine": MiningConfig(), "model": ModelConfig(), "train": TrainConfig(), "eval": EvalConfig()}
    embedded = params.defaults()
    differ = {key: (getattr(made[stage], name), embedded[key]) for key, (stage, name) in params.CONFIG_KEYS.items()
              if getattr(made[stage], name) != embedded[key]}
    assert not differ, f"dataclass default vs params/embedded.yaml: {differ}"
