"""Zero-shot classification (paper §3.5, Eqs. 8-9): video embeddings, cosine 1-NN, metrics (the class
prototypes SE(z) of Eq. 8 are `cezsar.evaluation.prototypes`).

The core is pure functions over arrays (`video_embedding`, `cosine_scores`, `predict`, `metrics`); the thin glue below them turns a FeatureStore into VE(v) and SE(O(v)) with a JointEmbedder.

Decisions (docs/fidelity.md, "eval" and "objects at eval" rows):
- VidE = alpha * VE + beta * SE(O): each term is L2-normalised before the sum by default, because VE and SE
  have different norms after their ReLU heads and an unnormalised sum lets the larger one dominate whatever
  alpha/beta say; `normalize_terms=False` is the released code's plain sum.
- SE(O(v)) is the mean of the SEM outputs of the top-3 object sentences ("lemma: definition"), each
  sentence encoded on its own: training (§3.4) feeds the SEM single object sentences as positives, so one
  sentence per object stays in the distribution the SEM learned, whereas the three joined into one text
  would not. The mean is taken over L2-normalised SEM outputs so no object outweighs another.
- Clips longer than `max_len` (15 s, paper §4) are cut into consecutive non-overlapping 15-s windows; VE(v)
  is the mean of the windows' L2-normalised embeddings weighted by their length in seconds, so the whole
  clip counts (EvalConfig.max_seconds=None); `max_seconds=16` reproduces the released first-16-s cut.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cezsar.encoders.objects import window_objects
from cezsar.base.progress import progress_bar

EPS = 1e-12


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero instead of becoming NaN)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), EPS)


def torch_encode(fn, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Run a module method over numpy rows in batches without gradients."""

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            t = torch.as_tensor(np.ascontiguousarray(x[i:i + batch]), dtype=torch.float32)
            out.append(fn(t).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def video_embedding(ve: np.ndarray, obj_se: np.ndarray | None = None, alpha: float = 0.8, beta: float = 0.2,
                    normalize_terms: bool = True) -> np.ndarray:
    """VidE(v) = alpha * VE(v) + beta * SE(O(v)), Eq. 9.

    Args:
        ve: (V, 128) visual embeddings VE(v).
        obj_se: (V, 128) object sentence embeddings SE(O(v)), or None (then VidE = VE, as with beta = 0).
        normalize_terms: L2-normalise each term before the sum (default, docs/fidelity.md); False = released sum.
    """
    ve = np.asarray(ve, np.float32)
    if obj_se is None or beta == 0:
        return l2_normalize(ve) if normalize_terms else ve
    obj_se = np.asarray(obj_se, np.float32)
    if obj_se.shape != ve.shape:
        raise ValueError(f"video_embedding: VE {ve.shape} and SE(O) {obj_se.shape} differ in shape")
    if normalize_terms:
        ve, obj_se = l2_normalize(ve), l2_normalize(obj_se)
    return alpha * ve + beta * obj_se


def cosine_scores(vid: np.ndarray, proto: np.ndarray) -> np.ndarray:
    """Sim of Eq. 8: cosine similarity of every video to every class prototype, (V, C)."""
    return l2_normalize(vid) @ l2_normalize(proto).T  # (V, d) @ (d, C) -> (V, C)


def predict(scores: np.ndarray) -> np.ndarray:
    """Eq. 8: the nearest prototype (cosine 1-NN); ties go to the lowest class index."""
    return np.asarray(scores).argmax(axis=1)


def true_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How many classes beat each video's true class, (V,) int: 0 = correct under Eq. 8's argmax.

    A class beats the truth when it scores higher, or scores the same with a lower index (argmax keeps the
    first maximum), so rank 0 is exactly `predict(scores) == labels` and rank < k is top-k.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels, np.int64)
    true = scores[np.arange(len(labels)), labels][:, None]  # (V, 1)
    rank = np.count_nonzero(scores > true, axis=1)  # (V,)
    eq = scores == true  # (V, C); exact float ties are rare, so handle them only on the rows that have one
    tied = np.flatnonzero(np.count_nonzero(eq, axis=1) > 1)
    if len(tied):
        cols = np.arange(scores.shape[1])[None, :]
        rank[tied] += (eq[tied] & (cols < labels[tied, None])).sum(1)
    return rank


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Whether each video's true class is among its k best-scoring classes, (V,) bool (ties as argmax)."""
    return true_class_rank(scores, labels) < k


