"""Protocols: class counts, seeded subsets, split files reused, run scoring, results schema, bad input."""
from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from cezsar.evaluation import protocols as P
from cezsar.evaluation import zsar
from cezsar.config import SPLITS_DIR
from cezsar.formats.datasets import ClassDataset, Video

from paper_fixture import REFERENCE as REF


def test_paper_protocols_class_counts_and_runs():
    sizes = {"ucf101": 101, "kinetics400": 400, "hmdb51": 51}
    expect = {("ucf101", "0/101"): (101, 1), ("ucf101", "0/50"): (50, 50), ("ucf101", "0/20"): (20, 50),
              ("kinetics400", "0/400"): (400, 1), ("kinetics400", "0/100"): (100, 50),
              ("kinetics400", "0/25"): (25, 50), ("hmdb51", "0/51"): (51, 1), ("hmdb51", "0/25"): (25, 50)}
    for (kind, name), (n, runs) in expect.items():
        p = P.get_protocol(kind, name, sizes[kind])
        assert (p.n_classes, p.runs) == (n, runs)
    assert P.get_protocol("ucf101", "0/all", 101).runs == 1
    assert P.get_protocol("ucf101", "0/5", 8, runs=7).runs == 7  # generic 0/N, scaled datasets
    assert P.get_protocol("ucf101", "0/8", 8, runs=7).runs == 1  # every class: one subset only
    with pytest.raises(ValueError, match="needs 101 test classes but dataset 'ucf101' has 8"):
        P.get_protocol("ucf101", "0/101", 8)
    with pytest.raises(ValueError, match="split file"):
        P.get_protocol("ucf101", "truze", 101)
    with pytest.raises(ValueError, match="unknown protocol"):
        P.get_protocol("ucf101", "50/50", 101)


def test_make_runs_seeded_sizes_and_official_order():
    classes = [f"c{i:03d}" for i in range(60)]
    size, runs = 10, 20
    a = P.make_runs(classes, size, runs)
    assert a == P.make_runs(classes, size, runs)
    assert [r["seed"] for r in a] == list(range(runs))
    for r in a:
        assert len(set(r["classes"])) == size and r["classes"] == sorted(r["classes"])
    assert len({tuple(r["classes"]) for r in a}) == runs  # different seeds, different subsets
    assert P.make_runs(classes, 10, 3, first_seed=5)[0] == a[5]


def test_split_file_is_reused_even_if_the_rng_changes(tmp_path, monkeypatch):
    classes = [f"c{i}" for i in range(30)]
    proto = P.get_protocol("custom", "0/7", 30, runs=5)
    path = P.split_path(proto, tmp_path)
    first = P.load_or_create_splits(proto, classes, path)
    text = path.read_text()
    real_rng = np.random.default_rng
    monkeypatch.setattr(P.np.random, "default_rng", lambda s: real_rng(s + 12345))  # a "changed" RNG
    again = P.load_or_create_splits(proto, classes, path)
    assert again["runs"] == first["runs"] and path.read_text() == text
    fresh = P.load_or_create_splits(proto, classes, tmp_path / "other.json")
    assert fresh["runs"] != first["runs"]  # the changed RNG would have changed the subsets
    fewer = P.load_or_create_splits(P.get_protocol("custom", "0/7", 30, runs=2), classes, path)
    assert fewer["runs"] == first["runs"][:2]
    with pytest.raises(ValueError, match="holds 5 runs, 9 requested"):
        P.load_or_create_splits(P.get_protocol("custom", "0/7", 30, runs=9), classes, path)


def test_split_naming_an_unknown_class_is_an_error_naming_it(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"dataset": "custom", "protocol": "0/2", "n_classes": 2,
                                "runs": [{"seed": 0, "classes": ["a", "zebra dancing"]}]}))
    proto = P.get_protocol("custom", "0/2", 3, runs=1)
    with pytest.raises(ValueError) as err:
        P.load_or_create_splits(proto, ["a", "b", "c"], path)
    assert "zebra dancing" in str(err.value) and str(path) in str(err.value)
    wrong = P.get_protocol("custom", "0/3", 3, runs=1)  # 0/1 is refused (issue 30)
    with pytest.raises(ValueError, match="is for custom 0/2"):
        P.load_or_create_splits(wrong, ["a", "b", "c"], path)


