"""The objects-only SBERT baseline (Estevam et al., row "O") and the SBERT-space helpers."""
from __future__ import annotations

import numpy as np
import pytest

from cezsar.evaluation import baselines, prototypes, zsar

KEYWORDS = ["cat", "coffee", "motorcycle", "tripod"]


def keyword_encode(sentences):
    """Mocked SBERT: one-hot over keywords (sentence-transformers' test practice)."""
    return np.array([[float(k in s) for k in KEYWORDS] for s in sentences], np.float32)


SENTENCES = ["tabby: a cat with a striped coat", "espresso: strong coffee", "moped: a small motorcycle",
             "tripod: a three-legged stand", "cup: a coffee cup"]


def test_objects_only_known_answer_with_keyword_encoder():
    obj_ids = [[0, 0, 3], [1, 4, 3], [2, 2, 2], [0, 1, 4]]  # cat, coffee, motorcycle, coffee (2 of 3)
    desc = keyword_encode(["petting a cat", "drinking coffee", "riding a motorcycle"])
    scores = baselines.objects_only_scores(obj_ids, SENTENCES, desc, keyword_encode)
    assert scores.shape == (4, 3)
    assert zsar.predict(scores).tolist() == [0, 1, 2, 1]
    m = zsar.metrics(scores, np.array([0, 1, 2, 0]))
    assert m["top1"] == 0.75 and m["confusion"][0] == [1, 1, 0]


def test_video_vector_is_the_mean_of_normalised_object_embeddings():
    vid = baselines.objects_video_embeddings([[0, 3]], SENTENCES, keyword_encode)
    np.testing.assert_allclose(vid, [[0.5, 0.0, 0.0, 0.5]])
    space = baselines.sbert_space([[0, 3], [1]], SENTENCES, keyword_encode(["a cat", "coffee"]), keyword_encode)
    assert space["videos"].shape == (2, 4) and space["prototypes"].shape == (2, 4)
    np.testing.assert_allclose(np.linalg.norm(space["videos"], axis=1), 1.0, atol=1e-6)


def test_prototypes_average_several_sentences_and_reject_empty():
    many = [keyword_encode(["cat", "cat and coffee"]), keyword_encode(["tripod"])]
    proto = prototypes.class_prototypes(many)
    np.testing.assert_allclose(proto[0], [(1 + 2 ** -0.5) / 2, 2 ** -0.5 / 2, 0, 0], atol=1e-6)
    with pytest.raises(ValueError, match=r"\[1\]"):
        prototypes.class_prototypes([keyword_encode(["cat"]), np.zeros((0, 4), np.float32)])
    with pytest.raises(ValueError, match="have no objects"):
        baselines.objects_video_embeddings([[0], []], SENTENCES, keyword_encode)


@pytest.mark.slow
def test_objects_only_with_real_sbert(tmp_path):
    """Real all-MiniLM-L6-v2: WordNet-style object sentences find the matching action description."""
    from cezsar.errors import ResourceMissing
    from cezsar.encoders.text import SentenceEncoder

    try:
        enc = SentenceEncoder("minilm", cache_dir=tmp_path)
    except ResourceMissing as err:
        pytest.skip(str(err))
    sentences = [
        "tabby: a cat with a grey or tawny coat mottled with black",
        "Egyptian cat: a domestic cat of Egypt",
        "espresso: strong black coffee brewed by forcing steam under pressure through dark-roasted coffee beans",
        "cup: a small open container usually used for drinking; usually has a handle",
        "moped: a motorbike that can be pedaled or driven by a low-powered gasoline engine",
        "crash helmet: a helmet worn by motorcyclists",
    ]
    obj_ids = [[0, 1], [2, 3], [4, 5]]
    desc = enc.encode(["A person strokes and plays with a pet cat on the sofa.",
                       "Someone drinks a hot coffee from a cup in a cafe.",
                       "A rider drives a motorbike along a street wearing a helmet."])
    scores = baselines.objects_only_scores(obj_ids, sentences, desc, enc.encode)
    assert zsar.predict(scores).tolist() == [0, 1, 2]
    assert enc.encode(sentences[:1]).shape == (1, enc.dim)
