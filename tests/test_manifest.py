"""Issue 27 part 1: feature manifests. `extract` writes how the vectors were made, a checkpoint records its
training features' manifest, evaluation refuses test features made another way (one line naming both values),
and paper mode extracts its test features the way the released training features were made."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import paper_fixture as pf
from cezsar.formats import manifest
from cezsar.harness import pipeline
from cezsar.encoders.backbones import FrameEncoder
from cezsar.training.checkpoints import training_manifest
from cezsar.config import ExtractConfig
from cezsar.formats.datasets import Video
from cezsar.encoders.features import FeatureStore
from cezsar.encoders.extraction import extract
from cezsar.errors import ManifestMismatch
from cezsar.encoders.video import write_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bit_shaped_encoder(preprocess: str) -> FrameEncoder:
    """The BiT-M-R152x2 interface (name, 4096-d, 224 px, [-1, 1] inputs) and this package's real preprocessing
    (`FrameEncoder.preprocess`, RGB or released BGR + resize 256 + crop 224) over a small fixed random CNN: the
    full BiT weights are not available to the tests."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(8), torch.nn.Flatten(), torch.nn.Linear(192, 4096))
    head = torch.nn.Linear(4096, 1000)
    return FrameEncoder("bit_m_r152x2", net, net, head, 4096, 1000, "imagenet21k", 224, (0.5,) * 3, (0.5,) * 3,
                        "cpu", 8, preprocess)