@pytest.mark.parametrize("kind", list(P.PROTOCOLS))
def test_committed_split_files_match_the_official_lists(kind):
    official = P.official_classes(kind)
    assert official is not None and len(official) == {"ucf101": 101, "kinetics400": 400, "hmdb51": 51}[kind]
    for name, (n, runs) in P.PROTOCOLS[kind].items():
        path = SPLITS_DIR / f"{kind}_{name.replace('/', '-')}.json"
        data = json.loads(path.read_text())
        assert (data["dataset"], data["protocol"], data["n_classes"]) == (kind, name, n)
        assert [r["seed"] for r in data["runs"]] == list(range(runs))
        for r in data["runs"]:
            assert len(set(r["classes"])) == n and set(r["classes"]) <= set(official)


def test_truze_uses_the_34_testing_classes_of_the_real_split(tmp_path):
    ref = REF / "ucf101" / "splits" / "ucf101_truezsl_splits.json"
    if not ref.exists():
        pytest.skip("reference data absent")
    official = P.official_classes("ucf101")
    proto = P.get_protocol("ucf101", "truze", 101, split_file=ref)
    s = P.load_or_create_splits(proto, official, tmp_path / "truze.json")
    raw = json.loads(ref.read_text())
    # 34: the TruZe split's UCF-101 unseen (test) classes, as its paper gives them
    assert proto.runs == 1 and len(s["runs"][0]["classes"]) == len(raw["testing"]) == 34
    assert not set(s["runs"][0]["classes"]) & {c.lower() for c in raw["training"]}


def test_evaluate_runs_matches_a_per_run_reference():
    rng = np.random.default_rng(0)
    c, v = 12, 300
    classes = [f"k{i}" for i in range(c)]
    proto_emb = rng.normal(size=(c, 8)).astype(np.float32)
    labels = rng.integers(0, c, v)
    vid = (proto_emb[labels] + 1.5 * rng.normal(size=(v, 8))).astype(np.float32)
    runs = P.make_runs(classes, 6, 10)
    fast = P.evaluate_runs(zsar.cosine_scores(vid, proto_emb), labels, classes, runs)
    for r, f in zip(runs, fast):
        cols = [classes.index(k) for k in r["classes"]]
        rows = np.isin(labels, cols)
        local = np.array([cols.index(y) for y in labels[rows]])
        m = zsar.metrics(zsar.cosine_scores(vid[rows], proto_emb[cols]), local)
        assert f["n_videos"] == rows.sum() and f["classes"] == r["classes"]
        assert f["top1"] == pytest.approx(m["top1"]) and f["top5"] == pytest.approx(m["top5"])
    assert 0.2 < np.mean([f["top1"] for f in fast]) < 1.0  # informative data, not a degenerate case


def test_summarize_reports_sample_std():
    s = P.summarize([{"top1": 0.5, "top5": 1.0}, {"top1": 0.7, "top5": 0.9}, {"top1": 0.6, "top5": 0.8}])
    assert s["std_ddof"] == 1 and s["top1_mean"] == pytest.approx(0.6)
    assert s["top1_std"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.6]))
    assert P.summarize([{"top1": 0.5, "top5": 1.0}])["top1_std"] is None


# --- run_evaluation end to end on a tiny custom dataset ---------------------------------------------------
class HashEncoder:
    """SBERT stand-in: a fixed pseudo-random vector per sentence (sha256-seeded)."""

    model_id, dim = "hash-6d", 6

    def encode(self, sentences):
        return np.stack([np.random.default_rng(int(hashlib.sha256(s.encode()).hexdigest()[:8], 16)).normal(size=6)
                         for s in sentences]).astype(np.float32)


class Store:
    def __init__(self, feats):
        self.feats, self.ids, self.label_space = feats, list(feats), "imagenet1k"

    def load(self, vid):
        return self.feats[vid]

    def objects(self, vid):
        return None


def tiny_model():
    import torch

    from cezsar.config import ModelConfig
    from cezsar.training.joint_embedder import JointEmbedder

    torch.manual_seed(0)
    return JointEmbedder(ModelConfig(feat_dim=8, text_dim=6, d_model=16, n_heads=2, emb_dim=5)).eval()


