"""SentenceEncoder: cache semantics with a mocked model, plus one real MiniLM run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cezsar.encoders.text import SentenceCache, SentenceEncoder


class FakeSBERT:
    """Stands in for SentenceTransformer: a deterministic vector per sentence, counts what it encodes."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.seen: list[str] = []

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, sentences, batch_size=32, **kw):
        self.seen.extend(sentences)
        out = []
        for s in sentences:
            rng = np.random.default_rng(abs(hash(s)) % (2**32))
            out.append(rng.normal(size=self.dim))
        return np.asarray(out, dtype=np.float64)  # float64 on purpose: the encoder must cast


def test_second_pass_encodes_nothing(tmp_path):
    sents = ["a man rides a horse", "a woman swims", "a man rides a horse", "kids play ball"]
    fake = FakeSBERT()
    enc = SentenceEncoder("fake", cache_dir=tmp_path, backend=fake)
    first = enc.encode(sents)
    assert first.dtype == np.float32 and first.shape == (4, 8)
    assert sorted(fake.seen) == sorted(set(sents))  # deduplicated before encoding
    np.testing.assert_array_equal(first[0], first[2])

    fake2 = FakeSBERT()
    enc2 = SentenceEncoder("fake", cache_dir=tmp_path, backend=fake2)  # a fresh process, same cache
    again = enc2.encode(list(reversed(sents)))
    assert fake2.seen == [] and enc2.calls == 0
    np.testing.assert_array_equal(again, first[::-1])

    enc2.encode(sents + ["a new sentence"])
    assert fake2.seen == ["a new sentence"]


def test_interrupted_shard_is_ignored(tmp_path):
    fake = FakeSBERT()
    enc = SentenceEncoder("fake", cache_dir=tmp_path, backend=fake)
    enc.encode(["one", "two"])
    folder = tmp_path / enc.model_id
    (shard_json,) = folder.glob("shard-*.json")
    # a run killed between the .npy and its .json: an orphan array, plus a torn shard with a bad row count
    np.save(folder / "shard-99999999999999999999-1.npy", np.ones((3, 8), np.float32))
    np.save(folder / "shard-99999999999999999998-1.npy", np.ones((3, 8), np.float32))
    (folder / "shard-99999999999999999998-1.json").write_text(json.dumps(["x", "y"]))
    with pytest.warns(UserWarning, match="ignoring"):
        cache = SentenceCache(folder, 8)
    assert len(cache) == 2 and "x" not in cache
    assert cache.ignored == ["shard-99999999999999999998-1.json"]
    assert json.loads(shard_json.read_text()) == ["one", "two"]


def test_models_do_not_share_a_cache(tmp_path):
    a = SentenceEncoder("fake-a", cache_dir=tmp_path, backend=FakeSBERT(8))
    b = SentenceEncoder("fake-b", cache_dir=tmp_path, backend=FakeSBERT(4))
    a.encode(["same text"])
    assert b.encode(["same text"]).shape == (1, 4) and b.calls == 1


def test_rejects_non_strings(tmp_path):
    enc = SentenceEncoder("fake", cache_dir=tmp_path, backend=FakeSBERT())
    with pytest.raises(TypeError, match="sentence #1"):
        enc.encode(["ok", None])


def test_real_minilm(tmp_path):
    enc = SentenceEncoder("minilm", cache_dir=tmp_path)
    assert enc.dim == 384 and "384d" in enc.model_id
    sents = ["A man is riding a horse.", "A person rides a horse.", "A chef slices onions in a kitchen."]
    emb = enc.encode(sents)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert u[0] @ u[1] > u[0] @ u[2] + 0.3  # the paraphrase is much closer than the unrelated sentence
    fresh = SentenceEncoder("minilm", cache_dir=tmp_path)
    np.testing.assert_array_equal(fresh.encode(sents[::-1]), emb[::-1])
    assert fresh.calls == 0 and fresh._backend is None  # served from disk without loading the model
