"""The objects-only baseline of Estevam et al. [9] (Tables 1/2, row "O") and the plain SBERT space.

No training and no joint embedding: a video is the SBERT embedding of its top-k recognised objects'
WordNet sentences, a class is the SBERT embedding of its description, and a video takes the class of the
nearest prototype by cosine (Eq. 8 with SE = SBERT).

Decision: a video's vector is the mean of the L2-normalised SBERT embeddings of its k object sentences
(each "lemma: definition" encoded on its own), not one embedding of the sentences joined. It is the same
O(v) aggregation CEZSAR's Eq. 9 uses here (`zsar.object_embeddings`), so the "O" row and the VE+O row
differ only in the learned space; and averaging unit vectors keeps every object's weight equal, whereas a
joined text is dominated by whichever definition SBERT attends to and is cut at SBERT's token limit.

`sbert_space` returns the video and prototype vectors themselves, for the Fig. 1/3 comparison (t-SNE,
confusion matrices) of the SBERT space against CEZSAR's joint space.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cezsar.evaluation.prototypes import class_prototypes
from cezsar.evaluation.zsar import cosine_scores, l2_normalize, mean_rows, object_sentence_embeddings


def objects_video_embeddings(obj_ids: Sequence[Sequence[int]], sentences: Sequence[str], encode_fn: Any) -> np.ndarray:
    """A video in SBERT space: the mean of its object sentences' normalised SBERT embeddings, (V, d).

    Args:
        obj_ids: per video, its top-k object class ids (`zsar.video_objects`).
        sentences: "lemma: definition" per class index of the backbone's label space.
        encode_fn: list[str] -> (N, d), e.g. `SentenceEncoder.encode` (cached on disk).
    """
    table, rows = object_sentence_embeddings(obj_ids, sentences, encode_fn)
    return mean_rows(table, rows)


def sbert_space(obj_ids: Sequence[Sequence[int]], sentences: Sequence[str], desc_emb: np.ndarray | Sequence[np.ndarray],
                encode_fn: Any) -> dict:
    """The objects-only representation for plotting: {"videos" (V, d), "prototypes" (C, d)}, unit rows."""
    return {"videos": l2_normalize(objects_video_embeddings(obj_ids, sentences, encode_fn)),
            "prototypes": l2_normalize(class_prototypes(desc_emb))}


def objects_only_scores(obj_ids: Sequence[Sequence[int]], sentences: Sequence[str],
                        desc_emb: np.ndarray | Sequence[np.ndarray], encode_fn: Any) -> np.ndarray:
    """Estevam et al. [9] "O": cosine of each video's object embedding to each class description, (V, C)."""
    space = sbert_space(obj_ids, sentences, desc_emb, encode_fn)
    return cosine_scores(space["videos"], space["prototypes"])
