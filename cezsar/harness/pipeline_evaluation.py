"""Notebooks 04 and 05's stages (paper §5): the objects-only baseline, CEZSAR VE and VE + O (and the CLIP
baselines) scored on a test set under its protocols, per training seed, and the τ ablation
(docs/interfaces.md). The scoring itself is `cezsar.evaluation.protocols` (Eqs. 8-9).
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from cezsar.evaluation import protocols as P
from cezsar.formats import datasets
from cezsar.evaluation.dataset_embedding import embed_dataset
from cezsar.training.checkpoints import load_checkpoint
from cezsar.evaluation.classify import checkpoint_text_encoder
from cezsar.encoders.clip import clip_encoder
from cezsar.evaluation.clip_baseline import VARIANTS as CLIP_BASELINE_VARIANTS
from cezsar.config import EvalConfig
from cezsar.encoders.features import ReadOnce
from cezsar.harness.layout import Layout, uses_objects
from cezsar.harness.params import Settings, stage_configs
from cezsar.harness.pipeline import check_test_features
from cezsar.harness.pipeline_mining import mine_triplets
from cezsar.harness.pipeline_training import ablation_taus, train_taus
from cezsar.evaluation.protocols import PROTOCOLS
from cezsar.reporting.results import TRAINED_METHODS, protocol_record, seed_record
from cezsar.reporting.tables import COLUMNS, FRACTIONS
from cezsar.encoders.text import SentenceEncoder

# the CLIP baseline's table rows (docs/decisions.md §14): variant -> prompt set
CLIP_VARIANTS = {variant: prompts for prompts, variant in CLIP_BASELINE_VARIANTS.items()}


def eval_config(s: Settings) -> EvalConfig:
    """The EvalConfig of a parameter set (switches included)."""
    return dataclasses.replace(stage_configs(s.values)["eval"], runs=s.runs)


def table_protocols(kind: str, n_classes: int) -> dict[str, str]:
    """Table column -> protocol. Real data: the paper's protocols; a smaller dataset (SynthActions): the same
    fractions of its classes (at least 2 classes per run)."""

    real = {int(p.split("/")[1]) for p in PROTOCOLS[kind]}
    if n_classes in real:
        return {c: f"0/{c}" for c in COLUMNS[kind]}
    return {c: ("0/all" if f == 1.0 else f"0/{max(2, round(f * n_classes))}")
            for c, f in zip(COLUMNS[kind], FRACTIONS[kind])}


def methods_for(lay: Layout, s: Settings) -> tuple[str, ...]:
    """The rows a run can compute: O, VE and VE + O with objects, VE alone without."""
    return ("O", "VE", "VE+O") if uses_objects(lay, s) else ("VE",)


def evaluate_methods(lay: Layout, kind: str, checkpoint: Path | None, s: Settings,
                     protocols: dict[str, str] | None = None, methods: tuple[str, ...] | None = None) -> dict:
    """Score the objects-only baseline, CEZSAR VE and CEZSAR VE+O on one test set under its protocols.

    Returns {variant: {column: protocol result}} plus "_emb" (the embedded data, for the figures). With
    `skip_missing`, test videos without features are left out and counted in every result."""

    ecfg = eval_config(s)
    methods = methods_for(lay, s) if methods is None else methods
    ds = datasets.load_dataset(kind, lay.roots[kind])
    desc = datasets.read_descriptions(lay.descriptions[kind])
    store = ReadOnce(lay.store(kind), float(os.environ.get("CEZSAR_EVAL_CACHE_GB", "4")))
    model, meta = load_checkpoint(checkpoint) if checkpoint else (None, {})
    if checkpoint:  # test vectors of the training features' kind only (docs/fidelity.md "feature manifests")
        check_test_features(store, meta, lay.folders(kind)[0])
    # the set's text model, checked against the one the checkpoint's SEM was trained with
    enc = checkpoint_text_encoder(meta, s.text_model, str(checkpoint)) if checkpoint else SentenceEncoder(s.text_model)
    protocols = table_protocols(kind, len(ds.classes)) if protocols is None else protocols
    out: dict = {"_emb": {}}
    clip = None
    for variant in methods:
        trained_ve = variant in ("VE", "CLIP+VE")  # VE alone (Eq. 9 with beta 0); CLIP+VE: VE on CLIP features
        method, beta = ("objects", 0.0) if variant == "O" else ("cezsar", 0.0 if trained_ve else ecfg.beta)
        prompts = CLIP_VARIANTS.get(variant)
        if prompts is not None:  # the CLIP baseline: CLIP's text tower, the one that made these features

            method, beta = "clip", 0.0
            clip = clip or clip_encoder(store.backbone, device=s.device)
        emb = embed_dataset(ds, store, desc, enc, method=method, model=model, alpha=ecfg.alpha, beta=beta,
                              normalize_terms=ecfg.normalize_terms, n_objects=ecfg.n_objects,
                              max_seconds=ecfg.max_seconds, skip_missing=bool(s.skip_missing),
                              released_objects=ecfg.released_objects,
                              released_descriptions=ecfg.released_descriptions, clip=clip, prompts=prompts or "names")
        out["_emb"][variant] = emb
        out[variant] = {}
        for col, proto in protocols.items():
            res = P.run_evaluation(ds, store, desc, enc, proto, method=method, model=model, runs=ecfg.runs,
                                   out_dir=lay.work, emb=emb, std_ddof=ecfg.std_ddof, alpha=ecfg.alpha, beta=beta,
                                   normalize_terms=ecfg.normalize_terms, n_objects=ecfg.n_objects,
                                   max_seconds=ecfg.max_seconds)
            out[variant][col] = protocol_record(
                res, checkpoint=checkpoint if checkpoint and method == "cezsar" else None,
                trained_on=meta.get("trained_on") if method == "cezsar" else None, descriptions=lay.descriptions[kind],
                dataset_root=lay.roots[kind], features=lay.folders(kind)[0],
                text_model=clip.name if method == "clip" else s.text_model,
                text_model_id=clip.name if method == "clip" else enc.model_id, backbone=store.backbone)
    return out


def evaluate_seeds(lay: Layout, kind: str, checkpoints: dict[int, Path | None], s: Settings,
                   protocols: dict[str, str] | None = None, methods: tuple[str, ...] | None = None) -> dict:
    """`evaluate_methods` over training seeds: the rows that do not depend on training (O, the CLIP baselines)
    once, the trained rows (VE, VE + O) once per seed's checkpoint, each protocol's records joined by
    `results.seed_record`. Returns {variant: {column: record}}, "_emb" (seed `first`'s embedded data) and
    "_seed_emb" ({variant: {seed: embedded data}} of the trained rows)."""
    methods = methods_for(lay, s) if methods is None else methods
    seeds = list(checkpoints)
    first = checkpoints[seeds[0]]
    trained = tuple(m for m in methods if m in TRAINED_METHODS)
    fixed = tuple(m for m in methods if m not in TRAINED_METHODS)
    out = evaluate_methods(lay, kind, first, s, protocols, fixed) if fixed else {"_emb": {}}
    per = {k: evaluate_methods(lay, kind, checkpoints[k], s, protocols, trained) for k in seeds} if trained else {}
    out["_seed_emb"] = {}
    for v in trained:
        out["_emb"][v] = per[seeds[0]]["_emb"].get(v)
        out["_seed_emb"][v] = {k: per[k]["_emb"].get(v) for k in seeds}
        out[v] = {col: seed_record([per[k][v][col] for k in seeds], seeds) for col in per[seeds[0]][v]}
    return out


def tau_ablation(lay: Layout, s: Settings) -> dict:
    """Notebook 04 (paper §5): for each τ, mine, train every training seed and score VE + O (VE without objects)
    on the UCF-form set, every class; each row holds every seed's accuracy."""
    taus = ablation_taus(s)
    variant = "VE+O" if uses_objects(lay, s) else "VE"

    # every class, as Table 1's first column names it (0/101 on UCF-101, whose split files are tracked)
    every_class = next(iter(table_protocols("ucf101", len(datasets.load_dataset("ucf101", lay.roots["ucf101"])
                                                           .classes)).values()))
    t0 = time.perf_counter()
    trained = train_taus(lay, s, taus)  # side by side on a CPU; finished runs (notebook 03's) are reused
    train_seconds = (time.perf_counter() - t0) / len(taus)
    rows = []
    for tau in taus:
        t0 = time.perf_counter()
        print(f"τ = {tau}: evaluating", flush=True)
        mined = mine_triplets(lay, s, tau)  # the file train_taus mined: its summary
        hist = trained[tau]
        res = evaluate_seeds(lay, "ucf101", {k: Path(c) for k, c in zip(hist["seeds"], hist["checkpoints"])}, s,
                             protocols={"all": every_class}, methods=(variant,))
        r = res[variant]["all"]
        rows.append({"tau": tau, "triplets": mined.get("triplets"), "top1": r["top1_mean"],
                     "top5": r["top5_mean"], "seeds": r["seeds"]["seeds"], "top1_seeds": r["seeds"]["top1"],
                     "top5_seeds": r["seeds"]["top5"], "top1_seed_std": r["seeds"]["top1_std"],
                     "n_classes": r["n_classes"], "variant": variant,
                     "seconds": train_seconds + time.perf_counter() - t0})
    return {"dataset": "ucf101", "protocol": every_class, "mode": lay.mode, "variant": variant, "rows": rows}

