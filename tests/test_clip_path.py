"""The CLIP rows' whole path through the command line, with a tiny random CLIP on SynthActions (real decoded
video): extract -> `cezsar evaluate --method clip` under every table protocol -> mine + train the VEM on the CLIP
features (the method unchanged, only the frame encoder) -> evaluate CEZSAR on them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cezsar.cli import main
from cezsar.harness.pipeline_evaluation import table_protocols

pytestmark = pytest.mark.slow


ROOTS = {"ucf101": "ucf101", "kinetics400": "kinetics400/test.csv"}


def test_clip_rows_end_to_end(synth_small: Path, tiny_clip: Path, tmp_path: Path, capsys):
    feats = tmp_path / "features"
    backbone = f"clip:{tiny_clip}"
    for dataset, root in (("activitynet", "activitynet"), ("ucf101", ROOTS["ucf101"]),
                          ("kinetics400", ROOTS["kinetics400"])):
        assert main(["extract", "--dataset", dataset, "--root", str(synth_small / root), "--out", str(feats / dataset),
                     "--backbone", backbone, "--no-progress"]) == 0
        meta = json.loads((feats / dataset / "features.json").read_text())
        assert (meta["backbone"], meta["label_space"], meta["dim"]) == (backbone, "none", 32)
        assert not (feats / dataset / "objects").exists()

    # the baseline under every protocol of Tables 1/2 (SynthActions: the same fractions of its classes)
    for dataset in ("ucf101", "kinetics400"):
        n_classes = len(json.loads((synth_small / "descriptions" / f"{dataset}.json").read_text())) - 1  # less _meta
        for column, protocol in table_protocols(dataset, n_classes).items():
            for prompts in ("names", "descriptions"):
                out = tmp_path / "results" / f"{dataset}_{column}_{prompts}.json"
                assert main(["evaluate", "--dataset", dataset, "--root", str(synth_small / ROOTS[dataset]),
                             "--descriptions", str(synth_small / "descriptions" / f"{dataset}.json"),
                             "--features", str(feats / dataset), "--method", "clip", "--clip-model", str(tiny_clip),
                             "--prompts", prompts, "--protocol", protocol, "--out", str(out)]) == 0
                res = json.loads(out.read_text())
                assert (res["method"], res["variant"], res["protocol"]) == ("clip", f"CLIP-{prompts}", protocol)
                assert res["template"] == ("a photo of a person {}." if prompts == "names" else None)
                assert res["clip_model"] == str(tiny_clip) and res["backbone"] == backbone
                assert res["n_videos"] == res["n_dataset_videos"] > 0 and len(res["runs"]) == res["n_runs"]
                assert 0.0 <= res["top1_mean"] <= 1.0 and Path(res["split_file"]).is_file()

    # CEZSAR on the CLIP features: captions-only mining (no objects), 2 epochs, VE
    trip = tmp_path / "triplets.npz"
    capsys.readouterr()
    assert main(["mine", "--captions", str(synth_small / "activitynet" / "train.json"), "--features",
                 str(feats / "activitynet"), "--object-positives", "2", "--out", str(trip)]) == 0
    assert "O off" in capsys.readouterr().err  # object positives asked for, none possible: said, then captions only
    model = tmp_path / "model"
    assert main(["train", "--triplets", str(trip), "--features", str(feats / "activitynet"), "--out", str(model),
                 "--epochs", "2", "--device", "cpu"]) == 0
    for dataset in ("ucf101", "kinetics400"):
        out = tmp_path / "results" / f"{dataset}_cezsar.json"
        assert main(["evaluate", "--dataset", dataset, "--root", str(synth_small / ROOTS[dataset]),
                     "--descriptions", str(synth_small / "descriptions" / f"{dataset}.json"), "--features",
                     str(feats / dataset), "--model", str(model / "best.pt"), "--device", "cpu",
                     "--out", str(out)]) == 0
        res = json.loads(out.read_text())
        assert (res["variant"], res["beta"], res["backbone"]) == ("VE", 0.0, backbone)
        assert res["trained_on"]["backbone"] == backbone and res["trained_on"]["feat_dim"] == 32
        assert np.isfinite(res["top1_mean"])
    assert "no ImageNet head" in capsys.readouterr().err

    # the CLI's tables: the CLIP rows from these results files, every column of the baseline rows filled
    capsys.readouterr()
    assert main(["tables", "--add", *map(str, sorted((tmp_path / "results").glob("*.json"))), "--out",
                 str(tmp_path / "tables"), "--json"]) == 0
    md = json.loads(capsys.readouterr().out)
    for stem, first in (("table1", "101"), ("table2", "400")):
        rows = {line.split(" | ")[0].lstrip("| "): line for line in md[stem].splitlines()}
        for name in ("CLIP frame average (class names)", "CLIP frame average (descriptions)"):
            cells = rows[name].split(" | ")[-4:-1]  # the three protocol columns
            assert "computed here" in rows[name] and "–" not in cells and all(c[0].isdigit() for c in cells), cells
        cells = rows["CEZSAR on CLIP features"].split(" | ")[-4:-1]
        assert cells[0][0].isdigit() and cells[1:] == ["–", "–"]  # evaluated under 0/all only, here
        assert "needs weights" not in md[stem] and (tmp_path / "tables" / f"{stem}.csv").is_file()

    # a CLIP's text tower must be the one that made the features
    assert main(["evaluate", "--dataset", "ucf101", "--root", str(synth_small / "ucf101"), "--features",
                 str(feats / "ucf101"), "--method", "clip", "--clip-model", "openai/clip-vit-base-patch16",
                 "--out", str(tmp_path / "x.json")]) == 2


def test_the_notebooks_clip_rows_with_a_tiny_clip(synth_small: Path, tiny_clip: Path, tmp_path: Path, monkeypatch):
    """`clip_model` set: notebook 05's CLIP rows (clip_stage.clip_rows) computed under every table protocol, and the
    tables show them computed instead of "needs weights"."""
    import yaml

    from cezsar.harness import clip_stage, params, pipeline, pipeline_evaluation, report

    (tmp_path / "p.yaml").write_text(yaml.safe_dump({
        "data_root": str(synth_small), "work_dir": str(tmp_path / "work"), "clip_model": str(tiny_clip), "epochs": 1,
        "train_seeds": 2, "runs": 3, "use_objects": "off", "device": "cpu"}))
    monkeypatch.setenv("CEZSAR_RUNS_DIR", str(tmp_path / "runs"))
    s = params.settings(tmp_path / "p.yaml")
    lay = pipeline.layout_from(s)
    peer = clip_stage.clip_rows(lay, s)
    assert Path(peer["training"]["checkpoint"]).is_file()
    assert [Path(c).parent.name for c in peer["training"]["checkpoints"].values()] == ["seed0", "seed1"]
    assert (lay.work / "clip" / "features" / "activitynet" / "features.json").is_file()
    for kind in pipeline.TEST_SETS:
        assert set(peer[kind]) == {"CLIP-names", "CLIP-descriptions", "CLIP+VE"}
        for variant, by_column in peer[kind].items():
            assert list(by_column) == ["101", "50", "20"] if kind == "ucf101" else ["400", "100", "25"]
            for r in by_column.values():
                assert r["backbone"] == f"clip:{tiny_clip}" and r["n_videos"] > 0
        assert peer[kind]["CLIP+VE"]["101" if kind == "ucf101" else "400"]["variant"] == "VE"
    # notebook 05's evaluate_all adds them beside the paper's methods (those stubbed here: no main model trained)
    monkeypatch.setattr(clip_stage, "clip_rows", lambda *a: peer)
    monkeypatch.setattr(pipeline_evaluation, "evaluate_methods",
                        lambda lay, kind, *a, **k: {"_emb": {}, "VE": peer[kind]["CLIP+VE"]})
    results = report.evaluate_all(lay, s, checkpoint=tmp_path / "none.pt")
    assert results["clip"]["model"] == str(tiny_clip) and results["clip"]["template"] == "a photo of a person {}."
    assert json.loads((lay.run_dir / "results.json").read_text())["clip"]["training"] == peer["training"]
    sources = results["datasets"]["ucf101"]["clip_sources"]
    assert "1 epoch" in sources["CLIP+VE"] and "epoch" not in sources["CLIP-names"]
    assert f"clip:{tiny_clip}, clip:{tiny_clip}" in sources["CLIP-names"]  # CLIP's own text tower
    # the tables: the three rows computed, each naming what it was computed on
    md = report.write_tables(results, tmp_path / "figures")
    assert "needs weights" not in md["table1"] and "| CEZSAR on CLIP features | computed here |" in md["table1"]
    assert "| CLIP frame average (descriptions) | computed here |" in md["table2"]
