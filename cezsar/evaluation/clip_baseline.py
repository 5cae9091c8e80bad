"""The CLIP frame-average baseline: a frozen image-text model applied frame by frame (docs/decisions.md §14).

No training. A video is the mean of its per-second CLIP image embeddings, each L2-normalised first (so every
second weighs the same, whatever its norm), the mean normalised again; a class is the CLIP text embedding of a
prompt; a video takes the class of the nearest prompt by cosine (1-NN, as Eq. 8 does for CEZSAR). Two prompt
sets, each a row of Tables 1/2:

- "names": the class name in a recorded template, `TEMPLATE` = "a photo of a person {}." (one of CLIP's
  own UCF-101 prompts; the frames are photos of a person acting). One template, no ensemble: the published
  frame-average numbers differ in exactly such choices, so the one used is written into every result.
- "descriptions": our class descriptions (the first sentence, or the mean of all sentences' normalised
  embeddings with `all_sentences`), the same text CEZSAR's prototypes use, cut to CLIP's 77 tokens.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cezsar.evaluation.zsar import l2_normalize

TEMPLATE = "a photo of a person {}."
PROMPT_SETS = ("names", "descriptions")
VARIANTS = {"names": "CLIP-names", "descriptions": "CLIP-descriptions"}  # results' "variant" per prompt set


def video_embedding(stack: np.ndarray) -> np.ndarray:
    """(T, D) frame embeddings -> (D,) unit vector: each frame normalised, the mean normalised."""
    frames = l2_normalize(np.asarray(stack, np.float32))  # (T, D)
    return l2_normalize(frames.mean(0, keepdims=True))[0]  # (D,)


def video_embeddings(store: Any, video_ids: Sequence[str], max_seconds: float | None = None) -> np.ndarray:
    """(V, D) frame-average embeddings of the videos of a CLIP feature store (the first `max_seconds` rows)."""
    rows = []
    for vid in video_ids:
        x = store.load(vid)  # (T, D)
        if max_seconds is not None:
            x = x[:max(1, int(max_seconds))]
        rows.append(video_embedding(x))
    return np.stack(rows) if rows else np.zeros((0, store.dim), np.float32)


def prompts_for(classes: Sequence[str], descriptions: dict[str, list[str]], prompts: str = "names",
                template: str = TEMPLATE, all_sentences: bool = False) -> list[list[str]]:
    """The prompt texts of each class: one templated name, or its description sentence(s)."""
    if prompts == "names":
        if "{}" not in template:
            raise ValueError(f"template {template!r} has no '{{}}' where the class name goes")
        return [[template.format(c)] for c in classes]
    if prompts == "descriptions":
        return [list(descriptions[c]) if all_sentences else list(descriptions[c][:1]) for c in classes]
    raise ValueError(f"unknown prompt set {prompts!r}: use one of {', '.join(PROMPT_SETS)}")
