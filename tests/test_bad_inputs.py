"""A corpus of bad inputs, one class of problem per test and command (docs/errors.md).

Every case runs the real `cezsar` command line in-process (`cezsar.cli.main`) on real small files (real
decoded video, real torch files, real JSON) and asserts the exit code (2 usage, 1 data), exactly one
`error:` line that names the input, no traceback, no "unexpected" fallback, and that nothing partial is
left behind, or, for long jobs, that the skipped item is listed and counted. The real-process checks
(exit codes, tracebacks, kill -9) are in test_bad_inputs_process.py.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cezsar.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- helpers ---------------------------------------------------------------------------------------------
def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(rc: int, err: str, code: int, *needles) -> str:
    """Exit `code`, stderr exactly one `error:` line holding every needle, no traceback, not the bug fallback."""
    assert rc == code, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "unexpected" not in lines[0], lines[0]
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    assert err.strip() == lines[0], err
    return lines[0]


@pytest.fixture
def no_models(monkeypatch):
    """A usage error must come before any model is loaded: loading one fails the test (as 'unexpected')."""
    def boom(*a, **k):
        raise AssertionError("a model was loaded before the inputs were checked")

    # the builders (each named as its backbone), looked up in backbones' own namespace at each call: patching
    # `get_encoder` itself would skip its name check, and a module first imported under that patch
    # (`from ... import get_encoder`) would keep `boom` for the rest of the process
    from cezsar.encoders import backbones

    for builder in (*backbones.BACKBONES, "clip_encoder"):
        monkeypatch.setattr(backbones, builder, boom)
    monkeypatch.setattr("cezsar.encoders.text.SentenceEncoder._load", boom)


def write_clip(path: Path, seconds: int = 2) -> Path:
    """A real H.264 clip: a textured square moving across a gradient, 10 fps."""
    from cezsar.encoders.video import write_video

    rng = np.random.default_rng(0)
    tex = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)

    def frames():
        for i in range(seconds * 10):
            img = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (48, 1, 3))
            x = 4 + 3 * i % 40
            img[16:32, x:x + 16] = tex
            yield img

    return write_video(path, frames(), fps=10, gop=10)


def still_image(path: Path) -> Path:
    """A real photograph (scikit-image's chelsea.png) saved under a video extension."""
    import skimage

    shutil.copy(Path(skimage.__file__).parent / "data" / "chelsea.png", path)
    return path


def save_checkpoint(path: Path, feat_dim: int = 1280, text_dim: int = 384, text_model: str = "minilm-384d",
                    trained_on: dict | None = None, resumable: bool = False) -> Path:
    from cezsar.config import ModelConfig, to_dict
    from cezsar.training.checkpoints import CHECKPOINT_VERSION
    from cezsar.training.joint_embedder import JointEmbedder

    cfg = ModelConfig(feat_dim=feat_dim, text_dim=text_dim, d_model=16, n_heads=2, emb_dim=8)
    ckpt = {"version": CHECKPOINT_VERSION, "model_cfg": to_dict(cfg), "model": JointEmbedder(cfg).state_dict(),
            "feat_dim": feat_dim, "text_dim": text_dim, "text_model": text_model}
    if trained_on is not None:
        ckpt["trained_on"] = trained_on
    if resumable:
        ckpt.update(epoch=0, history=[], best_score=1.0, best_epoch=0, bad_epochs=0)
    torch.save(ckpt, path)
    return path


def damaged_checkpoints(root: Path) -> dict[str, Path]:
    """The ways a .pt goes wrong: zero bytes, cut in half, a tensor, a text file, a foreign dict."""
    root.mkdir(parents=True, exist_ok=True)
    good = save_checkpoint(root / "good.pt")
    (root / "empty.pt").write_bytes(b"")
    data = good.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save(torch.zeros(3), root / "tensor.pt")
    (root / "text.pt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, root / "foreign.pt")
    return {k: root / f"{k}.pt" for k in ("empty", "truncated", "tensor", "text", "foreign")}


CKPT_MESSAGES = {"empty": "empty file (0 bytes)", "truncated": "not a readable checkpoint",
                 "tensor": "holds a Tensor", "text": "not a readable checkpoint", "foreign": "not a CEZSAR checkpoint"}

SYNTH = {"dataset": "SynthActions (synthetic clips)", "captions": "train.json", "features": "train",
         "backbone": "efficientnet_lite0", "feat_dim": 1280, "label_space": "imagenet1k", "text_model": None,
         "params": "embedded"}


@pytest.fixture(scope="module")
def minilm_id() -> str:
    from cezsar.errors import ResourceMissing
    from cezsar.encoders.text import SentenceEncoder

    try:
        return SentenceEncoder("minilm").model_id  # reads the model's config only, loads nothing
    except ResourceMissing as err:
        pytest.skip(str(err))


CAPTIONS = [
    "a man rides a brown horse along the beach", "a woman rides a bicycle down a busy street",
    "a boy kicks a football across a muddy field", "a girl throws a red ball to her dog in the park",
    "two men paddle a canoe on a calm lake", "a chef slices onions on a wooden board",
    "a woman plays a grand piano on a stage", "a man swims laps in an indoor pool",
    "children jump on a trampoline in a garden", "a skier glides down a snowy slope",
    "a dog runs after a frisbee on the grass", "a cyclist climbs a steep mountain road",
    "a man lifts a heavy barbell in a gym", "a woman paints a landscape on a canvas",
    "a girl skates on an outdoor ice rink", "a man chops wood with an axe in the forest",
]


def write_captions(path: Path, videos: int = 8, per_video: int = 2, **override) -> Path:
    data = {}
    for v in range(videos):
        sents = [CAPTIONS[(v * per_video + j) % len(CAPTIONS)] for j in range(per_video)]
        data[f"v_{v:03d}"] = {"duration": 30.0, "timestamps": [[10.0 * j, 10.0 * j + 8.0] for j in range(per_video)],
                              "sentences": sents}
    data.update(override)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> dict[str, Path]:
    """A tiny UCF-101-layout dataset, its descriptions and a 1280-d feature folder (EfficientNet-Lite0 form)."""
    root = tmp_path_factory.mktemp("ucf")
    ds = root / "ucf101"
    ds.mkdir()
    classes = ["Swimming", "Cycling", "Skiing"]
    (ds / "classInd.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    ids = [f"v_{c}_g01_c0{k}" for c in classes for k in (1, 2)]
    (ds / "testlist01.txt").write_text("".join(f"{i.split('_')[1]}/{i}.avi\n" for i in ids))
    desc = root / "descriptions" / "ucf101.json"
    desc.parent.mkdir()
    desc.write_text(json.dumps({"Swimming": ["a person swims in a pool"], "Cycling": ["a person rides a bicycle"],
                                "Skiing": ["a person skis down a snowy slope"]}))
    feats = root / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    for i in ids[:-1]:  # the last video has no features (--skip-missing lists it)
        np.save(feats / f"{i}.npy", rng.standard_normal((5, 1280)).astype(np.float32))
    (feats / "features.json").write_text(json.dumps({"backbone": "efficientnet_lite0", "dim": 1280,
                                                     "label_space": "imagenet1k", "topk": 5, "image_size": 160}))
    return {"root": ds, "desc": desc, "feats": feats, "work": root}


def evaluate_args(ucf, model, out, *extra):
    return ["evaluate", "--dataset", "ucf101", "--root", ucf["root"], "--features", ucf["feats"], "--model", model,
            "--descriptions", ucf["desc"], "--out", out, *extra]


# --- the command line itself (every command) -------------------------------------------------------------
@pytest.mark.parametrize("argv, code, needle", [
    (["mine", "--captions", "x.json"], 2, "the following arguments are required: --out"),
    (["train", "--triplets", "t.npz", "--features", "f", "--out", "o", "--epochs", "many"], 2, "--epochs"),
    (["check-data", "imagenet", "x"], 2, "invalid choice: 'imagenet'"),
    (["classify", "v.mp4", "--labels", "a, b", "--colour"], 2, "unrecognized arguments: --colour"),
    (["extract", "--dataset", "folder", "--root", "r", "--out", "o", "--shard", "3/2"], 2, "--shard"),
    (["evaluate"], 2, "the following arguments are required"),
])
def test_argparse_errors_are_one_line(capsys, argv, code, needle):
    rc, out, err = cli(capsys, *argv)
    line = one_error(rc, err, code, needle)
    assert "--help" in line and out == ""


def test_an_unexpected_exception_is_one_line_and_says_how_to_see_it(capsys, monkeypatch, tmp_path):
    import cezsar.commands.check_data as cd

    def bug(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cd, "summarize", bug)
    rc, _, err = cli(capsys, "check-data", "activitynet", write_captions(tmp_path / "c.json"))
    assert rc == 1 and err.strip().startswith("error: unexpected ZeroDivisionError")
    assert "CEZSAR_DEBUG=1" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --- check-data ------------------------------------------------------------------------------------------
def test_check_data_folder_where_a_file_is_expected(capsys, tmp_path):
    one_error(*cli(capsys, "check-data", "activitynet", tmp_path)[::2], 2, str(tmp_path), "is a folder")


def test_check_data_missing_path(capsys, tmp_path):
    one_error(*cli(capsys, "check-data", "kinetics400", tmp_path / "nope.csv")[::2], 2, "nope.csv", "no such")


def test_check_data_hmdb51_needs_a_folder(capsys, tmp_path):
    f = tmp_path / "split.txt"
    f.write_text("x.avi 1\n")
    one_error(*cli(capsys, "check-data", "hmdb51", f)[::2], 2, "split.txt", "is a file")


def test_check_data_split_that_is_a_folder(capsys, tmp_path):
    cap = write_captions(tmp_path / "c.json")
    one_error(*cli(capsys, "check-data", "activitynet", cap, "--split-file", tmp_path)[::2], 2, "--split-file", "is a folder")


def test_check_data_binary_file_as_json(capsys, tmp_path):
    f = tmp_path / "train.json"
    f.write_bytes(bytes(range(256)) * 4)
    one_error(*cli(capsys, "check-data", "activitynet", f)[::2], 1, "train.json", "not a UTF-8 text file")


def test_check_data_malformed_json(capsys, tmp_path):
    f = tmp_path / "train.json"
    f.write_text('{"v_a": {"duration": 3,')
    one_error(*cli(capsys, "check-data", "activitynet", f)[::2], 1, "train.json", "malformed JSON at line 1")


def test_check_data_reports_nan_duration_and_timestamp(capsys, tmp_path):
    f = tmp_path / "train.json"
    f.write_text('{"v_a": {"duration": NaN, "timestamps": [[0, 2]], "sentences": ["a man runs"]},'
                 ' "v_b": {"duration": 9, "timestamps": [[0, Infinity], [1, 4]], "sentences": ["x y", "a dog"]},'
                 ' "v_c": {"duration": 5, "timestamps": [[0, 2]], "sentences": ["a cat sleeps"]}}')
    rc, out, err = cli(capsys, "check-data", "activitynet", f, "--json")
    assert rc == 0 and err == ""
    res = json.loads(out)
    assert res["problems"] == {"bad_duration": 1, "bad_timestamp": 1}
    assert res["videos"] == 2 and res["segments"] == 2  # v_a dropped, v_b keeps one segment: counted, not silent
    rc, out, _ = cli(capsys, "check-data", "activitynet", f)
    assert "problem bad_duration: 1" in out and "v_a: duration nan" in out


def test_check_data_two_classes_on_one_index(capsys, tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Swimming\n2 Cycling\n2 Skiing\n")
    line = one_error(*cli(capsys, "check-data", "ucf101", tmp_path)[::2], 1, "classInd.txt", "line 3", "index 2")
    assert "'Skiing'" in line and "'Cycling'" in line


def test_check_data_class_list_file_that_is_a_folder(capsys, tmp_path):
    (tmp_path / "classInd.txt").mkdir()
    one_error(*cli(capsys, "check-data", "ucf101", tmp_path)[::2], 1, "classInd.txt", "is a folder")


def test_check_data_unknown_class_in_a_test_list(capsys, tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Swimming\n2 Cycling\n")
    (tmp_path / "testlist01.txt").write_text("Swimming/v_Swimming_g01_c01.avi\nRowing/v_Rowing_g01_c01.avi\n")
    one_error(*cli(capsys, "check-data", "ucf101", tmp_path)[::2], 1, "testlist01.txt", "line 2", "'Rowing'")


def test_check_data_kinetics_csv_without_a_column(capsys, tmp_path):
    f = tmp_path / "test.csv"
    f.write_text("label,youtube_id,time_start\nskiing,abc,0\n")
    one_error(*cli(capsys, "check-data", "kinetics400", f)[::2], 1, "test.csv", "missing column(s) time_end")


def test_check_data_description_without_a_sentence(capsys, tmp_path):
    f = tmp_path / "desc.json"
    f.write_text(json.dumps({"Swimming": ["a person swims"], "Cycling": ["  ", ""]}))
    one_error(*cli(capsys, "check-data", "descriptions", f)[::2], 1, "desc.json", "'Cycling'", "empty description")


def test_check_data_description_folder_with_a_binary_file(capsys, tmp_path):
    (tmp_path / "swimming.txt").write_text("a person swims")
    (tmp_path / "cycling.txt").write_bytes(b"\xff\xfe\x00binary")
    one_error(*cli(capsys, "check-data", "descriptions", tmp_path)[::2], 1, "cycling.txt", "not a UTF-8 text file")


# --- classify ----------------------------------------------------------------------------------------------
def test_classify_labels_that_look_like_a_missing_file(capsys, tmp_path, no_models):
    clip = write_clip(tmp_path / "clip.mp4")
    for spec in (str(tmp_path / "labels.txt"), "my_labels.txt", "swimming, more_labels.csv"):
        line = one_error(*cli(capsys, "classify", clip, "--labels", spec)[::2], 2, "--labels", "looks like a file name")
        assert "no such file" in line


def test_classify_labels_folder(capsys, tmp_path, no_models):
    clip = write_clip(tmp_path / "clip.mp4")
    one_error(*cli(capsys, "classify", clip, "--labels", tmp_path)[::2], 2, f"--labels {tmp_path}", "is a folder")


def test_classify_labels_file_that_is_not_text(capsys, tmp_path, no_models):
    clip = write_clip(tmp_path / "clip.mp4")
    one_error(*cli(capsys, "classify", clip, "--labels", clip)[::2], 2, "clip.mp4", "cannot read the label file")


def test_classify_missing_video_or_folder_is_refused_before_loading(capsys, tmp_path, no_models):
    one_error(*cli(capsys, "classify", tmp_path / "nope.mp4", "--labels", "a, b")[::2], 2, "VIDEO", "nope.mp4",
              "no such video file")
    (tmp_path / "clip.mp4").mkdir()
    one_error(*cli(capsys, "classify", tmp_path / "clip.mp4", "--labels", "a, b")[::2], 2, "clip.mp4", "is a folder")


@pytest.mark.parametrize("kind", sorted(CKPT_MESSAGES))
def test_classify_damaged_checkpoint(capsys, tmp_path, no_models, kind):
    ckpt = damaged_checkpoints(tmp_path)[kind]
    clip = write_clip(tmp_path / "clip.mp4")
    line = one_error(*cli(capsys, "classify", clip, "--labels", "a, b", "--model", ckpt)[::2], 1,
                     f"--model {ckpt}", CKPT_MESSAGES[kind])
    assert "delete it or re-create it with `cezsar train`" in line


def test_classify_missing_checkpoint(capsys, tmp_path, no_models):
    clip = write_clip(tmp_path / "clip.mp4")
    one_error(*cli(capsys, "classify", clip, "--labels", "a, b", "--model", tmp_path / "best.pt")[::2], 2,
              "--model", "best.pt", "no such checkpoint")


def test_classify_refuses_a_backbone_mismatch_before_loading_the_cnn(capsys, tmp_path, no_models):
    ckpt = save_checkpoint(tmp_path / "bit.pt", feat_dim=4096,
                           trained_on={**SYNTH, "backbone": "bit_m_r152x2", "feat_dim": 4096})
    clip = write_clip(tmp_path / "clip.mp4")
    line = one_error(*cli(capsys, "classify", clip, "--labels", "a, b", "--model", ckpt)[::2], 1,
                     f"--model {ckpt}", "bit_m_r152x2", "--backbone is efficientnet_lite0")
    assert "pass --backbone bit_m_r152x2" in line


def test_classify_refuses_a_text_model_mismatch(capsys, tmp_path, minilm_id, monkeypatch):
    monkeypatch.setattr("cezsar.encoders.factory.get_encoder", lambda *a, **k: pytest.fail("CNN loaded"))
    ckpt = save_checkpoint(tmp_path / "other.pt", text_model="othermodel-384d-0123abcd")
    clip = write_clip(tmp_path / "clip.mp4")
    one_error(*cli(capsys, "classify", clip, "--labels", "a, b", "--model", ckpt, "--text-model", "minilm")[::2], 1,
              str(ckpt), "othermodel-384d-0123abcd", "--text-model")


@pytest.mark.parametrize("option, value, needle", [
    ("--top-k", "0", "--top-k 0: must be at least 1"), ("--n-objects", "-2", "--n-objects -2"),
    ("--alpha", "nan", "--alpha nan"), ("--max-seconds", "0", "--max-seconds 0"),
    ("--device", "tpu", "--device tpu: unknown device"), ("--weights", "BiT.npz", "--weights BiT.npz: no such"),
])
def test_classify_bad_option_values(capsys, tmp_path, no_models, option, value, needle):
    clip = write_clip(tmp_path / "clip.mp4")
    one_error(*cli(capsys, "classify", clip, "--labels", "a, b", option, value)[::2], 2, needle)


def test_classify_text_model_that_is_not_a_model(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("cezsar.encoders.factory.get_encoder", lambda *a, **k: pytest.fail("CNN loaded"))
    clip = write_clip(tmp_path / "clip.mp4")
    one_error(*cli(capsys, "classify", clip, "--labels", "a, b", "--text-model", tmp_path)[::2], 2,
              f"--text-model {tmp_path}: cannot load this sentence model offline", "use minilm")


def test_classify_missing_descriptions(capsys, tmp_path, no_models):
    clip = write_clip(tmp_path / "clip.mp4")
    one_error(*cli(capsys, "classify", clip, "--labels", "a, b", "--descriptions", tmp_path / "d.json")[::2], 2,
              "--descriptions", "d.json")


def test_classify_image_as_video_is_listed_and_synthetic_model_is_named(capsys, tmp_path, minilm_id):
    """Real CNN, real decoder: a photograph named .mp4 is one listed failure (exit 1); the real clip is still
    ranked; the checkpoint's provenance (synthetic clips) is said on stderr."""
    clip = write_clip(tmp_path / "clip.mp4", seconds=2)
    cat = still_image(tmp_path / "cat.mp4")
    ckpt = save_checkpoint(tmp_path / "synth.pt", text_model=minilm_id, trained_on={**SYNTH, "text_model": minilm_id})
    rc, out, err = cli(capsys, "classify", clip, cat, "--labels", "a cat, a car race, cooking", "--model", ckpt,
                       "--json")
    assert rc == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert any(ln.startswith("note: model trained on SynthActions (synthetic clips), captions train.json, backbone "
                             f"efficientnet_lite0 (1280-d), text {minilm_id}, parameter set embedded") for ln in lines)
    assert any(ln.startswith("warning: this model saw only synthetic clips") for ln in lines)
    assert f"error: cannot classify {cat}: a still png image, not a video (whatever its extension says)" in lines
    assert lines[-1].startswith(f"1 of 2 video(s) could not be classified: {cat}")
    [res] = json.loads(out)
    assert res["video"] == str(clip) and res["seconds"] == 2 and res["method"] == "cezsar"


# --- evaluate ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["empty", "truncated", "text"])
def test_evaluate_damaged_checkpoint(capsys, tmp_path, ucf, kind):
    ckpt = damaged_checkpoints(tmp_path)[kind]
    out = tmp_path / "res.json"
    one_error(*cli(capsys, *evaluate_args(ucf, ckpt, out))[::2], 1, f"--model {ckpt}", CKPT_MESSAGES[kind],
              "delete it or re-create it")
    assert not out.exists()


def test_evaluate_cezsar_without_a_model(capsys, tmp_path, ucf):
    args = [a for a in evaluate_args(ucf, "x", tmp_path / "r.json") if a not in ("--model", "x")]
    one_error(*cli(capsys, *args)[::2], 2, "--method cezsar needs --model")


@pytest.mark.parametrize("which", ["root", "features", "descriptions", "split"])
def test_evaluate_missing_paths(capsys, tmp_path, ucf, which):
    ckpt = save_checkpoint(tmp_path / "m.pt")
    args = evaluate_args(ucf, ckpt, tmp_path / "r.json")
    if which == "split":
        args += ["--split-file", tmp_path / "split.json"]
    else:
        args[args.index("--" + which) + 1] = tmp_path / "nowhere"
    one_error(*cli(capsys, *args)[::2], 2, "--" + ("split-file" if which == "split" else which), "no such")


def test_evaluate_features_that_is_a_file(capsys, tmp_path, ucf):
    args = evaluate_args(ucf, save_checkpoint(tmp_path / "m.pt"), tmp_path / "r.json")
    args[args.index("--features") + 1] = ucf["desc"]
    one_error(*cli(capsys, *args)[::2], 2, "--features", "is a file")


def test_evaluate_out_that_is_a_folder(capsys, tmp_path, ucf):
    one_error(*cli(capsys, *evaluate_args(ucf, save_checkpoint(tmp_path / "m.pt"), tmp_path))[::2], 2,
              f"--out {tmp_path}", "is a folder")


def test_evaluate_bad_protocol(capsys, tmp_path, ucf):
    args = evaluate_args(ucf, save_checkpoint(tmp_path / "m.pt"), tmp_path / "r.json", "--protocol", "0/7")
    one_error(*cli(capsys, *args)[::2], 2, "--protocol 0/7", "needs 7 test classes")


def test_evaluate_broken_features_json(capsys, tmp_path, ucf):
    feats = tmp_path / "feats"
    shutil.copytree(ucf["feats"], feats)
    (feats / "features.json").write_text('{"backbone": "efficientnet_lite0", "dim": ')
    args = evaluate_args(ucf, save_checkpoint(tmp_path / "m.pt"), tmp_path / "r.json")
    args[args.index("--features") + 1] = feats
    one_error(*cli(capsys, *args)[::2], 1, "features.json", "malformed JSON")


def test_evaluate_refuses_a_backbone_mismatch(capsys, tmp_path, ucf, minilm_id):
    ckpt = save_checkpoint(tmp_path / "bit.pt", feat_dim=4096, text_model=minilm_id,
                           trained_on={**SYNTH, "backbone": "bit_m_r152x2", "feat_dim": 4096})
    out = tmp_path / "r.json"
    line = one_error(*cli(capsys, *evaluate_args(ucf, ckpt, out))[::2], 1, f"--model {ckpt}", "bit_m_r152x2",
                     "efficientnet_lite0")
    assert "holds efficientnet_lite0 features" in line and not out.exists()


def test_evaluate_refuses_a_feature_dim_mismatch_of_an_old_checkpoint(capsys, tmp_path, ucf, minilm_id):
    ckpt = save_checkpoint(tmp_path / "old.pt", feat_dim=2048, text_model=minilm_id)  # no trained_on: old format
    one_error(*cli(capsys, *evaluate_args(ucf, ckpt, tmp_path / "r.json"))[::2], 1, "VEM takes 2048-d",
              "1280-d", "unknown")


def test_evaluate_refuses_a_text_model_mismatch(capsys, tmp_path, ucf, minilm_id):
    ckpt = save_checkpoint(tmp_path / "t.pt", text_model="othermodel-384d-0123abcd")
    one_error(*cli(capsys, *evaluate_args(ucf, ckpt, tmp_path / "r.json", "--text-model", "minilm"))[::2], 1,
              "trained with text model othermodel-384d-0123abcd", minilm_id)


def test_evaluate_says_what_the_model_was_trained_on_and_lists_skips(capsys, tmp_path, ucf, minilm_id):
    ckpt = save_checkpoint(tmp_path / "synth.pt", text_model=minilm_id, trained_on={**SYNTH, "text_model": minilm_id})
    out = tmp_path / "r.json"
    rc, stdout, err = cli(capsys, *evaluate_args(ucf, ckpt, out, "--beta", "0", "--skip-missing"))
    assert rc == 0, err
    # (the rest of stderr may be the sentence model's own loading bar, on a first run)
    assert err.splitlines()[0] == (f"note: model trained on SynthActions (synthetic clips), captions train.json, "
                                   f"backbone efficientnet_lite0 (1280-d), text {minilm_id}, parameter set embedded")
    assert "error" not in err and "warning" not in err
    assert "1 video(s) without features left out" in stdout
    res = json.loads(out.read_text())
    assert res["skipped_videos"] == ["v_Skiing_g01_c02"] and res["trained_on"]["dataset"].startswith("SynthActions")


# --- train -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    """A real triplet file (TripletSet.save) over a real feature folder with a features.json."""
    from cezsar.formats.triplets import TripletSet

    root = tmp_path_factory.mktemp("toy")
    feats = root / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    ids = [f"v{i}" for i in range(6)]
    for i, vid in enumerate(ids):
        np.save(feats / f"{vid}.npy", (rng.standard_normal((12, 16)) + i % 2).astype(np.float32))
    (feats / "features.json").write_text(json.dumps({"backbone": "toy_cnn", "dim": 16, "label_space": None}))
    sentences = CAPTIONS[:6]
    n = 48
    video = rng.integers(0, 6, n).astype(np.int32)
    pos = (video % 2).astype(np.int32)
    ts = TripletSet(sentences, ids, video, np.zeros(n, np.float32), np.full(n, 8, np.float32), pos,
                    (rng.integers(2, 6, n)).astype(np.int32), video == 0,
                    summary={"captions": {"file": "train.json", "dataset": "SynthActions (synthetic clips)"}})
    ts.save(root / "triplets.npz")
    return {"feats": feats, "triplets": root / "triplets.npz", "root": root}


def train_args(toy, out, *extra):
    return ["train", "--triplets", toy["triplets"], "--features", toy["feats"], "--out", out, "--epochs", "1",
            "--batch", "16", "--device", "cpu", *extra]


@pytest.mark.parametrize("kind", ["empty", "truncated", "tensor"])
def test_train_resume_from_a_damaged_last_pt(capsys, tmp_path, toy, kind, no_models):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(damaged_checkpoints(tmp_path / "bad")[kind], out / "last.pt")
    line = one_error(*cli(capsys, *train_args(toy, out, "--resume"))[::2], 1, str(out / "last.pt"),
                     CKPT_MESSAGES[kind])
    assert "delete it to start over" in line
    assert sorted(p.name for p in out.iterdir()) == ["last.pt"]  # nothing else written


def test_train_resume_from_a_checkpoint_that_cannot_resume(capsys, tmp_path, toy, no_models):
    out = tmp_path / "run"
    out.mkdir()
    save_checkpoint(out / "last.pt", feat_dim=16)  # a best.pt-like file without optimizer or RNG states
    one_error(*cli(capsys, *train_args(toy, out, "--resume"))[::2], 1, "last.pt", "lacks optimizer", "needed to resume")


def test_train_triplet_file_that_is_not_one(capsys, tmp_path, toy, no_models):
    bad = tmp_path / "t.npz"
    bad.write_text("hello")
    one_error(*cli(capsys, *train_args({**toy, "triplets": bad}, tmp_path / "run"))[::2], 1, "t.npz",
              "not a triplet file", "re-create it with `cezsar mine`")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("which, needle", [("triplets", "no such triplet file"), ("features", "no such feature folder")])
def test_train_missing_inputs(capsys, tmp_path, toy, no_models, which, needle):
    key = {"triplets": "triplets", "features": "feats"}[which]
    one_error(*cli(capsys, *train_args({**toy, key: tmp_path / "nope"}, tmp_path / "run"))[::2], 2,
              f"--{which} {tmp_path / 'nope'}", needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option, value", [("--epochs", "0"), ("--lr", "-1"), ("--batch", "0"), ("--group", "-1")])
def test_train_bad_numbers(capsys, tmp_path, toy, no_models, option, value):
    args = train_args(toy, tmp_path / "run")
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    one_error(*cli(capsys, *args)[::2], 2, f"{option} {value}")


def test_train_out_that_is_a_file(capsys, tmp_path, toy, no_models):
    f = tmp_path / "run"
    f.write_text("x")
    one_error(*cli(capsys, *train_args(toy, f))[::2], 2, f"--out {f}", "is a file")


def test_train_damaged_feature_bank_cache(capsys, tmp_path, toy, no_models):
    cache = tmp_path / "run" / "cache"
    cache.mkdir(parents=True)
    (cache / "featurebank-float16.json").write_text('{"version": 1, "offsets": [0, 12')
    line = one_error(*cli(capsys, *train_args(toy, tmp_path / "run"))[::2], 1, str(cache),
                     "damaged feature-bank cache featurebank-float16.json")
    assert "delete both files" in line
    assert sorted(p.name for p in cache.iterdir()) == ["featurebank-float16.json"]


def test_train_records_what_the_model_was_trained_on(capsys, tmp_path, toy, minilm_id):
    from cezsar.training.checkpoints import describe_provenance, load_checkpoint

    out = tmp_path / "run"
    rc, _, err = cli(capsys, *train_args(toy, out, "--set-name", "embedded", "--json"))
    assert rc == 0, err
    _, meta = load_checkpoint(out / "best.pt")
    assert meta["trained_on"] == {"dataset": "SynthActions (synthetic clips)", "captions": "train.json",
                                  "features": "feats", "backbone": "toy_cnn", "feat_dim": 16, "label_space": "unknown",
                                  "text_model": minilm_id, "params": "embedded"}
    assert describe_provenance(meta["trained_on"]).startswith("model trained on SynthActions (synthetic clips)")


def test_old_checkpoints_load_with_unknown_provenance(tmp_path):
    from cezsar.training.checkpoints import describe_provenance, load_checkpoint

    _, meta = load_checkpoint(save_checkpoint(tmp_path / "old.pt", text_model="minilm-384d-x"))
    assert meta["trained_on"]["dataset"] == "unknown" and meta["trained_on"]["feat_dim"] == 1280
    assert describe_provenance(meta["trained_on"]) == ("model trained on unknown, backbone unknown (1280-d), "
                                                       "text minilm-384d-x, parameter set unknown")


# --- mine --------------------------------------------------------------------------------------------------
def mine_args(captions, out, *extra):
    return ["mine", "--captions", captions, "--out", out, "--strategy", "exact", *extra]


def test_mine_captions_without_a_usable_segment(capsys, tmp_path, no_models):
    cap = write_captions(tmp_path / "c.json", videos=0, v_a={"duration": 5, "timestamps": [[0, 2], [2, 4]],
                                                             "sentences": ["  ", ""]})
    out = tmp_path / "t.npz"
    one_error(*cli(capsys, *mine_args(cap, out))[::2], 1, f"--captions {cap}", "no usable captioned segment",
              "empty_sentence 2")
    assert not out.exists()


def test_mine_features_folder_that_does_not_exist(capsys, tmp_path, no_models):
    out = tmp_path / "t.npz"
    one_error(*cli(capsys, *mine_args(write_captions(tmp_path / "c.json"), out, "--features", tmp_path / "nope"))[::2],
              2, f"--features {tmp_path / 'nope'}", "no such feature folder")
    assert not out.exists()


def test_mine_features_that_is_a_file(capsys, tmp_path, no_models):
    cap = write_captions(tmp_path / "c.json")
    one_error(*cli(capsys, *mine_args(cap, tmp_path / "t.npz", "--features", cap))[::2], 2, "--features", "is a file")


def test_mine_captions_that_is_a_folder(capsys, tmp_path, no_models):
    one_error(*cli(capsys, *mine_args(tmp_path, tmp_path / "t.npz"))[::2], 2, f"--captions {tmp_path}", "is a folder")


def test_mine_malformed_captions(capsys, tmp_path, no_models):
    f = tmp_path / "c.json"
    f.write_text('{"v_a": [1, 2')
    one_error(*cli(capsys, *mine_args(f, tmp_path / "t.npz"))[::2], 1, "c.json", "malformed JSON")
    assert not (tmp_path / "t.npz").exists()


@pytest.mark.parametrize("option, value", [("--tau", "5"), ("--negatives", "0"), ("--val-fraction", "1.5"),
                                           ("--windows", "0")])
def test_mine_bad_numbers(capsys, tmp_path, no_models, option, value):
    cap = write_captions(tmp_path / "c.json")
    one_error(*cli(capsys, *mine_args(cap, tmp_path / "t.npz", option, value))[::2], 2, option, value)  # the option and the value it refused


def test_mine_out_that_is_a_folder(capsys, tmp_path, no_models):
    one_error(*cli(capsys, *mine_args(write_captions(tmp_path / "c.json"), tmp_path))[::2], 2, f"--out {tmp_path}",
              "is a folder")


def test_mine_zero_triplets_is_an_error_and_writes_nothing(capsys, tmp_path, minilm_id):
    out = tmp_path / "t.npz"
    rc, _, err = cli(capsys, *mine_args(write_captions(tmp_path / "c.json"), out, "--tau", "0"))
    one_error(rc, err, 1, "0 triplets from 16 segment(s)", "tau 0.0", f"{out} not written")
    assert not out.exists()


def test_mine_lists_dropped_captions_and_records_synthactions(capsys, tmp_path, minilm_id):
    (tmp_path / "synthactions.json").write_text("{}")  # the marker `cezsar synth` writes
    cap = write_captions(tmp_path / "activitynet" / "train.json",
                         v_nan={"duration": math.nan, "timestamps": [[0, 1]], "sentences": ["a man runs"]})
    out = tmp_path / "t.npz"
    rc, stdout, err = cli(capsys, *mine_args(cap, out))
    assert rc == 0, err
    assert err.strip() == (f"note: {cap}: bad_duration 1 (`cezsar check-data activitynet {cap}` lists examples)")
    from cezsar.formats.triplets import TripletSet

    ts = TripletSet.load(out)
    assert len(ts) > 0 and "v_nan" not in ts.video_ids
    assert ts.summary["captions"] == {"file": "train.json", "dataset": "SynthActions (synthetic clips)"}


def test_mine_damaged_sentence_cache_shard_is_one_warning(capsys, tmp_path, minilm_id):
    cap = write_captions(tmp_path / "c.json", videos=5)
    cache = tmp_path / "cache"
    assert cli(capsys, *mine_args(cap, tmp_path / "a.npz", "--cache-dir", cache))[0] == 0
    [shard] = sorted((cache / minilm_id).glob("shard-*.npy"))
    shard.write_bytes(shard.read_bytes()[:100])  # cut: the .json commit mark now lies about it
    rc, _, err = cli(capsys, *mine_args(cap, tmp_path / "b.npz", "--cache-dir", cache))
    assert rc == 0 and "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if "sentence cache" in ln]
    assert line.startswith(f"warning: sentence cache: ignoring damaged shard {shard.with_suffix('.json')}")
    assert "re-encoded" in line and "delete" in line
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()  # re-encoded, same result


# --- extract -----------------------------------------------------------------------------------------------
class MockCNN:
    """A deterministic stand-in for the frame CNN (the decoding under test stays real)."""

    name, dim, num_classes, label_space, image_size = "mock", 6, 1000, "imagenet1k", 32

    def encode(self, frames):
        x = frames.astype(np.float32) / 255.0  # (T, H, W, 3)
        f = np.concatenate([x.mean((1, 2)), x.std((1, 2))], 1)  # (T, 6)
        return f, (f @ np.ones((6, 1000), np.float32)) * np.linspace(0, 1, 1000, dtype=np.float32)


def test_extract_lists_a_folder_named_like_a_video_and_an_image_as_video(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("cezsar.encoders.factory.get_encoder", lambda *a, **k: MockCNN())
    root = tmp_path / "videos"
    root.mkdir()
    write_clip(root / "good.mp4")
    still_image(root / "photo.mp4")
    (root / "folder.avi").mkdir()
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "extract", "--dataset", "folder", "--root", root, "--out", out, "--no-progress")
    assert rc == 0 and "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    reasons = {s["video_id"]: s["reason"] for s in report["skipped"]}
    assert reasons == {"folder": "a folder named like a video, not a video file",
                       "photo": "a still png image, not a video (whatever its extension says)"}
    assert report["done"] == 1 and report["videos"] == 3
    assert stdout.strip().splitlines()[-1] == f"2 of 3 video(s) skipped (listed above and in the report in {out})"
    assert sorted(p.name for p in out.glob("*.npy")) == ["good.npy"]


@pytest.mark.parametrize("case, code, needle", [
    ("root-missing", 2, "--root"), ("root-file", 2, "is a file"), ("weights", 2, "--weights"),
    ("backbone", 2, "--backbone alexnet: unknown"), ("batch", 2, "--batch 0"), ("features-json", 1, "features.json"),
])
def test_extract_bad_inputs(capsys, tmp_path, monkeypatch, case, code, needle):
    real = __import__("cezsar.encoders.backbones", fromlist=["get_encoder"]).get_encoder
    # an unknown name is rejected by the real lookup before anything loads; any other load is a test failure
    monkeypatch.setattr("cezsar.encoders.factory.get_encoder",
                        lambda name, *a, **k: real(name) if name == "alexnet" else pytest.fail("CNN loaded"))
    root = tmp_path / "videos"
    root.mkdir()
    out = tmp_path / "out"
    args = {"--dataset": "folder", "--root": root, "--out": out}
    extra = []
    if case == "root-missing":
        args["--root"] = tmp_path / "nope"
    elif case == "root-file":
        args["--root"] = write_clip(tmp_path / "clip.mp4")
    elif case == "weights":
        extra = ["--weights", tmp_path / "BiT-M-R152x2.npz"]
    elif case == "backbone":
        extra = ["--backbone", "alexnet"]
    elif case == "batch":
        extra = ["--batch", "0"]
    else:
        out.mkdir()
        (out / "features.json").write_text("{")
    argv = ["extract", *[x for kv in args.items() for x in kv], *extra]
    one_error(*cli(capsys, *argv)[::2], code, needle)
    assert not (out / "report.json").exists()


# --- synth -------------------------------------------------------------------------------------------------
def test_synth_out_that_is_a_file(capsys, tmp_path):
    f = tmp_path / "out"
    f.write_text("x")
    one_error(*cli(capsys, "synth", "--out", f, "--size", "small")[::2], 2, f"--out {f}", "is a file")


# --- issue 14: partial feature sets and released-feature folders ------------------------------------------------
def test_train_leaves_out_and_counts_triplet_videos_without_features(capsys, tmp_path, toy, minilm_id):
    import shutil

    feats = tmp_path / "feats"
    shutil.copytree(toy["feats"], feats)
    (feats / "v3.npy").unlink()  # one training video of a partial download
    rc, _, err = cli(capsys, "train", "--triplets", toy["triplets"], "--features", feats, "--out", tmp_path / "run",
                     "--epochs", "1", "--batch", "16", "--device", "cpu")
    assert rc == 0, err
    assert "note: 1 of 6 triplet videos have no features" in err and "v3" in err and "Traceback" not in err
    assert (tmp_path / "run" / "best.pt").is_file()


def test_check_data_checks_a_feature_folder_against_the_dataset(capsys, tmp_path):
    caps = write_captions(tmp_path / "caps.json", videos=3)
    ids = sorted(json.loads(caps.read_text()))
    feats = tmp_path / "feats"
    feats.mkdir()
    for vid in ids[:2]:
        np.save(feats / f"{vid}.npy", np.ones((4, 8), np.float32))
    rc, out, err = cli(capsys, "check-data", "activitynet", caps, "--features", feats)
    assert rc == 1 and "2/3 videos have a stack" in out and ids[2] in out and "INCOMPLETE" in out, out + err
    np.save(feats / f"{ids[2]}.npy", np.ones((4, 8), np.float32))
    rc, out, _ = cli(capsys, "check-data", "activitynet", caps, "--features", feats)
    assert rc == 0 and "complete" in out
    rc, _, err = cli(capsys, "check-data", "descriptions", caps, "--features", feats)
    one_error(rc, err, 2, "--features")


def test_objects_command_bad_inputs_are_one_line(capsys, tmp_path):
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "v1.npy", np.ones((3, 8), np.float32))
    rc, _, err = cli(capsys, "objects", "--features", tmp_path / "nope", "--weights", tmp_path / "h.npz")
    one_error(rc, err, 2, "--features", "nope")
    rc, _, err = cli(capsys, "objects", "--features", feats, "--weights", tmp_path / "h.npz")
    one_error(rc, err, 2, "--weights", "h.npz")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    rc, _, err = cli(capsys, "objects", "--features", feats, "--weights", tmp_path / "junk.pth")
    one_error(rc, err, 1, "junk.pth")
    np.savez(tmp_path / "wide.npz", **{"resnet/head/conv2d/kernel": np.zeros((1, 1, 16, 1000), np.float32),
                                       "resnet/head/conv2d/bias": np.zeros(1000, np.float32)})
    rc, _, err = cli(capsys, "objects", "--features", feats, "--weights", tmp_path / "wide.npz")
    one_error(rc, err, 1, "8-d", "16-d")
    assert not (feats / "objects").exists() or not list((feats / "objects").glob("*.npz"))
