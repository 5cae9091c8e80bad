"""Class prototypes, SE(z) of Eq. 8 (paper §3.5): one function from a sentence encoder and each class's
sentences to a (C, d) prototype matrix, used by every caller — the evaluation protocols (`cezsar.evaluation.protocols`),
the objects-only baseline (`cezsar.evaluation.baselines`), `cezsar classify` and the figures.

The space is the caller's choice: `project=None` keeps the sentence encoder's space (the "O" baseline scores in
SBERT space); `project=through_sem(model)` adds the trained SEM of Eq. 6 (CEZSAR). A class with one sentence
(the paper's setting) is that sentence's vector; a class with several is the mean of their L2-normalised
vectors (docs/decisions.md: description sets).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from cezsar.evaluation.zsar import l2_normalize, torch_encode


def encode_per_class(encode: Callable[[list[str]], np.ndarray], sentences: Sequence[Sequence[str]]
                     ) -> list[np.ndarray]:
    """Every class's sentences through `encode` in one call: C float32 arrays (n_c, d)."""
    flat = [s for ss in sentences for s in ss]
    emb = np.asarray(encode(flat), np.float32)  # (sum n_c, d)
    offs = np.cumsum([0] + [len(ss) for ss in sentences])
    return [emb[offs[i]:offs[i + 1]] for i in range(len(sentences))]


def through_sem(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Eq. 6 as an array function: sentence vectors (N, text_dim) -> SE (N, 128) through `model.encode_text`."""
    return lambda x: torch_encode(model.encode_text, x)


def class_prototypes(per_class: np.ndarray | Sequence[np.ndarray],
                     project: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """SE(z) of Eq. 8 for C classes.

    Args:
        per_class: (C, d) one sentence vector per class (the paper's setting), or C arrays (n_c, d).
        project: the space to score in: None = the sentence encoder's own (then one-sentence prototypes are
            L2-normalised), `through_sem(model)` = the SEM of Eq. 6 (one-sentence prototypes as it outputs them;
            `zsar.cosine_scores` normalises).
    Returns:
        (C, d') float32 prototypes; several sentences give the mean of their L2-normalised (projected) vectors.
    """
    if isinstance(per_class, np.ndarray) and per_class.ndim == 2:
        return project(per_class) if project is not None else l2_normalize(per_class)
    arrays = [np.atleast_2d(np.asarray(a, np.float32)) for a in per_class]
    empty = [i for i, a in enumerate(arrays) if a.shape[0] == 0]
    if empty:
        raise ValueError(f"class_prototypes: class index(es) {empty} have no description sentence")
    rows = np.concatenate(arrays)  # (sum n_c, d)
    unit = l2_normalize(project(rows) if project is not None else rows)  # (sum n_c, d')
    offsets = np.cumsum([0] + [a.shape[0] for a in arrays])
    return np.stack([unit[offsets[i]:offsets[i + 1]].mean(0) for i in range(len(arrays))])  # (C, d')
