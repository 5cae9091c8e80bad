"""Eqs. 8-9 over a test set: every video and every class prototype of a ClassDataset embedded in the space a
method scores in (CEZSAR's joint space, the objects-only baseline's SBERT space, CLIP's), and their cosine
scores; the evaluation protocols (`cezsar.evaluation.protocols`) score runs of class subsets from these.

The released code's class descriptions (docs/fidelity.md "class descriptions") are built here too:
`clean_description` and `pick_released_descriptions`.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import contractions
import numpy as np

from cezsar.evaluation import baselines, clip_baseline as cb, prototypes, zsar
from cezsar.encoders.objects import all_sense_texts, object_sentences, released_object_text, released_video_objects
from cezsar.evaluation.zsar import cosine_scores


RELEASED_MIN_WORDS = 3  # the released description sentences: at least 3 words (zsar.py min_len) ...
RELEASED_MAX_WORDS = 300  # ... cut to their first 300 words (max_len)


def clean_description(sentence: str) -> str:
    """The released description cleaning (dataset.py `preprocess_sentence` after `contractions.fix`): lower-cased,
    contractions expanded by the `contractions` package (its slang and leftovers too: "someone's" -> "someone
    is"), accents folded to ASCII, `. , ! ?` kept with a space on either side, every other run of non-letters
    one space, cut to the first 300 words."""
    text = contractions.fix(sentence.lower().strip())
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower().strip()) if unicodedata.category(c) != "Mn")
    text = re.sub(r"([?.!,¿])", r" \1 ", text)  # a space between a word and the punctuation after it
    text = re.sub(r"[ ]+", " ", text)
    text = re.sub(r"[^a-zA-Z?.!,¿]+", " ", text).strip()  # letters and . , ! ? ¿ only
    return " ".join(text.split(" ")[:RELEASED_MAX_WORDS])


def pick_released_descriptions(classes: Sequence[str], descriptions: dict[str, list[str]], encode_fn: Any
                          ) -> list[str]:
    """Per class, the released code's prototype sentence (dataset.py `load_class_sentences`): each description
    sentence of at least 3 words (counted after the contractions are expanded) cleaned (`clean_description`),
    repeats dropped, then the one most similar (SBERT cosine) to the class name; ties to the first. The
    released code also split each line of its .txt files into sentences with nltk's punkt; here each given
    sentence is one candidate (docs/fidelity.md "class descriptions")."""
    cleaned = []
    for c in classes:
        kept = [clean_description(x) for x in descriptions[c]
                if len(contractions.fix(x.lower().strip()).split(" ")) >= RELEASED_MIN_WORDS]
        kept = list(dict.fromkeys(kept))  # the released code's set(), in a reproducible order
        if not kept:
            raise ValueError(f"class {c!r}: no description sentence of at least {RELEASED_MIN_WORDS} words "
                             "(released_descriptions)")
        cleaned.append(kept)
    flat = [x for xs in cleaned for x in xs]
    emb = np.asarray(encode_fn(list(classes) + flat), np.float32)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    names, sents = emb[:len(classes)], emb[len(classes):]
    out, at = [], 0
    for i, xs in enumerate(cleaned):
        sim = sents[at:at + len(xs)] @ names[i]  # (n_c,)
        out.append(xs[int(np.argmax(sim))])
        at += len(xs)
    return out


def embed_dataset(dataset: Any, store: Any, descriptions: dict[str, list[str]], encoder: Any,
                  method: str = "cezsar", model: Any = None, alpha: float = 0.8, beta: float = 0.2,
                  normalize_terms: bool = True, n_objects: int = 3, max_seconds: float | None = None,
                  all_sentences: bool = False, skip_missing: bool = False, released_objects: bool = False,
                  released_descriptions: bool = False, clip: Any = None, prompts: str = "names",
                  template: str | None = None, progress: bool = False) -> dict:
    """Videos and class prototypes of a ClassDataset in the space a method scores in.

    method "cezsar": VidE (Eq. 9; VE only when beta = 0) and SEM prototypes (Eq. 6) from `model`;
    method "objects": the SBERT space of the objects-only baseline (`baselines.sbert_space`);
    method "clip": CLIP's space (`clip_baseline`): frame-average videos of a CLIP feature store and the text
    embeddings of `prompts` ("names" in `template`, or "descriptions") from `clip` (a `clip.ClipEncoder`);
    `encoder` is not used then.
    Validates first: a class without a description and a video without features are errors naming them
    (with `skip_missing`, videos without features are left out and listed under "skipped").
    Released switches (docs/fidelity.md): `released_objects` = O(v) as the released code built it (top-3 by
    the mean over the first 16 rows, padding included, the all-sense texts joined into one text, encoded once);
    `released_descriptions` = one cleaned description per class, the one closest to the class name.
    Returns {"videos" (V, d), "prototypes" (C, d), "scores" (V, C), "labels" (V,), "video_ids", "classes",
    "skipped"}.
    """
    classes = list(dataset.classes)
    no_desc = [c for c in classes if not descriptions.get(c)]
    if no_desc:
        raise ValueError(f"{len(no_desc)} class(es) have no description: {no_desc[:10]}")
    col = {c: i for i, c in enumerate(classes)}
    bad_label = [(v.video_id, v.label) for v in dataset.videos if v.label not in col]
    if bad_label:
        raise ValueError(f"video(s) labelled with a class outside the dataset: {bad_label[:5]}")
    have = set(store.ids)
    missing = [v.video_id for v in dataset.videos if v.video_id not in have]
    if missing and not skip_missing:
        raise ValueError(f"{len(missing)} video(s) have no features in {getattr(store, 'root', 'the store')}: "
                         f"{missing[:10]} (extract them, or pass skip_missing to leave them out and list them)")
    videos = [v for v in dataset.videos if v.video_id in have]
    if not videos:
        raise ValueError(f"none of the {len(dataset.videos)} videos of {dataset.kind} has features in the store")
    ids = [v.video_id for v in videos]
    labels = np.array([col[v.label] for v in videos], np.int64)
    if method == "clip":
        return _embed_clip(classes, descriptions, store, ids, labels, missing, clip, prompts, template,
                           max_seconds, all_sentences)
    if released_descriptions:
        sents = [[x] for x in pick_released_descriptions(classes, descriptions, encoder.encode)]
    else:
        sents = [descriptions[c] if all_sentences else descriptions[c][:1] for c in classes]
    per_class = prototypes.encode_per_class(encoder.encode, sents)  # C arrays (n_c, text_dim)
    desc_emb = per_class if all_sentences else np.concatenate(per_class)  # (C, text_dim): one sentence each
    need_objects = method == "objects" or beta != 0
    obj_ids = sentences = None
    if need_objects and released_objects:
        texts = all_sense_texts(store.label_space)
        sentences = []  # one joined text per video, deduplicated below by object_sentence_embeddings
        for vid in ids:
            obj = store.objects(vid)
            if obj is None:
                raise ValueError(f"video {vid!r} has no object file in the feature store; evaluate with beta=0")
            sentences.append(released_object_text(released_video_objects(obj[0], obj[1], n_objects), texts))
        obj_ids = [[i] for i in range(len(ids))]
    elif need_objects:
        obj_ids = zsar.video_objects(store, ids, n_objects, max_seconds)
        sentences = object_sentences(store.label_space)
    if method == "objects":
        space = baselines.sbert_space(obj_ids, sentences, desc_emb, encoder.encode)
        vid, proto = space["videos"], space["prototypes"]
    elif method == "cezsar":
        if model is None:
            raise ValueError("method 'cezsar' needs a trained model (a checkpoint)")
        model.eval()
        max_len = getattr(getattr(model, "cfg", None), "max_len", 15)
        # normalize_terms=False is the released raw sum all the way down: no unit-norm windows or objects either
        ve = zsar.encode_videos(model, store, ids, max_len=max_len, max_seconds=max_seconds,
                                normalize=normalize_terms, progress=progress)
        obj_se = zsar.object_embeddings(model, obj_ids, sentences, encoder.encode,
                                        normalize=normalize_terms) if need_objects else None
        vid = zsar.video_embedding(ve, obj_se, alpha, beta, normalize_terms)
        proto = prototypes.class_prototypes(desc_emb, prototypes.through_sem(model))
    else:
        raise ValueError(f"unknown method {method!r}: use 'cezsar', 'objects' or 'clip'")
    settings = {"alpha": alpha, "beta": beta, "normalize_terms": normalize_terms, "n_objects": n_objects,
                "max_seconds": max_seconds, "all_sentences": all_sentences}
    if released_objects or released_descriptions:  # recorded only when on: default results keep their keys
        settings.update(released_objects=released_objects, released_descriptions=released_descriptions)
    return {"videos": vid, "prototypes": proto, "scores": zsar.cosine_scores(vid, proto), "labels": labels,
            "video_ids": ids, "classes": classes, "skipped": missing, "settings": settings}


def _embed_clip(classes: list[str], descriptions: dict[str, list[str]], store: Any, ids: list[str],
                labels: np.ndarray, missing: list[str], clip: Any, prompts: str, template: str | None,
                max_seconds: float | None, all_sentences: bool) -> dict:
    """`embed_dataset` for method "clip": the CLIP frame-average baseline (`clip_baseline`)."""

    if clip is None:
        raise ValueError("method 'clip' needs a CLIP model (clip=cezsar.encoders.clip.clip_encoder(...))")
    if store.dim != clip.dim:
        raise ValueError(f"{getattr(store, 'root', 'the store')}: {store.dim}-d features, but {clip.name} embeds "
                         f"in {clip.dim}-d: extract the test videos with --backbone {clip.name}")
    template = template or cb.TEMPLATE
    texts = cb.prompts_for(classes, descriptions, prompts, template, all_sentences)
    vid = cb.video_embeddings(store, ids, max_seconds)  # (V, D)
    # unit prototypes: each class's prompt embeddings normalised, averaged, normalised (the CLIP convention)
    proto = zsar.l2_normalize(prototypes.class_prototypes(prototypes.encode_per_class(clip.encode_text, texts)))
    settings = {"max_seconds": max_seconds, "all_sentences": all_sentences, "prompts": prompts,
                "template": template if prompts == "names" else None, "clip_model": clip.model_id,
                "video_embedding": "mean of L2-normalised frame embeddings, normalised"}
    return {"videos": vid, "prototypes": proto, "scores": cosine_scores(vid, proto), "labels": labels,
            "video_ids": ids, "classes": classes, "skipped": missing, "settings": settings}
