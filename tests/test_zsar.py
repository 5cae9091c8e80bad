"""Eq. 8-9 classification: known answers, metrics, and the FeatureStore -> VE / SE(O) glue."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cezsar.evaluation import prototypes, zsar
from cezsar.config import ModelConfig


def tiny_model(seed: int = 0):
    from cezsar.training.joint_embedder import JointEmbedder

    torch.manual_seed(seed)
    m = JointEmbedder(ModelConfig(feat_dim=8, text_dim=6, d_model=16, n_heads=2, emb_dim=5, max_len=15))
    return m.eval()


class ArrayStore:
    """A FeatureStore stand-in: .ids, .load(id) -> (T, D), .objects(id) -> (indices, scores) | None."""

    def __init__(self, feats: dict, objects: dict | None = None, label_space: str = "imagenet1k") -> None:
        self.feats, self.objs, self.label_space = feats, objects or {}, label_space
        self.ids = list(feats)

    def load(self, vid):
        if vid not in self.feats:
            raise FileNotFoundError(f"no features for video {vid}")
        return self.feats[vid]

    def objects(self, vid):
        return self.objs.get(vid)


def test_one_hot_embeddings_give_full_accuracy():
    c = 7
    proto = np.eye(c, dtype=np.float32)
    labels = np.repeat(np.arange(c), 3)
    vid = proto[labels] * np.linspace(0.5, 2.0, len(labels))[:, None]  # scale must not matter for cosine
    m = zsar.metrics(zsar.cosine_scores(vid, proto), labels)
    assert m["top1"] == 1.0 and m["top5"] == 1.0
    assert np.array_equal(np.array(m["confusion"]), np.diag(np.full(c, 3)))
    assert all(v == 1.0 for v in m["per_class"].values())


def test_permuted_classes_give_permuted_confusion():
    rng = np.random.default_rng(0)
    c, v = 6, 60
    proto = rng.normal(size=(c, 16)).astype(np.float32)
    vid = rng.normal(size=(v, 16)).astype(np.float32)
    labels = rng.integers(0, c, v)
    base = np.array(zsar.metrics(zsar.cosine_scores(vid, proto), labels)["confusion"])
    perm = rng.permutation(c)  # new class j is old class perm[j]
    inv = np.argsort(perm)
    perm_conf = np.array(zsar.metrics(zsar.cosine_scores(vid, proto[perm]), inv[labels])["confusion"])
    assert np.array_equal(perm_conf, base[np.ix_(perm, perm)])
    assert base.sum() == v and base.trace() < v  # random data: not a trivial all-correct matrix


def test_topk_and_per_class_against_a_hand_made_case():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.4]], np.float32)
    labels = np.array([0, 1, 2])
    m = zsar.metrics(scores, labels, ["a", "b", "c"])
    assert m["top1"] == pytest.approx(1 / 3)
    assert zsar.topk_correct(scores, labels, 2).tolist() == [True, True, True]
    assert zsar.topk_correct(scores, labels, 1).tolist() == [True, False, False]
    assert m["per_class"] == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert m["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    # a class without videos has no accuracy, not 0
    assert zsar.metrics(scores[:1], labels[:1], ["a", "b", "c"])["per_class"]["b"] is None


def test_video_embedding_eq9_terms_and_switches():
    ve = np.array([[3.0, 0.0], [0.0, 1.0]], np.float32)
    se = np.array([[0.0, 10.0], [0.0, 2.0]], np.float32)
    out = zsar.video_embedding(ve, se, 0.8, 0.2)
    np.testing.assert_allclose(out, [[0.8, 0.2], [0.0, 1.0]], atol=1e-6)  # each term unit length first
    np.testing.assert_allclose(zsar.video_embedding(ve, se, 0.8, 0.2, normalize_terms=False),
                               0.8 * ve + 0.2 * se, atol=1e-6)
    np.testing.assert_allclose(zsar.video_embedding(ve, se, 0.8, 0.0), zsar.l2_normalize(ve))
    np.testing.assert_allclose(zsar.video_embedding(ve, None), zsar.l2_normalize(ve))
    with pytest.raises(ValueError, match="differ in shape"):
        zsar.video_embedding(ve, se[:1])


def test_class_prototypes_single_and_averaged_sentences():
    model = tiny_model()
    rng = np.random.default_rng(1)
    desc = rng.normal(size=(4, 6)).astype(np.float32)
    one = prototypes.class_prototypes(desc, prototypes.through_sem(model))
    with torch.no_grad():
        ref = model.encode_text(torch.from_numpy(desc)).numpy()
    np.testing.assert_allclose(one, ref, atol=1e-6)
    many = [desc[:2], desc[2:3], desc[3:]]
    avg = prototypes.class_prototypes(many, prototypes.through_sem(model))
    n = zsar.l2_normalize(ref)
    np.testing.assert_allclose(avg, np.stack([n[:2].mean(0), n[2], n[3]]), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[1\]"):
        prototypes.class_prototypes([desc[:1], np.zeros((0, 6), np.float32)], prototypes.through_sem(model))


def test_clip_windows():
    assert zsar.clip_windows(7) == [(0, 7)]
    assert zsar.clip_windows(31, 15) == [(0, 15), (15, 30), (30, 31)]
    assert zsar.clip_windows(31, 15, max_seconds=16) == [(0, 15), (15, 16)]


def test_encode_videos_padding_and_long_clips_match_unpadded_windows():
    model = tiny_model()
    rng = np.random.default_rng(2)
    feats = {"short": rng.normal(size=(4, 8)).astype(np.float32), "long": rng.normal(size=(20, 8)).astype(np.float32)}
    out = zsar.encode_videos(model, ArrayStore(feats), ["short", "long"], max_len=15, batch=2)

    def ref(x):  # one window, no padding, no mask
        with torch.no_grad():
            return zsar.l2_normalize(model.encode_video(torch.from_numpy(x[None]), None).numpy())[0]

    np.testing.assert_allclose(out[0], ref(feats["short"]), atol=1e-5)
    expect = (15 * ref(feats["long"][:15]) + 5 * ref(feats["long"][15:])) / 20
    np.testing.assert_allclose(out[1], expect, atol=1e-5)


def test_encode_videos_names_a_video_without_features():
    with pytest.raises(FileNotFoundError, match="ghost"):
        zsar.encode_videos(tiny_model(), ArrayStore({"a": np.zeros((3, 8), np.float32)}), ["a", "ghost"])


def test_object_embeddings_mean_of_sem_outputs_and_encoded_once():
    model = tiny_model()
    rng = np.random.default_rng(3)
    table = {f"obj{i}: thing {i}": rng.normal(size=6).astype(np.float32) for i in range(5)}
    sentences = list(table)
    calls = []

    def encode(batch):
        calls.append(list(batch))
        return np.stack([table[s] for s in batch])

    se = zsar.object_embeddings(model, [[0, 2, 4], [2, 2, 1]], sentences, encode)
    assert len(calls) == 1 and sorted(calls[0]) == sorted(sentences[i] for i in (0, 1, 2, 4))
    with torch.no_grad():
        sem = zsar.l2_normalize(model.encode_text(torch.from_numpy(np.stack(list(table.values())))).numpy())
    np.testing.assert_allclose(se, np.stack([sem[[0, 2, 4]].mean(0), sem[[2, 2, 1]].mean(0)]), atol=1e-6)
    with pytest.raises(ValueError, match="outside the label space"):
        zsar.object_embeddings(model, [[7]], sentences, encode)


def test_video_objects_names_a_video_without_objects():
    pytest.importorskip("cezsar.encoders.objects")
    idx = np.array([[5, 1], [5, 2], [5, 1]], np.int32)
    sc = np.array([[0.6, 0.2], [0.5, 0.3], [0.7, 0.1]], np.float16)
    store = ArrayStore({"a": np.zeros((3, 8)), "b": np.zeros((3, 8))}, {"a": (idx, sc)})
    got = zsar.video_objects(store, ["a"], k=2)
    assert got[0][0] == 5 and len(got[0]) == 2
    with pytest.raises(ValueError, match="'b'"):
        zsar.video_objects(store, ["a", "b"], k=2)
