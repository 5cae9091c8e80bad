"""Objects in a video: per-second ImageNet top-k -> WordNet synsets -> object sentences O(v).

Paper §3.5 and Eq. 9: the objects recognised in a video are turned into sentences and embedded with the
same SBERT as the class descriptions; the mining of §3.4 also draws object positives from them. A class
index is mapped to its WordNet 3.0 synset *by offset* (the ImageNet id `n02124075` is noun offset
2124075), and its sentence is "lemma: definition" of that exact synset (docs/fidelity.md "objects at eval";
the released code took the definitions of every sense of every lemma of the synset, looked up by word, mixing
unrelated meanings: `all_sense_texts`, `released_positive_texts`).
"""
from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from importlib import resources

import numpy as np

from cezsar.base.atomic import write_json
from cezsar.config import cache_dir
from cezsar.encoders.resources import ensure_wordnet

LABEL_SPACES = {"imagenet1k": "imagenet1k_wnids.txt", "imagenet21k": "imagenet21k_wnids.txt"}
NO_LABELS = "none"  # features.json label_space of a backbone without an ImageNet head (CLIP): no objects


def imagenet_wnids(label_space: str) -> list[str]:
    """WordNet ids of the classifier's classes in class-index order (package data, see cezsar/data/)."""
    if label_space not in LABEL_SPACES:
        raise ValueError(f"unknown label space {label_space!r}; expected one of {sorted(LABEL_SPACES)}")
    text = resources.files("cezsar.data").joinpath(LABEL_SPACES[label_space]).read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _sentence(synset) -> str:
    lemma = synset.lemmas()[0].name().replace("_", " ")
    return f"{lemma}: {synset.definition()}"


def _cached_texts(label_space: str, kind: str, build) -> tuple[str, ...]:
    """One text per class index of `label_space`, from a disk cache keyed by the wnid list; built once by
    `build(wnids)` from WordNet. nltk spends ~20 s loading WordNet on these machines; the 1000 (or 21,843)
    texts are a few hundred kB, so every later process (classify, evaluation) reads them from the cache."""
    wnids = imagenet_wnids(label_space)
    key = hashlib.sha256("\n".join(wnids).encode()).hexdigest()[:12]
    path = cache_dir() / "objects" / f"{label_space}-wordnet3.0{kind}-{key}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if len(cached) == len(wnids):
            return tuple(cached)
    ensure_wordnet()
    out = build(wnids)
    write_json(path, out, indent=None)
    return tuple(out)


@lru_cache(maxsize=None)
def _sentences(label_space: str) -> tuple[str, ...]:
    """"lemma: definition" of each class's own synset (cached on disk, `_cached_texts`)."""
    return _cached_texts(label_space, "", lambda wnids: _wordnet_sentences(label_space, wnids))


def _wordnet_sentences(label_space: str, wnids: list[str]) -> list[str]:
    # lazy: nltk takes ~1 s to import and is needed only while the sentence cache is cold
    from nltk.corpus import wordnet as wn
    from nltk.corpus.reader.wordnet import WordNetError

    out = []
    for wnid in wnids:
        try:
            out.append(_sentence(wn.synset_from_pos_and_offset("n", int(wnid[1:]))))
        except (WordNetError, ValueError) as err:
            raise LookupError(f"{label_space}: WordNet 3.0 has no noun synset for {wnid} ({err})") from err
    return out


def object_sentences(label_space: str) -> list[str]:
    """One sentence "lemma: definition" per class index of `label_space` (cached per process)."""
    return list(_sentences(label_space))