def tiny_world(n_classes=5, per_class=4):
    classes = [f"action {chr(97 + i)}" for i in range(n_classes)]
    rng = np.random.default_rng(0)
    videos = [Video(f"v{c}_{j}", None, classes[c]) for c in range(n_classes) for j in range(per_class)]
    feats = {v.video_id: rng.normal(size=(int(rng.integers(3, 20)), 8)).astype(np.float32) for v in videos}
    ds = ClassDataset("ucf101", classes, videos, {}, {})
    desc = {c: [f"a person doing {c}", f"{c} again"] for c in classes}
    return ds, Store(feats), desc, tiny_model()


RESULT_KEYS = {"dataset", "method", "variant", "alpha", "beta", "normalize_terms", "n_objects", "max_seconds",
               "all_sentences", "n_dataset_videos", "n_videos", "skipped_videos", "protocol", "n_classes",
               "split_file", "n_runs", "std_ddof", "top1_mean", "top1_std", "top5_mean", "top5_std", "chance", "runs"}


def test_run_evaluation_results_schema_and_custom_split_location(tmp_path):
    ds, store, desc, model = tiny_world()
    n_test, runs = 3, 4  # protocol 0/3, four draws
    res = P.run_evaluation(ds, store, desc, HashEncoder(), f"0/{n_test}", model=model, runs=runs, out_dir=tmp_path,
                           beta=0.0)
    assert RESULT_KEYS <= set(res) and res["variant"] == "VE" and res["n_runs"] == runs and res["std_ddof"] == 1
    assert Path(res["split_file"]) == tmp_path / "splits" / f"ucf101_0-{n_test}.json"
    assert [r["seed"] for r in res["runs"]] == list(range(runs))
    per_class = len(ds.videos) // len(ds.classes)
    for r in res["runs"]:
        assert set(r) == {"seed", "classes", "n_videos", "top1", "top5"} and len(r["classes"]) == n_test
        assert r["n_videos"] == n_test * per_class and r["top5"] == 1.0  # 3 classes: top-5 is certain
    assert res["top1_mean"] == pytest.approx(np.mean([r["top1"] for r in res["runs"]]))
    json.dumps(res)  # serialisable as is
    full = P.run_evaluation(ds, store, desc, HashEncoder(), "0/all", model=model, out_dir=tmp_path, beta=0.0)
    assert full["n_runs"] == 1 and np.array(full["confusion"]).sum() == len(ds.videos)
    assert len(full["per_class"]) == len(ds.classes)


def test_run_evaluation_on_a_real_dataset_reads_data_splits():
    official = P.official_classes("ucf101")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(official), 500)
    shuffled = list(reversed(official))  # the dataset's order differs from the official one
    emb = {"classes": shuffled, "scores": rng.normal(size=(500, 101)).astype(np.float32),
           "labels": labels, "video_ids": [str(i) for i in range(500)], "skipped": []}
    ds = ClassDataset("ucf101", shuffled, [], {}, {})
    res = P.run_evaluation(ds, None, {}, None, "0/20", emb=emb)
    saved = json.loads((SPLITS_DIR / "ucf101_0-20.json").read_text())["runs"]
    assert Path(res["split_file"]) == SPLITS_DIR / "ucf101_0-20.json"
    assert [r["classes"] for r in res["runs"]] == [r["classes"] for r in saved]
    first = saved[0]["classes"]
    expect = sum(1 for y in labels if shuffled[y] in first)
    assert res["runs"][0]["n_videos"] == expect  # labels followed their classes through the reorder


def test_bad_input_errors_name_the_item(tmp_path):
    ds, store, desc, model = tiny_world()
    enc = HashEncoder()
    no_desc = {k: v for k, v in desc.items() if k != "action c"}
    with pytest.raises(ValueError, match="action c"):
        P.run_evaluation(ds, store, no_desc, enc, "0/all", model=model, out_dir=tmp_path, beta=0.0)
    del store.feats["v2_1"]
    store.ids.remove("v2_1")
    with pytest.raises(ValueError, match="v2_1"):
        P.run_evaluation(ds, store, desc, enc, "0/all", model=model, out_dir=tmp_path, beta=0.0)
    res = P.run_evaluation(ds, store, desc, enc, "0/all", model=model, out_dir=tmp_path, beta=0.0, skip_missing=True)
    assert res["skipped_videos"] == ["v2_1"] and res["n_videos"] == len(ds.videos) - 1
    with pytest.raises(ValueError, match="out_dir"):
        P.run_evaluation(ds, store, desc, enc, "0/all", model=model, beta=0.0, skip_missing=True)


