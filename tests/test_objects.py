"""Objects: ImageNet ids -> WordNet sentences (real WordNet), softmax top-k, window pooling."""
from __future__ import annotations

import numpy as np
import pytest

from cezsar.encoders.objects import imagenet_wnids, object_sentences, topk_from_logits, window_objects


def test_wnid_lists() -> None:
    one, full = imagenet_wnids("imagenet1k"), imagenet_wnids("imagenet21k")
    assert len(one) == 1000 and len(full) == 21843
    assert one[0] == "n01440764" and one[285] == "n02124075"  # tench; Egyptian cat (ILSVRC-2012 index 285)
    assert one == sorted(one) and full == sorted(full)  # both heads index their classes in sorted-wnid order
    # Google's 21k list lacks only teddy bear (n04399382) of the 1k classes, a known quirk of that release
    assert set(one) - set(full) == {"n04399382"}
    with pytest.raises(ValueError, match="label space"):
        imagenet_wnids("places365")


def test_object_sentences_real_wordnet() -> None:
    sents = object_sentences("imagenet1k")
    assert len(sents) == 1000
    assert sents[285].startswith("Egyptian cat: ") and "cat" in sents[285].split(": ", 1)[1]
    assert sents[0].startswith("tench: ")
    assert sents[504].startswith("coffee mug: ")
    assert all(": " in s and "_" not in s.split(": ")[0] for s in sents)  # lemma underscores became spaces
    assert object_sentences("imagenet1k") is not sents  # callers get a fresh list over the cached tuple


def test_object_sentence_cache_equals_a_fresh_wordnet_build(tmp_path, monkeypatch) -> None:
    from cezsar.encoders import objects

    monkeypatch.setenv("CEZSAR_CACHE", str(tmp_path))
    objects._sentences.cache_clear()
    try:
        built = objects.object_sentences("imagenet1k")  # empty cache: built from WordNet, then written
        files = list((tmp_path / "objects").glob("imagenet1k-*.json"))
        assert len(files) == 1
        objects._sentences.cache_clear()
        assert objects.object_sentences("imagenet1k") == built  # read back from the disk cache
        assert built == objects._wordnet_sentences("imagenet1k", imagenet_wnids("imagenet1k"))
    finally:
        objects._sentences.cache_clear()


def test_topk_from_logits() -> None:
    logits = np.array([[0.0, 3.0, 1.0, 3.0], [5.0, 0.0, 0.0, 0.0]], np.float32)
    idx, sc = topk_from_logits(logits, 2)
    assert idx.dtype == np.int32 and sc.dtype == np.float16 and idx.shape == (2, 2)
    assert idx[0].tolist() == [1, 3]  # a tie goes to the lower class id
    e = np.exp(logits[1] - 5)
    assert idx[1, 0] == 0 and abs(float(sc[1, 0]) - e[0] / e.sum()) < 1e-3


def test_window_objects_pools_over_seconds() -> None:
    # second:        0        1        2        3
    indices = np.array([[7, 1], [7, 2], [3, 2], [3, 9]], np.int32)
    scores = np.array([[0.5, 0.1], [0.4, 0.3], [0.9, 0.35], [0.8, 0.1]], np.float16)
    assert window_objects(indices, scores, 0, 2, k=2) == [7, 2]  # 7: 0.9, 2: 0.3, 1: 0.1
    assert window_objects(indices, scores, 1, 3, k=3) == [3, 2, 7]  # 3: 0.9, 2: 0.65, 7: 0.4
    assert window_objects(indices, scores, 0.5, 1.2, k=1) == [7]  # fractional bounds cover seconds 0-1
    assert window_objects(indices, scores, 10, 12, k=1) == [3]  # past the end: the last second
    assert window_objects(indices[:0], scores[:0], 0, 5, k=3) == []