def clips(root: Path, n: int = 2) -> list[Video]:
    """Real 25-fps clips, 4.4 s: a coloured gradient that moves frame by frame."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        base = np.random.default_rng(i).integers(0, 256, (60, 80, 3), dtype=np.uint8)
        path = write_video(root / f"clip{i}.mp4", (np.roll(base, 2 * j, axis=1) for j in range(110)), fps=25, gop=25)
        out.append(Video(f"clip{i}", path, ""))
    return out


def test_extract_writes_the_manifest_and_refuses_to_mix_two_kinds_in_one_folder(tmp_path):
    videos = clips(tmp_path / "videos")
    cfg = ExtractConfig(image_size=224, topk_objects=3)
    extract(videos, tmp_path / "out", cfg, encoder=bit_shaped_encoder("paper"), progress=False)
    m = manifest.read(tmp_path / "out")
    assert {k: m[k] for k in ("backbone", "dim", "image_size", "preprocess", "sampling", "dtype")} == {
        "backbone": "bit_m_r152x2", "dim": 4096, "image_size": 224, "preprocess": "rgb-resize",
        "sampling": "1fps-whole-second", "dtype": "float32"}
    assert m["package_version"] and FeatureStore(tmp_path / "out").manifest == m
    released = ExtractConfig(image_size=224, topk_objects=3, released_sampling=True)
    with pytest.raises(ValueError, match="manifest.json: folder holds features made another way .*sampling"):
        extract(videos, tmp_path / "out", released, encoder=bit_shaped_encoder("released"), progress=False)


def test_extract_into_a_folder_from_before_manifests_does_not_vouch_for_its_old_stacks(tmp_path):
    videos = clips(tmp_path / "videos")
    out = tmp_path / "old"
    out.mkdir()
    np.save(out / "made_long_ago.npy", np.zeros((3, 4096), np.float32))  # how it was made: unknown
    with pytest.warns(UserWarning, match="made before manifests; manifest.json is not written"):
        extract(videos, out, ExtractConfig(image_size=224, topk_objects=3), encoder=bit_shaped_encoder("paper"),
                progress=False)
    assert (out / "clip0.npy").is_file() and manifest.read(out) is None


def test_weights_are_identified_by_their_sha256(tmp_path):
    import hashlib

    w = tmp_path / "w.npz"
    w.write_bytes(b"weights v1")
    a = manifest.make("bit_m_r152x2", 4096, 224, "rgb-resize", "1fps", weights=w)
    assert a["weights_sha256"] == hashlib.sha256(b"weights v1").hexdigest()
    w2 = tmp_path / "w2.npz"
    w2.write_bytes(b"weights v2")
    b = manifest.make("bit_m_r152x2", 4096, 224, "rgb-resize", "1fps", weights=w2)
    assert manifest.compare(a, b) == [("weights_sha256", a["weights_sha256"], b["weights_sha256"])]
    # dtype and version are recorded, not compared: they do not change what the vectors mean
    assert manifest.compare(a, {**a, "dtype": "float16", "package_version": "9.9"}) == []


def test_a_declared_manifest_describes_a_folder_without_one_and_a_file_wins(tmp_path):
    (tmp_path / "v.npy").write_bytes(b"")  # a folder of released features: no manifest.json
    got = manifest.read(tmp_path, "released_bit")
    assert got["preprocess"] == "released-bgr-crop224" and got["sampling"] == "released-25fps-linspace"
    assert manifest.read(tmp_path) is None
    with pytest.raises(ValueError, match="anet_features_manifest 'released_vgg': not a built-in manifest"):
        manifest.read(tmp_path, "released_vgg")
    manifest.write(tmp_path, {"backbone": "resnet152"})
    assert manifest.read(tmp_path, "released_bit") == {"backbone": "resnet152"}


def test_refusal_names_both_values_on_one_line_and_old_folders_warn():
    trained = manifest.BUILT_IN["released_bit"]
    ours = manifest.make("bit_m_r152x2", 4096, 224, "rgb-resize", "1fps")
    with pytest.raises(ManifestMismatch) as err:
        manifest.check_against_training(ours, trained, "features/ucf101")
    line = str(err.value)
    assert "\n" not in line and line.startswith(
        "features/ucf101: preprocess 'rgb-resize' differs from the checkpoint's training features "
        "'released-bgr-crop224'; sampling '1fps-whole-second' differs from the checkpoint's training features "
        "'released-25fps-linspace'")
    same = manifest.make("bit_m_r152x2", 4096, 224, "released-bgr-crop224", "released")
    assert manifest.check_against_training(same, trained, "f") == []  # both weights unknown: nothing to list
    assert "no manifest.json" in manifest.check_against_training(None, trained, "f")[0]
    assert "records no training-feature manifest" in manifest.check_against_training(same, None, "f")[0]


def test_a_checkpoint_records_its_training_features_manifest(tmp_path):
    from test_train import TINY, make_toy

    from cezsar.training.checkpoints import load_checkpoint
    from cezsar.config import ModelConfig, TrainConfig
    from cezsar.training.train import fit

    trip, store, text = make_toy(tmp_path / "feats")
    store.manifest = manifest.make("mock", store.dim, 32, "rgb-resize", "1fps")
    fit(trip, store, text, TrainConfig(epochs=1, batch=16, device="cpu"), ModelConfig(**TINY), tmp_path / "run",
        progress=False)
    _, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    assert training_manifest(meta) == store.manifest
    assert training_manifest({"trained_on": {"backbone": "x"}}) is None  # a checkpoint from before manifests


@pytest.mark.slow
def test_cli_evaluate_exits_1_on_other_features_and_warns_on_a_folder_without_manifest(tmp_path, capsys):
    from test_protocols import _write_ucf

    from cezsar.training.checkpoints import CHECKPOINT_VERSION
    from cezsar.cli import main
    from cezsar.config import ModelConfig, to_dict
    from cezsar.training.joint_embedder import JointEmbedder

    root, feats, _ = _write_ucf(tmp_path)
    torch.manual_seed(0)
    cfg = ModelConfig(feat_dim=8, text_dim=384, d_model=16, n_heads=2)
    trained = manifest.make("efficientnet_lite0", 8, 160, "released-bgr-crop160", "released")
    ckpt = tmp_path / "best.pt"
    torch.save({"version": CHECKPOINT_VERSION, "model_cfg": to_dict(cfg), "model": JointEmbedder(cfg).state_dict(),
                "text_model": "minilm", "trained_on": {"backbone": "efficientnet_lite0"}, "features_manifest": trained},
               ckpt)
    argv = ["evaluate", "--dataset", "ucf101", "--root", str(root), "--features", str(feats), "--model", str(ckpt),
            "--protocol", "0/2", "--runs", "2", "--out", str(tmp_path / "r.json")]
    assert main(argv) == 0  # no manifest.json (made before manifests): evaluated, with a warning saying so
    assert f"warning: --features {feats}: cannot check" in capsys.readouterr().err
    manifest.write(feats, manifest.make("efficientnet_lite0", 8, 160, "rgb-resize", "1fps"))
    assert main(argv) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: model")]
    assert err == [f"error: --features {feats}: preprocess 'rgb-resize' differs from the checkpoint's training "
                   "features 'released-bgr-crop160'; sampling '1fps-whole-second' differs from the checkpoint's "
                   "training features 'released-25fps-linspace' (docs/fidelity.md \"feature manifests\": re-extract "
                   "them the same way)"]


# --- the paper-shaped fixture ----------------------------------------------------------------------------
@pytest.mark.skipif(not pf.available(), reason="reference data (real annotation files) not present")
def test_paper_mode_extracts_test_features_like_its_released_training_features(tmp_path):
    from cezsar.harness.layout import layout_from
    from cezsar.harness.params import settings

    fx = pf.build(tmp_path / "data", train_videos=6, val_videos=2, ucf_per_class=1, k400_per_class=1)
    pfile = tmp_path / "paper_fixture.yaml"
    pfile.write_text(yaml.safe_dump(pf.paper_params(fx, tmp_path / "work", tmp_path / "figures")))
    s = settings(pfile)
    lay = layout_from(s)
    assert s.match_training_features and s.anet_features_manifest == "released_bit"  # params/paper.yaml
    # what a checkpoint trained on the released features records (train.fit: the training store's manifest)
    meta = {"features_manifest": lay.store("activitynet").manifest}
    trained = training_manifest(meta)
    assert trained["preprocess"] == "released-bgr-crop224" and trained["sampling"] == "released-25fps-linspace"

    base = ExtractConfig(backbone=s.backbone, image_size=s.image_size, released_preprocess=s.released_preprocess)
    test_cfg = pipeline.test_extract_config(lay, s, base)  # what notebook 01 extracts the test sets with
    assert test_cfg.released_preprocess and test_cfg.released_sampling and test_cfg.image_size == 224
    videos = clips(tmp_path / "videos")
    matched, other = tmp_path / "features" / "matched", tmp_path / "features" / "other"
    extract(videos, matched, test_cfg, encoder=bit_shaped_encoder("released"), progress=False)
    extract(videos, other, base, encoder=bit_shaped_encoder("paper"), progress=False)
    test_m = FeatureStore(matched).manifest
    assert manifest.compare(test_m, trained) == []
    assert {k: test_m[k] for k in ("backbone", "dim", "image_size", "preprocess", "sampling")} == \
        {k: trained[k] for k in ("backbone", "dim", "image_size", "preprocess", "sampling")}
    pipeline.check_test_features(FeatureStore(matched), meta, matched)  # accepted
    assert not np.allclose(np.load(matched / "clip0.npy"), np.load(other / "clip0.npy"))  # other vectors
    with pytest.raises(ManifestMismatch, match=r"other: preprocess 'rgb-resize' differs from the checkpoint's "
                       r"training features 'released-bgr-crop224'; sampling '1fps-whole-second' differs"):
        pipeline.check_test_features(FeatureStore(other), meta, other)
    # the fixture's own test folders were made before manifests: evaluated with a warning that says so
    with pytest.warns(UserWarning, match="no manifest.json"):
        pipeline.check_test_features(lay.store("ucf101"), meta, lay.folders("ucf101")[0])
    assert json.loads((matched / "manifest.json").read_text()) == test_m


@pytest.mark.slow
def test_cli_extract_records_the_released_preprocessing_and_sampling(tmp_path, capsys):
    from cezsar.cli import main
    from cezsar.encoders.resources import efficientnet_lite0_weights

    clips(tmp_path / "videos", 1)
    out = tmp_path / "out"
    assert main(["extract", "--dataset", "folder", "--root", str(tmp_path / "videos"), "--out", str(out),
                 "--device", "cpu", "--released-preprocess", "--released-sampling", "--no-progress"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert (m["backbone"], m["image_size"], m["preprocess"], m["sampling"]) == (
        "efficientnet_lite0", 160, "released-bgr-crop160", "released-25fps-linspace")
    assert m["weights_sha256"] == manifest.sha256_of(efficientnet_lite0_weights())
    assert np.load(out / "clip0.npy").shape == (110 // 25, 1280)  # n // 25 rows of a 110-frame 25-fps clip


@pytest.mark.slow
def test_cli_classify_refuses_to_make_other_features_than_the_model_was_trained_on(tmp_path, capsys):
    from cezsar.training.checkpoints import CHECKPOINT_VERSION
    from cezsar.cli import main
    from cezsar.config import ModelConfig, to_dict
    from cezsar.training.joint_embedder import JointEmbedder
    from cezsar.encoders.resources import efficientnet_lite0_weights

    video = clips(tmp_path / "videos", 1)[0].path
    torch.manual_seed(0)
    cfg = ModelConfig(feat_dim=1280, text_dim=384, d_model=16, n_heads=2)
    trained = manifest.make("efficientnet_lite0", 1280, 160, "released-bgr-crop160", "released",
                            weights=efficientnet_lite0_weights())
    ckpt = tmp_path / "best.pt"
    torch.save({"version": CHECKPOINT_VERSION, "model_cfg": to_dict(cfg), "model": JointEmbedder(cfg).state_dict(),
                "text_model": "minilm", "trained_on": {"backbone": "efficientnet_lite0"}, "features_manifest": trained},
               ckpt)
    argv = ["classify", str(video), "--labels", "swimming, cycling", "--model", str(ckpt), "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: --model {ckpt}: the features made here (--image-size 160): preprocess "
                              "'rgb-resize' differs from the checkpoint's training features 'released-bgr-crop160'; "
                              "sampling '1fps-whole-second' differs")
    assert main(argv + ["--released-preprocess", "--released-sampling"]) == 0
    assert "error" not in capsys.readouterr().err