# --- `cezsar evaluate` on a small on-disk dataset: real layout, real SBERT, real WordNet sentences ---------
def _write_ucf(tmp_path: Path, n_per_class: int = 2) -> tuple[Path, Path, dict]:
    """UCF-101 layout (classInd + testlist, no video files) and a feature folder with ImageNet objects."""
    root = tmp_path / "ucf101"
    (root / "ucfTrainTestlist").mkdir(parents=True)
    classes = {"PettingCat": 281, "DrinkingEspresso": 967, "RidingMoped": 665}  # ImageNet-1k class per action
    (root / "ucfTrainTestlist" / "classInd.txt").write_text(
        "".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    ids = {c: [f"v_{c}_g01_c{j:02d}" for j in range(1, n_per_class + 1)] for c in classes}
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text(
        "".join(f"{c}/{v}.avi\n" for c in classes for v in ids[c]))
    feats = tmp_path / "features"
    (feats / "objects").mkdir(parents=True)
    (feats / "features.json").write_text(json.dumps({"backbone": "efficientnet_lite0", "dim": 8,
                                                     "label_space": "imagenet1k", "topk": 2}))
    rng = np.random.default_rng(0)
    for c, obj in classes.items():
        for v in ids[c]:
            t = 6
            np.save(feats / f"{v}.npy", rng.normal(size=(t, 8)).astype(np.float32))
            idx = np.tile(np.array([[obj, 0]], np.int32), (t, 1))  # the action's object, then "tench"
            sc = np.tile(np.array([[0.7, 0.1]], np.float16), (t, 1))
            np.savez(feats / "objects" / f"{v}.npz", indices=idx, scores=sc)
    desc = {"_meta": {"source": "test"}, "petting cat": ["A person strokes a pet cat on the sofa."],
            "drinking espresso": ["Someone drinks a small cup of strong coffee in a cafe."],
            "riding moped": ["A rider drives a small motorbike along a street."]}
    (tmp_path / "descriptions").mkdir()
    (tmp_path / "descriptions" / "ucf101.json").write_text(json.dumps(desc))
    return root, feats, desc


@pytest.mark.slow
def test_cli_evaluate_objects_and_cezsar(tmp_path, capsys):
    import torch

    from cezsar.cli import main
    from cezsar.config import ModelConfig, to_dict
    from cezsar.training.joint_embedder import JointEmbedder
    from cezsar.reporting.results import RESULTS_VERSION
    from cezsar.training.checkpoints import CHECKPOINT_VERSION

    root, feats, desc = _write_ucf(tmp_path)
    out = tmp_path / "res" / "objects.json"
    base = ["evaluate", "--dataset", "ucf101", "--root", str(root), "--features", str(feats)]
    assert main(base + ["--method", "objects", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["variant"] == "O" and res["n_videos"] == 6 and res["n_runs"] == 1
    assert res["top1_mean"] == 1.0  # each action's own object sentence matches its description
    assert res["descriptions"]["meta"] == {"source": "test"} and res["backbone"] == "efficientnet_lite0"
    assert res["results_version"] == RESULTS_VERSION and res["descriptions"]["layout"] == "json"
    assert len(res["split_sha256"]) == 64 and res["text_model_id"].startswith("minilm-384d")
    assert Path(res["split_file"]).parent == out.parent / "splits"  # custom dataset: not data/splits

    torch.manual_seed(0)
    cfg = ModelConfig(feat_dim=8, text_dim=384, d_model=16, n_heads=2)
    ckpt = tmp_path / "best.pt"
    torch.save({"version": CHECKPOINT_VERSION, "model_cfg": to_dict(cfg), "model": JointEmbedder(cfg).state_dict(),
                "text_model": "minilm"}, ckpt)
    out2 = tmp_path / "res" / "cezsar.json"
    capsys.readouterr()
    assert main(base + ["--model", str(ckpt), "--protocol", "0/2", "--runs", "3", "--out", str(out2), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out2.read_text())
    assert printed["variant"] == "VE+O" and (printed["alpha"], printed["beta"]) == (0.8, 0.2)
    assert printed["checkpoint"] == str(ckpt.resolve()) and printed["n_runs"] == 3
    assert [len(r["classes"]) for r in printed["runs"]] == [2, 2, 2]

    bad = dict(desc)
    del bad["riding moped"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(base + ["--method", "objects", "--descriptions", str(tmp_path / "bad.json"),
                        "--out", str(tmp_path / "x.json")]) == 1
    assert "riding moped" in capsys.readouterr().err