def metrics(scores: np.ndarray, labels: np.ndarray, classes: Sequence[str] | None = None) -> dict:
    """Top-1 / top-5 accuracy over videos, confusion matrix and per-class accuracy (stable key names).

    Args:
        scores: (V, C) similarities; labels: (V,) true class index into the C columns.
    Returns:
        {"top1", "top5", "n_videos", "n_classes", "confusion" (C x C list, rows = true, cols = predicted),
         "per_class" {class: accuracy or None when the class has no video}, "classes"}.
        Top-5 is 1.0 by definition when C <= 5.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.int64)
    v, c = scores.shape
    if len(labels) != v:
        raise ValueError(f"metrics: {v} score rows but {len(labels)} labels")
    if v and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"metrics: labels must lie in [0, {c}); got {labels.min()}..{labels.max()}")
    names = list(classes) if classes is not None else [str(i) for i in range(c)]
    pred = predict(scores)
    conf = np.zeros((c, c), dtype=np.int64)
    np.add.at(conf, (labels, pred), 1)
    support = conf.sum(1)
    per_class = {n: (float(conf[i, i] / support[i]) if support[i] else None) for i, n in enumerate(names)}
    return {
        "top1": float((pred == labels).mean()) if v else float("nan"),
        "top5": float(topk_correct(scores, labels, 5).mean()) if v else float("nan"),
        "n_videos": int(v),
        "n_classes": int(c),
        "classes": names,
        "confusion": conf.tolist(),
        "per_class": per_class,
    }


# --- glue: FeatureStore -> VE(v), O(v) ---------------------------------------------------------------------


def clip_windows(n_seconds: int, max_len: int = 15, max_seconds: float | None = None) -> list[tuple[int, int]]:
    """Consecutive non-overlapping windows [start, end) of at most `max_len` rows covering the clip."""
    t = n_seconds if max_seconds is None else min(n_seconds, int(max_seconds))
    return [(s, min(s + max_len, t)) for s in range(0, t, max_len)]


def encode_videos(model: Any, store: Any, video_ids: Sequence[str], max_len: int = 15,
                  max_seconds: float | None = None, batch: int = 256, device: str = "cpu",
                  normalize: bool = True, progress: bool = False) -> np.ndarray:
    """VE(v) of Eq. 9 for each video id: windows of <= max_len features through `model.encode_video`.

    Windows of all videos are padded to (B, max_len, D) with a mask (True = valid) and encoded in batches;
    a video's VE is the length-weighted mean of its windows' L2-normalised embeddings (module docstring).
    `normalize=False` averages the raw window embeddings instead (the released code's unnormalised Eq. 9;
    a clip of one window then gets the VEM output itself). Returns (V, 128) float32. A video with no
    features is an error naming it. `progress`: a bar over the videos read (reading the stacks dominates).
    """

    wins: list[np.ndarray] = []
    owner: list[int] = []
    with progress_bar(len(video_ids), "read test stacks", unit="video", enabled=progress) as bar:
        for i, vid in enumerate(video_ids):
            x = store.load(vid)  # (T, D)
            spans = clip_windows(len(x), max_len, max_seconds)
            if not spans:
                raise ValueError(f"encode_videos: video {vid!r} has no feature rows")
            for s, e in spans:
                wins.append(x[s:e])
                owner.append(i)
            bar.update(1)
    dim = wins[0].shape[1] if wins else 0
    emb = []
    with torch.no_grad():
        for b in range(0, len(wins), batch):
            chunk = wins[b:b + batch]
            x = np.zeros((len(chunk), max_len, dim), np.float32)  # (B, T, D), zero padded
            mask = np.zeros((len(chunk), max_len), bool)  # (B, T) True = valid
            for j, w in enumerate(chunk):
                x[j, :len(w)] = w
                mask[j, :len(w)] = True
            out = model.encode_video(torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device))
            emb.append(out.float().cpu().numpy())
    win_emb = np.concatenate(emb) if emb else np.zeros((0, 0), np.float32)  # (W, 128)
    if normalize:
        win_emb = l2_normalize(win_emb)
    weights = np.array([len(w) for w in wins], np.float32)
    owner_arr = np.asarray(owner, np.int64)  # int even when there is no video
    out = np.zeros((len(video_ids), win_emb.shape[1] if len(win_emb) else 0), np.float32)
    np.add.at(out, owner_arr, win_emb * weights[:, None])
    return out / np.bincount(owner_arr, weights=weights, minlength=len(video_ids))[:, None].astype(np.float32)


def video_objects(store: Any, video_ids: Sequence[str], k: int = 3, max_seconds: float | None = None) -> list[list[int]]:
    """O(v): the top-k object classes of each whole clip (`objects.window_objects` over all its seconds).

    A video without an object file is an error naming it (Eq. 9 needs O(v) for every video).
    """

    out = []
    for vid in video_ids:
        obj = store.objects(vid)
        if obj is None:
            raise ValueError(f"video_objects: video {vid!r} has no object file (objects/{vid}.npz) in the "
                             "feature store; re-run extraction or evaluate with beta=0")
        idx, sc = obj  # (T, K), (T, K)
        end = len(idx) if max_seconds is None else min(len(idx), int(max_seconds))
        out.append([int(c) for c in window_objects(idx, sc, 0, end, k)])
    return out


def object_sentence_embeddings(obj_ids: Sequence[Sequence[int]], sentences: Sequence[str],
                               encode_fn: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """SBERT embeddings of the object sentences used by any video, encoded once.

    Args:
        obj_ids: per video, its object class ids; sentences: "lemma: definition" per class index of the
            label space (`objects.object_sentences`); encode_fn: list[str] -> (N, d) (SentenceEncoder.encode).
    Returns:
        (table (U, d) SBERT embeddings of the U distinct objects, per video an int array of rows into table).
    """
    uniq = sorted({c for ids in obj_ids for c in ids})
    bad = [c for c in uniq if c < 0 or c >= len(sentences)]
    if bad:
        raise ValueError(f"object class ids {bad[:5]} outside the label space of {len(sentences)} classes")
    row = {c: r for r, c in enumerate(uniq)}
    table = np.asarray(encode_fn([sentences[c] for c in uniq]), np.float32) if uniq else np.zeros((0, 0), np.float32)
    return table, [np.array([row[c] for c in ids], dtype=np.int64) for ids in obj_ids]


def mean_rows(table: np.ndarray, rows: Sequence[np.ndarray], normalize: bool = True) -> np.ndarray:
    """Per video, the mean of its rows of `table` (each L2-normalised first); (V, d). Empty -> error."""
    t = l2_normalize(table) if normalize else np.asarray(table, np.float32)
    empty = [i for i, r in enumerate(rows) if len(r) == 0]
    if empty:
        raise ValueError(f"mean_rows: video index(es) {empty[:5]} have no objects")
    return np.stack([t[r].mean(0) for r in rows]) if rows else np.zeros((0, t.shape[1]), np.float32)


def object_embeddings(model: Any, obj_ids: Sequence[Sequence[int]], sentences: Sequence[str],
                      encode_fn: Any, normalize: bool = True) -> np.ndarray:
    """SE(O(v)) of Eq. 9: mean of the L2-normalised SEM outputs of each video's object sentences, (V, 128).

    `normalize=False` averages the raw SEM outputs (the released code's unnormalised Eq. 9)."""
    table, rows = object_sentence_embeddings(obj_ids, sentences, encode_fn)
    sem = torch_encode(model.encode_text, table) if len(table) else table  # (U, 128)
    return mean_rows(sem, rows, normalize)