def topk_from_logits(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame top-k classes: indices int32 (T, k) by decreasing softmax probability, scores float16 (T, k).

    Only the top-k of the softmax is kept on disk: for 21,843 classes the full logits would be
    ~40x larger than the features themselves.
    """
    logits = np.asarray(logits, dtype=np.float64)  # (T, C)
    k = min(k, logits.shape[1])
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)  # (T, C) softmax
    # stable sort on -p: ties resolve to the lower class index, so results are reproducible
    idx = np.argsort(-p, axis=1, kind="stable")[:, :k]  # (T, k)
    scores = np.take_along_axis(p, idx, axis=1)
    return idx.astype(np.int32), scores.astype(np.float16)


def topk_logsumexp(logits, k: int):
    """Per-row top-k of the softmax without forming it: torch (R, C) logits -> (indices int64 (R, k), scores
    float32 (R, k)), both on the logits' device, by decreasing score.

    softmax(z)_c = exp(z_c - logsumexp(z)), and the softmax is monotone in z, so the top-k of the logits are the
    top-k of the softmax and only k exponentials are needed (paper §3.5 objects; the float64 softmax and full
    sort of `topk_from_logits` are the reference). The log-sum-exp is taken in float32 whatever the logits'
    dtype; the scores are stored as float16, whose rounding (~5e-4 relative) is far coarser than its error.
    """
    import torch  # lazy: this module is also imported where torch is not needed (sentence building)

    z = logits.float()  # (R, C)
    k = min(k, z.shape[1])
    lse = torch.logsumexp(z, dim=1, keepdim=True)  # (R, 1)
    vals, idx = torch.topk(z, k, dim=1, sorted=True)  # (R, k)
    return idx, torch.exp(vals - lse)


def window_objects(indices: np.ndarray, scores: np.ndarray, start: float, end: float, k: int) -> list[int]:
    """Top-k classes of the window [start, end) seconds (paper §3.4 windows, Eq. 9 O(v)).

    Rows ceil(start) .. ceil(end)-1 of the per-second top-K (the frames inside the window: frame i is at
    second i) are pooled by summing each class's
    probability over the seconds (a class outside a second's top-K counts 0 there), so an object seen
    briefly but confidently competes with one seen long but weakly. A window past the end of the video
    falls back to its last second. Ties go to the lower class id.
    """
    indices = np.asarray(indices)
    scores = np.asarray(scores, dtype=np.float64)
    t = len(indices)
    if t == 0 or k <= 0:
        return []
    lo = min(max(0, math.ceil(start)), t - 1)
    hi = max(lo + 1, min(t, math.ceil(end)))
    ids = indices[lo:hi].ravel()  # (W*K,)
    totals: dict[int, float] = {}
    for c, s in zip(ids.tolist(), scores[lo:hi].ravel().tolist()):
        totals[c] = totals.get(c, 0.0) + s
    ranked = sorted(totals.items(), key=lambda cs: (-cs[1], cs[0]))
    return [c for c, _ in ranked[:k]]


# --- the released code's object sentences (docs/fidelity.md "object positives", "objects at eval") ------------
RELEASED_ROWS = 16  # the released O(v) looks at the first 16 rows of a clip, zero padding included
FRAGMENT_MIN_WORDS = 5  # released object positives: definition fragments of more than 5 words ...
FRAGMENT_MAX_WORDS = 20  # ... cut to their first 20 words


RELEASED_PIECE_WORDS = 300  # the released O(v) text: each "."-piece cut to its first 300 words (max_len)


@lru_cache(maxsize=None)
def _released_wordnet(label_space: str) -> tuple[tuple[str, str], ...]:
    """Per class index, the released code's (lemma line, definitions): the line is the synset's lemma names
    joined by ", " (the released imagenet21k_wordnet_lemmas.txt line, underscores kept), the definitions
    "d . d . " of every WordNet sense (any part of speech) of every lemma of that line, looked up by word, as
    its get_word_net_definition did; cached on disk like `_sentences`."""
    texts = _cached_texts(label_space, "-released-lemmas", _wordnet_released)
    return tuple(tuple(t.split("\n", 1)) for t in texts)  # type: ignore[misc]


def _wordnet_released(wnids: list[str]) -> list[str]:
    from nltk.corpus import wordnet as wn  # lazy: nltk takes ~1 s to import, as in `_wordnet_sentences`

    out = []
    for wnid in wnids:
        line = ", ".join(wn.synset_from_pos_and_offset("n", int(wnid[1:])).lemma_names())
        # the released code split the line with line.replace(" ", "").split(","): every lemma, no spaces
        defs = "".join(f"{syn.definition()} . " for word in line.replace(" ", "").split(",")
                       for syn in wn.synsets(word))
        out.append(f"{line}\n{defs}")
    return out


def all_sense_texts(label_space: str) -> list[str]:
    """The released O(v) text of each class index: its lemma line, the line with spaces for underscores, and
    the definitions of every sense of every lemma (the released ZSARDataset's name + " " + description)."""
    return [f"{line} {line.replace('_', ' ')} {defs}" for line, defs in _released_wordnet(label_space)]


def released_positive_texts(label_space: str) -> list[str]:
    """The released object-positive source of each class index, lower-cased: its lemma line, then "." and the
    line with the definitions of every sense of every lemma; `definition_fragments` splits it on ".", so the
    line alone is one piece (as the released code split the name and the description each)."""
    return [f"{line}.{line} {defs}".lower() for line, defs in _released_wordnet(label_space)]


def definition_fragments(text: str, min_words: int = FRAGMENT_MIN_WORDS, max_words: int = FRAGMENT_MAX_WORDS
                         ) -> list[str]:
    """The released object-positive candidates of one all-sense text: its pieces split on ".", those of more
    than `min_words` words, each cut to its first `max_words` words (paper §3.4 object positives, released)."""
    out = []
    for piece in text.split("."):
        words = piece.strip().split(" ")  # the released count: split on single spaces, as it did
        if len(words) > min_words:
            out.append(" ".join(words[:max_words]))
    return out


def released_video_objects(indices: np.ndarray, scores: np.ndarray, k: int = 3, rows: int = RELEASED_ROWS
                           ) -> list[int]:
    """The released O(v) classes (Eq. 9): top-k by the mean over the first `rows` rows, zero padding included.

    The released code averaged full logits; a feature store keeps each second's top-K softmax scores, so here
    a class absent from a second's top-K (and every padding row) counts 0. Over a fixed 16-row divisor the
    mean ranks as the sum does; ties go to the lower class id.
    """
    indices, scores = np.asarray(indices)[:rows], np.asarray(scores, dtype=np.float64)[:rows]
    if len(indices) == 0 or k <= 0:
        return []
    totals = np.zeros(int(indices.max()) + 1)
    np.add.at(totals, indices.ravel(), scores.ravel())
    mean = totals / rows  # (C,) padding rows add 0 to the numerator but count in the divisor
    present = np.unique(indices)
    ranked = present[np.lexsort((present, -mean[present]))]
    return [int(c) for c in ranked[:k]]


def released_object_text(classes: list[int], texts: list[str]) -> str:
    """The released O(v) sentence: the all-sense texts of the video's objects joined into one text, split on
    ".", each piece cut to its first 300 words and the pieces joined by spaces (so the periods are gone)."""
    joined = " ".join(texts[c] for c in classes)
    return " ".join(" ".join(p.split(" ")[:RELEASED_PIECE_WORDS]) for p in joined.split("."))
