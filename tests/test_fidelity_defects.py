"""The five fidelity defects of issue #16, each pinned by a test that fails without its fix."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cezsar.evaluation import dataset_embedding, protocols as P
from cezsar.config import ModelConfig
from cezsar.formats.datasets import ClassDataset, Video

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Encoder:
    """SBERT stand-in: a fixed pseudo-random 6-d vector per sentence."""

    model_id, dim = "fake-6d", 6

    def encode(self, sentences):
        return np.stack([np.random.default_rng(sum(map(ord, s))).normal(size=6) for s in sentences]).astype(np.float32)


class _Store:
    def __init__(self, feats, objs):
        self.feats, self.objs, self.ids, self.label_space = feats, objs, list(feats), "imagenet1k"

    def load(self, vid):
        return self.feats[vid]

    def objects(self, vid):
        return self.objs[vid]


def _model():
    from cezsar.training.joint_embedder import JointEmbedder

    torch.manual_seed(0)
    return JointEmbedder(ModelConfig(feat_dim=8, text_dim=6, d_model=16, n_heads=2, emb_dim=5)).eval()


def test_released_sum_is_the_raw_sum_of_raw_vem_and_raw_object_sem_outputs(monkeypatch):
    """Defect 1: normalize_terms=False must not L2-normalise the window embeddings or the object embeddings."""
    import cezsar.evaluation.dataset_embedding

    sentences = [f"object {i}: a thing number {i}" for i in range(10)]
    monkeypatch.setattr(cezsar.evaluation.dataset_embedding, "object_sentences", lambda label_space: sentences)
    rng = np.random.default_rng(1)
    classes = ["act a", "act b"]
    videos = [Video("v0", None, "act a"), Video("v1", None, "act b")]
    feats = {v.video_id: rng.normal(size=(6, 8)).astype(np.float32) for v in videos}  # one window each
    idx = np.array([[1, 2, 3]] * 6, np.int32)
    objs = {v.video_id: (idx + i, np.full((6, 3), 0.3, np.float16)) for i, v in enumerate(videos)}
    ds = ClassDataset("ucf101", classes, videos, {}, {})
    desc = {c: [f"someone does {c}"] for c in classes}
    model, enc = _model(), _Encoder()
    emb = dataset_embedding.embed_dataset(ds, _Store(feats, objs), desc, enc, model=model, alpha=0.8, beta=0.2,
                          normalize_terms=False, n_objects=3)
    with torch.no_grad():
        ve = model.encode_video(torch.from_numpy(np.stack([feats["v0"], feats["v1"]]))).numpy()  # (2, 5)
        sem = model.encode_text(torch.from_numpy(enc.encode(sentences))).numpy()  # (10, 5)
    obj = np.stack([sem[[1, 2, 3]].mean(0), sem[[2, 3, 4]].mean(0)])
    np.testing.assert_allclose(emb["videos"], 0.8 * ve + 0.2 * obj, rtol=1e-5, atol=1e-6)


def test_a_window_takes_the_frames_inside_it_only():
    """Defect 3: frame i is at second i, so [3.4, 13.4) holds the 10 frames 4..13, not 11 rows from 3."""
    from cezsar.training.featurebank import window_index
    from cezsar.encoders.objects import window_objects

    offsets = np.array([0, 30])
    rows, mask, _, _ = window_index(np.array([0]), np.array([3.4], np.float32), np.array([13.4], np.float32),
                                    offsets, 15)
    assert rows[0][mask[0]].tolist() == list(range(4, 14))
    rows, mask, _, _ = window_index(np.array([0]), np.array([3.0], np.float32), np.array([5.0], np.float32),
                                    offsets, 15)
    assert rows[0][mask[0]].tolist() == [3, 4]  # integer bounds: unchanged
    indices = np.array([[1], [2], [3]], np.int32)  # second 0: class 1, second 1: class 2, ...
    scores = np.array([[0.9], [0.5], [0.4]], np.float16)
    assert window_objects(indices, scores, 0.5, 3.0, k=1) == [2]  # second 0 (class 1, 0.9) is before the window


def test_results_record_the_max_seconds_the_embedding_used(tmp_path, monkeypatch):
    """Defect 4: a result scored from a precomputed embedding records its max_seconds (was null)."""
    rng = np.random.default_rng(0)
    classes = ["act a", "act b", "act c"]
    videos = [Video(f"v{i}", None, classes[i % 3]) for i in range(6)]
    feats = {v.video_id: rng.normal(size=(20, 8)).astype(np.float32) for v in videos}
    ds = ClassDataset("ucf101", classes, videos, {}, {})
    desc = {c: [f"someone does {c}"] for c in classes}
    store = _Store(feats, {})
    emb = dataset_embedding.embed_dataset(ds, store, desc, _Encoder(), model=_model(), beta=0.0, max_seconds=16)
    res = P.run_evaluation(ds, store, desc, _Encoder(), "0/all", model=_model(), out_dir=tmp_path, emb=emb)
    assert res["max_seconds"] == 16 and res["beta"] == 0.0 and res["variant"] == "VE"


def test_released_window_is_the_first_16_s_of_the_segment_and_trains(tmp_path):
    """Defect 2: TrainConfig.window="released" raised NotImplementedError; it is the first 16 s of the segment."""
    from test_train import TINY, make_toy

    from cezsar.config import TrainConfig
    from cezsar.training.train import fit
    from cezsar.training.train_inputs import visual_windows

    trip, store, text = make_toy(tmp_path / "feats")
    n = len(trip.video)
    trip.segment = (np.arange(n) // 15).astype(np.int32)  # make_toy: 15 triplets per window, one window a segment
    bounds = np.stack([np.arange(n // 15) % 5 + 0.4, np.arange(n // 15) % 5 + 30.0], 1)  # all longer than 16 s
    rel = visual_windows(trip, "released", bounds)
    np.testing.assert_allclose(rel.start, np.floor(bounds[trip.segment, 0]), atol=1e-6)  # int(start), issue 27
    np.testing.assert_allclose(rel.end, np.floor(bounds[trip.segment, 0]) + 16, atol=1e-5)
    assert trip.start is not rel.start and visual_windows(trip, "paper") is trip
    cfg = ModelConfig(**TINY, max_len=16)
    res = fit(trip, store, text, TrainConfig(epochs=1, window="released", device="cpu"), cfg, tmp_path / "run",
              progress=False, segment_bounds=bounds)
    assert res["data"]["windows"] == len(np.unique(np.stack([trip.video, trip.segment % 5]), axis=1).T)
    assert res["data"]["truncated"] == 0  # 16 s -> 16 rows at most: frames ceil(s) .. ceil(s + 16) - 1
    with pytest.raises(ValueError, match="segment"):
        fit(trip, store, text, TrainConfig(epochs=1, window="released", device="cpu"), cfg, tmp_path / "r2",
            progress=False)


def test_the_fidelity_table_says_how_object_positives_differ_and_names_every_switch():
    """Defect 5: the README called the object positives "the same" as the released code's; they are not."""
    from cezsar.config import PROJ_ROOT

    readme = (PROJ_ROOT / "README.md").read_text()
    doc = (PROJ_ROOT / "docs" / "fidelity.md").read_text()
    assert "docs/fidelity.md" in readme
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in doc.splitlines() if line.startswith("| ")}
    paper, released, here, switch = rows["object positives"][1:5]
    assert here.strip().lower() not in ("same", "the same") and "exact synset" in here and "every sense" in released
    assert "released_objects" in switch and "object_tau" in switch
    for name in ("released_preprocess", "draw=", "far_from_all", "window=", "released_padding", "released_attention",
                 "positional=False", "released_head", "released_sem", "xavier_init", "split=", "autocast=False",
                 "normalize_terms=False", "max_seconds=16", "released_descriptions", "std_ddof=0", "released.yaml",
                 "released_validation", "bank_dtype", "negative pool", "window start"):  # issue 27 part 4 rows
        assert name in doc, name
