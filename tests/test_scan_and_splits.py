"""Two inconsistencies of issue 31: a dangling video symlink is listed as skipped, and a result's split_sha256
is the hash of the splits actually used, whatever split file an earlier run left in the folder."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from cezsar.evaluation import protocols as P
from cezsar.reporting.results import protocol_record


# --- every bad item of a video folder is listed ---------------------------------------------------------------
def test_extract_lists_a_dangling_video_symlink_as_skipped(capsys, tmp_path, monkeypatch):
    """README: extraction never drops a bad item silently. A `.mp4` symbolic link whose target is gone is an
    item of the folder, skipped with a reason that says so, and counted among the videos."""
    from test_bad_inputs import MockCNN, cli, write_clip

    monkeypatch.setattr("cezsar.encoders.factory.get_encoder", lambda *a, **k: MockCNN())  # where extract looks it up
    root = tmp_path / "videos"
    root.mkdir()
    write_clip(root / "good.mp4")
    (root / "gone.mp4").symlink_to(tmp_path / "moved-away.mp4")  # the target does not exist
    (root / "linked.mp4").symlink_to(root / "good.mp4")  # a working link is an ordinary video
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "extract", "--dataset", "folder", "--root", root, "--out", out, "--no-progress")
    assert rc == 0 and "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    reasons = {s["video_id"]: s["reason"] for s in report["skipped"]}
    assert list(reasons) == ["gone"]
    assert "symbolic link" in reasons["gone"] and "moved-away.mp4" in reasons["gone"]
    assert report["videos"] == 3 and report["done"] == 2
    assert sorted(p.name for p in out.glob("*.npy")) == ["good.npy", "linked.npy"]
    assert "1 of 3 video(s) skipped" in stdout


# --- split_sha256 ---------------------------------------------------------------------------------------------
def _emb(n_classes: int = 8, per_class: int = 3) -> dict:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(n_classes), per_class)  # (V,)
    return {"classes": [f"class {i}" for i in range(n_classes)], "labels": labels,
            "scores": rng.normal(size=(len(labels), n_classes))}  # (V, C)


def _record(res: dict) -> dict:
    return protocol_record(res, checkpoint=None, trained_on=None, descriptions="desc.json", dataset_root="root",
                           features=None, text_model="t", text_model_id="t", backbone=None)


def test_split_sha256_is_the_hash_of_the_splits_used_whatever_the_folder_held(tmp_path):
    """The same protocol and runs give the same split_sha256 in a fresh folder and in one where an earlier
    evaluation with more --runs left a longer split file (whose first runs are used): the hash names the splits
    used, and equals the SHA-256 of a split file holding exactly them."""
    emb = _emb()
    fresh, reused = tmp_path / "fresh", tmp_path / "reused"
    proto3 = P.get_protocol("mine", "0/4", 8, runs=3)
    proto5 = P.get_protocol("mine", "0/4", 8, runs=5)
    a = P.evaluate_protocol(emb, proto3, P.split_path(proto3, fresh))
    P.evaluate_protocol(emb, proto5, P.split_path(proto5, reused))  # an earlier run with --runs 5
    b = P.evaluate_protocol(emb, proto3, P.split_path(proto3, reused))
    assert [r["classes"] for r in a["runs"]] == [r["classes"] for r in b["runs"]]  # the same splits were used
    assert len(json.loads(Path(b["split_file"]).read_text())["runs"]) == 5  # the folder still holds 5
    ra, rb = _record(a), _record(b)
    assert ra["split_sha256"] == rb["split_sha256"]
    assert ra["split_sha256"] == hashlib.sha256(Path(a["split_file"]).read_bytes()).hexdigest()
    other = P.evaluate_protocol(emb, proto5, P.split_path(proto5, reused))  # other splits: another hash
    assert _record(other)["split_sha256"] != rb["split_sha256"]
    assert _record(other)["split_sha256"] == hashlib.sha256(Path(other["split_file"]).read_bytes()).hexdigest()
