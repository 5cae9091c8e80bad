"""The notebooks' stages, one function per notebook section (docs/interfaces.md).

Each stage takes a `Layout` (where everything lives for one parameter set) and the run's `Settings`
(cezsar.params), skips the work that is already finished and valid (features, objects, triplet files,
checkpoints, split files), and returns a dict the notebook displays. The computation itself lives in the
stage modules (features, feature_objects, mining, train, protocols); this file only wires them together.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from cezsar import config, datasets, distributed, manifest, protocols as P
from cezsar.atomic import write_json
from cezsar.backbones import get_encoder
from cezsar.captions import Captions, read_activitynet_files
from cezsar.checkpoints import load_checkpoint, training_manifest
from cezsar.clip_baseline import VARIANTS as CLIP_BASELINE_VARIANTS
from cezsar.checks import DataError, read_checkpoint
from cezsar.classify import checkpoint_text_encoder
from cezsar.clip import clip_encoder
from cezsar.config import EvalConfig, ExtractConfig, FastPathConfig, MiningConfig, ModelConfig, TrainConfig
from cezsar.devices import resolve_device
from cezsar.feature_objects import load_head, objects_from_features
from cezsar.features import ReadOnce, extract
from cezsar.layout import (TEST_SETS, Layout, _have_objects, _npy_ids, check_inputs, describe, head_weights,
                           layout_from, uses_objects)
from cezsar.mining import mine
from cezsar.params import Settings, resolve, settings, stage_configs
from cezsar.progress import progress_mode
from cezsar.protocols import PROTOCOLS
from cezsar.results import TRAINED_METHODS, protocol_record, seed_record
from cezsar.stacked import fit_stacked, seed_dir
from cezsar.synthetic import generate
from cezsar.tables import COLUMNS, FRACTIONS
from cezsar.text import SentenceEncoder
from cezsar.train import fit
from cezsar.train_inputs import segment_bounds
from cezsar.triplets import TripletSet

# the CLIP baseline's table rows (docs/decisions.md §14): variant -> prompt set
CLIP_VARIANTS = {variant: prompts for prompts, variant in CLIP_BASELINE_VARIANTS.items()}

# The notebooks' one entry point: the stages, and (from cezsar.layout / cezsar.params) the parameter set and its
# layout, so a notebook imports `pipeline` alone.
__all__ = ["CLIP_VARIANTS", "DATASET_NAMES", "TEST_SETS", "Layout", "ReadOnce", "check_inputs", "describe", "eval_config",
           "evaluate_methods", "evaluate_seeds", "extract_features", "head_weights", "layout_from", "methods_for", "mine_triplets",
           "mining_config", "mining_inputs", "model_config", "prepare_data", "resolve", "save_json", "settings",
           "model_checkpoints", "table_protocols", "tau_ablation", "train_config", "train_model", "training_captions",
           "training_seeds", "uses_objects"]

DATASET_NAMES = {"activitynet": "ActivityNet Captions", "ucf101": "UCF-101", "kinetics400": "Kinetics-400"}


# --- 00: data ----------------------------------------------------------------------------------
def prepare_data(lay: Layout, s: Settings) -> dict:
    """Notebook 00: generate SynthActions (embedded; skipped when the same seed and size exist) or check
    every real input up front, then a summary of each part."""

    out: dict = {}
    if lay.mode == "embedded":
        root = lay.data_root
        stamp = root / "synthactions.json"
        same = stamp.exists() and {k: json.loads(stamp.read_text()).get(k) for k in ("seed", "size")} == \
            {"seed": s.synth_seed, "size": s.synth_size}
        if not same or not lay.captions[0].exists():
            out["generated"] = generate(root, seed=s.synth_seed, size=s.synth_size)
        else:
            out["generated"] = f"reused {root} (seed {s.synth_seed}, size {s.synth_size})"
    out["inputs"] = check_inputs(lay, s)
    caps = read_activitynet_files(lay.captions)
    out["activitynet"] = {"files": [str(c) for c in lay.captions], "videos": len(caps.durations),
                          "segments": len(caps.segments), "problems": dict(caps.problems)}
    for kind in TEST_SETS:
        ds = datasets.load_dataset(kind, lay.roots[kind])
        desc = datasets.read_descriptions(lay.descriptions[kind])
        missing = [c for c in ds.classes if c not in desc]
        if missing:
            raise ValueError(f"{lay.descriptions[kind]}: no description for {len(missing)} class(es), e.g. "
                             f"{missing[:10]}")
        out[kind] = {"classes": len(ds.classes), "videos": len(ds.videos), "problems": dict(ds.problems),
                     "descriptions": str(lay.descriptions[kind])}
    return out


# --- 01: features and objects ------------------------------------------------------------------
def extract_features(lay: Layout, s: Settings) -> dict:
    """Notebook 01: 1-fps features and objects for the training videos and both test sets.

    A part whose feature folder already holds a stack for every video is used as it is (the released
    features); videos without a stack are extracted when their files exist, and listed otherwise. Objects
    missing from a folder are computed from the features with the backbone's own head (cezsar.feature_objects).
    """

    cfg = ExtractConfig(backbone=s.backbone, weights=str(lay.weights) if lay.weights else None,
                        image_size=s.image_size, released_preprocess=s.released_preprocess,
                        released_sampling=s.released_sampling)
    reports: dict = {}
    jobs = []
    if lay.train_videos is not None and lay.train_videos.is_dir():
        caps = read_activitynet_files(lay.captions)
        vids = [datasets.Video(v, _find_video(lay.train_videos, v), "") for v in sorted(caps.durations)]
        jobs.append(("activitynet", vids, lay.train_features))
    for kind in TEST_SETS:
        vids = datasets.load_dataset(kind, lay.roots[kind]).videos
        have = _npy_ids(lay.test_features[kind])
        todo = [v for v in vids if v.video_id not in have and v.path is not None]
        if todo or not have:
            jobs.append((kind, vids, lay.test_features[kind]))
        else:
            reports[kind] = {"videos": len(vids), "done": len(have & {v.video_id for v in vids}),
                             "encoded": 0, "note": "feature folder used as it is",
                             "without_features": len([v for v in vids if v.video_id not in have])}
    encoders: dict = {}
    test_cfg = test_extract_config(lay, s, cfg)
    for name, vids, out in jobs:
        job_cfg = cfg if name == "activitynet" else test_cfg
        key = (job_cfg.image_size, job_cfg.released_preprocess)
        if key not in encoders:
            encoders[key] = get_encoder(job_cfg.backbone, job_cfg.weights, device=s.device, image_size=key[0],
                                        batch=job_cfg.batch, preprocess="released" if key[1] else "paper")
        rep = extract(vids, out, job_cfg, encoder=encoders[key], progress=True)
        reports[name] = {k: rep[k] for k in ("videos", "done", "encoded", "reused", "frames", "seconds",
                                             "frames_per_s") if k in rep}
        reports[name]["skipped"] = rep.get("skipped", [])
    if s.use_objects != "off":
        src = head_weights(lay, s)
        head = None
        for part in ("activitynet", *TEST_SETS):
            if _have_objects(lay, part):
                continue
            if src is None:
                reports.setdefault(part, {})["objects"] = "off: no head weights (backbone_weights)"
                continue
            head = head or load_head(None if src == "default" else src, s.backbone)
            feats, out = lay.folders(part)
            rep = objects_from_features(feats, head, out, device=s.device, progress=True)
            reports.setdefault(part, {})["objects"] = {k: rep[k] for k in ("videos", "computed", "reused",
                                                                           "skipped", "label_space", "out")}
    reports["objects_used"] = uses_objects(lay, s)
    return reports


def training_features_manifest(lay: Layout) -> dict | None:
    """The manifest of the training features (cezsar.manifest): their manifest.json, or the built-in one the
    parameter set declares (`anet_features_manifest`); None when neither exists (yet)."""
    if not lay.train_features.is_dir():
        return manifest.BUILT_IN.get(lay.train_manifest or "")
    return manifest.read(lay.train_features, lay.train_manifest)


def test_extract_config(lay: Layout, s: Settings, cfg: ExtractConfig) -> ExtractConfig:
    """The ExtractConfig of the test sets: `cfg`, or with `match_training_features` the preprocessing, frame
    sampling and image size of the training features' manifest (paper mode: the released BiT features' BGR,
    resize 256 + crop 224 and 25-fps linspace sampling), so that the model scores vectors of its own kind."""
    trained = training_features_manifest(lay) if s.match_training_features else None
    if trained is None:
        return cfg
    return dataclasses.replace(
        cfg, released_preprocess=str(trained.get("preprocess", "")).startswith("released-"),
        released_sampling=trained.get("sampling") == manifest.SAMPLING["released"],
        image_size=int(trained.get("image_size") or cfg.image_size))


def check_test_features(store, meta: dict, folder: Path) -> None:
    """Refuse test features made another way than the checkpoint's training features (ManifestMismatch, one
    line naming both values); a folder or checkpoint from before manifests gives a warning instead."""
    for line in manifest.check_against_training(getattr(store, "manifest", None), training_manifest(meta),
                                                str(folder)):
        warnings.warn(line, stacklevel=2)


def _find_video(folder: Path, video_id: str) -> Path | None:
    for ext in (".mp4", ".mkv", ".webm", ".avi"):
        if (folder / f"{video_id}{ext}").exists():
            return folder / f"{video_id}{ext}"
    return None  # extract() reports it as skipped with the reason


# --- 02: mining --------------------------------------------------------------------------------
def _file_key(path: Path) -> dict:
    """Identity of an input file: path, size and content hash (a changed file changes the key)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": h.hexdigest()[:16]}


def _folder_key(folder: Path) -> dict:
    """Identity of a feature or objects folder: its stacks' ids, sizes and times, hashed."""
    h = hashlib.sha256()
    n = 0
    for p in sorted(folder.glob("*.np[yz]")) if folder.is_dir() else []:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        n += 1
    return {"path": str(folder), "files": n, "hash": h.hexdigest()[:16]}


def mining_inputs(lay: Layout, s: Settings, objects: bool) -> dict:
    """Everything a triplet file depends on besides its MiningConfig (the reuse key)."""

    return {"captions": [_file_key(c) for c in lay.captions], "text_model": SentenceEncoder(s.text_model).model_id,
            "features": _folder_key(lay.train_features),
            "objects": _folder_key(lay.train_objects) if objects else None}


def mining_config(s: Settings, tau: float | None = None, objects: bool = True) -> MiningConfig:
    """The MiningConfig of a parameter set, its released-code switches included (object positives only when
    objects are used)."""
    cfg = stage_configs(s.values)["mine"]
    return dataclasses.replace(cfg, tau=s.tau if tau is None else tau, seed=s.seed,
                               object_positives=s.object_positives if objects else 0)


def training_captions(lay: Layout, store) -> tuple:
    """The captions mined from: every file of the set, less the videos without training features; returns
    (Captions, the left-out video ids). Mining numbers its segments in this order (`TripletSet.segment`)."""
    caps = read_activitynet_files(lay.captions)
    have = set(store.ids)
    lacking = sorted(v for v in caps.durations if v not in have)
    if lacking:
        caps = Captions([g for g in caps.segments if g.video_id in have],
                                 {v: d for v, d in caps.durations.items() if v in have}, caps.problems, caps.examples)
    return caps, lacking


def mine_triplets(lay: Layout, s: Settings, tau: float | None = None) -> dict:
    """Notebook 02: the triplet file for τ (reused when its config and every input are the same); its summary.

    Segments of videos without training features are left out and counted ("videos_without_features")."""

    objects = uses_objects(lay, s)
    cfg = mining_config(s, tau, objects)
    path = lay.triplets(cfg.tau)
    key = {"config": config.to_dict(cfg), "inputs": mining_inputs(lay, s, objects)}
    if path.exists():
        old = TripletSet.load(path)
        if {k: old.summary.get(k) for k in key} == key:
            return {"path": str(path), "reused": True, **old.summary}
        _set_aside(path)  # mined with other settings or inputs: keep it, but mine anew
    store = lay.store("activitynet")
    caps, lacking = training_captions(lay, store)
    if lacking:
        print(f"NOTE: {len(lacking)} of {len(lacking) + len(caps.durations)} caption videos have no training "
              f"features and are left out (e.g. {lacking[:3]})")
    if not caps.segments:
        raise ValueError(f"no caption segment of {[str(c) for c in lay.captions]} has features in "
                         f"{lay.train_features}")
    encoder = SentenceEncoder(s.text_model)
    # a progress bar for the sentences not cached yet (≈100 k at the paper's scale: minutes with a 768-d SBERT)
    trip = mine(caps, lambda ss: encoder.encode(ss, progress=True), store if objects else None, cfg)
    trip.text_model = trip.summary["text_model"] = encoder.model_id
    trip.summary.update(key, videos_without_features=len(lacking), videos_without_features_examples=lacking[:20])
    path.parent.mkdir(parents=True, exist_ok=True)
    trip.save(path)
    return {"path": str(path), "reused": False, **trip.summary}


# --- 03: training ------------------------------------------------------------------------------
def train_config(s: Settings) -> TrainConfig:
    """The TrainConfig of a parameter set (switches included)."""
    return dataclasses.replace(stage_configs(s.values)["train"], seed=s.seed)


def model_config(s: Settings) -> ModelConfig:
    """The ModelConfig of a parameter set (feature and text sizes are set by `train.fit` from the data)."""
    return stage_configs(s.values)["model"]


def _mined_triplets(path: Path, tau: float) -> TripletSet:
    """The triplet file of `tau`; a DataError saying to mine first when it is absent or not a triplet file."""
    if not path.is_file():
        raise DataError(f"{path}: no triplet file for tau {tau:g}; run notebook 02 (or `cezsar mine`) first")
    try:
        return TripletSet.load(path)
    except ValueError as err:
        raise DataError(f"{' '.join(str(err).split())}; re-create it with notebook 02 (or `cezsar mine`)") from err


def training_seeds(s: Settings) -> list[int]:
    """The training seeds of a parameter set (docs/decisions.md, 'Training seeds'): `train_seeds` models per τ, with seeds
    `seed`, `seed` + 1, …, `seed` + train_seeds − 1 (0 … N − 1 by default). Seed k sets model k's
    initialisation, batch order and dropout draws; `seed` alone still drives mining and the t-SNE."""
    n = int(s.values.get("train_seeds", 1))
    if n < 1:
        raise ValueError(f"{s.params_file}: train_seeds must be at least 1 (got {n})")
    return [int(s.seed) + k for k in range(n)]


def model_checkpoints(lay: Layout, s: Settings, tau: float | None = None) -> dict[int, Path]:
    """Each training seed's best checkpoint of τ: {seed: <models_dir>/tau<τ>/seed<seed>/best.pt}."""
    out = lay.model_dir(s.tau if tau is None else tau)
    return {k: seed_dir(out, k) / "best.pt" for k in training_seeds(s)}


def _migrate_single_seed(out: Path) -> None:
    """A run of the former one-seed layout (`<tau dir>/last.pt`, `best.pt`, logs) moves into the folder of its
    training seed, `<tau dir>/seed<seed>/`, where every reader now looks; nothing is deleted."""
    last = out / "last.pt"
    if not last.is_file():
        return
    seed = int((read_checkpoint(last, None, training=True, remedy="delete it to train anew").get("train_cfg")
                or {}).get("seed", 0))
    target = seed_dir(out, seed)
    if target.exists():
        _set_aside(last)
        return
    target.mkdir(parents=True)
    for name in ("last.pt", "best.pt", "log.json", "log.csv", "provenance.json"):
        if (out / name).exists():
            (out / name).rename(target / name)


def train_model(lay: Layout, s: Settings, tau: float | None = None) -> dict:
    """Notebook 03: train (or resume, or reuse finished runs) every training seed on the τ triplet file.

    The seeds (`training_seeds`) train together in one process as stacked weights (`cezsar.stacked`), each
    writing its own checkpoints and logs to `<models_dir>/tau<τ>/seed<k>/`. Every model of the set shares one
    feature bank (`Layout.bank_cache`); `provenance.json` beside each seed's checkpoints records the triplet file,
    the mining and training settings and the parameter set.
    Under torchrun (`cezsar train --params FILE`, docs/decisions.md §13) each seed is data-parallel training
    in turn: rank 0 encodes the sentences, sets a stale run aside and writes the files; the others follow.
    Returns {"model_dir", "seeds", "checkpoints", "runs" (each seed's training summary), and seed 0's summary
    and "checkpoint" as before}."""

    tau = s.tau if tau is None else tau
    cfg = train_config(s)
    seeds = training_seeds(s)
    trip = _mined_triplets(lay.triplets(tau), tau)
    distributed.init(resolve_device(cfg.device))  # no-op in a notebook (one process)
    main = distributed.is_main()
    encoder = SentenceEncoder(s.text_model)
    with distributed.main_first():  # one process fills the sentence cache, the others read it
        text_emb = encoder.encode(trip.sentences, progress=main)  # (S, text_dim), cached on disk
    out = lay.model_dir(tau)
    with distributed.main_first():  # rank 0 sets a stale run aside; the others then find none
        if main:
            _migrate_single_seed(out)
        for k in seeds:
            last = seed_dir(out, k) / "last.pt"
            if last.exists():
                _check_resumable(last, seed_dir(out, k), trip, dataclasses.replace(cfg, seed=k), s)
    store = lay.store("activitynet")
    have = set(store.ids)
    lacking = [v for v in trip.video_ids if v not in have]
    if lacking:  # features removed since mining: leave their triplets out, counted
        trip = trip.subset_videos(have)
        if main:
            print(f"NOTE: {len(lacking)} training video(s) have no features any more; their triplets are left out")

    def log(seed: int, row: dict) -> None:
        val = f", val {row['val_loss']:.4f}" if row.get("val_loss") is not None else ""
        print(f"seed {seed}, epoch {row['epoch'] + 1}/{cfg.epochs}: train {row['train_loss']:.4f}{val} "
              f"({row['seconds']:.1f} s, {row['triplets_per_s']:.0f} triplets/s)", flush=True)

    bounds = None
    if cfg.window == "released":  # the first 16 s of each captioned segment: the segments' bounds, as mined

        bounds = segment_bounds(training_captions(lay, store)[0])
    t0 = time.perf_counter()
    common = dict(text_model=encoder.model_id, text_model_name=s.text_model, params=Path(s.params_file).stem,
                  segment_bounds=bounds, fast=FastPathConfig(cache_dir=str(lay.bank_cache)))
    if distributed.world_size() > 1:  # data-parallel: one seed after another, each over every rank
        runs = [fit(trip, store, text_emb, dataclasses.replace(cfg, seed=k), model_config(s), out_dir=seed_dir(out, k),
                    resume=True, progress=main and progress_mode() == "widget",
                    on_epoch_end=lambda row, k=k: log(k, row), **common) for k in seeds]
    else:
        runs = fit_stacked(trip, store, text_emb, seeds, cfg, model_config(s), out_dir=out, resume=True,
                           on_epoch_end=log, **common)
    provenance = {"params_file": s.params_file, "triplets": str(lay.triplets(tau)),
                  "mining": trip.summary.get("config"), "mining_inputs": trip.summary.get("inputs"),
                  "train_cfg": config.to_dict(cfg), "text_model": s.text_model, "backbone": store.backbone,
                  "features_manifest": store.manifest,
                  "feature_dim": store.dim, "train_videos": len(trip.video_ids),
                  "videos_without_features": trip.summary.get("videos_without_features", 0) + len(lacking),
                  "dataset": "SynthActions (synthetic clips)" if lay.mode == "embedded" else "ActivityNet Captions",
                  "train_seeds": seeds, "seconds": round(time.perf_counter() - t0, 1)}
    if main:
        for k in seeds:
            write_json(seed_dir(out, k) / "provenance.json",
                       {**provenance, "seed": k, "train_cfg": config.to_dict(dataclasses.replace(cfg, seed=k))})
    checkpoints = [str(seed_dir(out, k) / "best.pt") for k in seeds]
    return {"model_dir": str(out), "seeds": seeds, "checkpoints": checkpoints, "runs": runs,
            "checkpoint": checkpoints[0], **runs[0]}


def _check_resumable(last: Path, out: Path, trip, cfg: TrainConfig, s: Settings) -> None:
    """Resume only a run of the same triplets and training settings: set any other run aside."""

    meta = read_checkpoint(last, None, training=True, remedy="delete it to train anew")
    same = {k: v for k, v in _plain(config.to_dict(cfg)).items() if k not in _RESUMABLE}
    was = {k: v for k, v in _plain(meta.get("train_cfg") or {}).items() if k not in _RESUMABLE}
    sized = ("feat_dim", "text_dim")  # set by fit from the data
    model_same = {k: v for k, v in config.to_dict(model_config(s)).items() if k not in sized}
    model_was = {k: v for k, v in (meta.get("model_cfg") or {}).items() if k not in sized}
    if meta.get("n_triplets") != len(trip) or same != was or model_same != model_was:
        _set_aside(out)


# --- 04 / 05: evaluation -----------------------------------------------------------------------
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
        emb = P.embed_dataset(ds, store, desc, enc, method=method, model=model, alpha=ecfg.alpha, beta=beta,
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
    taus = [float(t) for t in str(s.tau_values).split(",") if t.strip()]
    variant = "VE+O" if uses_objects(lay, s) else "VE"

    # every class, as Table 1's first column names it (0/101 on UCF-101, whose split files are tracked)
    every_class = next(iter(table_protocols("ucf101", len(datasets.load_dataset("ucf101", lay.roots["ucf101"])
                                                           .classes)).values()))
    rows = []
    for tau in taus:
        t0 = time.perf_counter()
        print(f"τ = {tau}: mining, training, evaluating", flush=True)
        mined = mine_triplets(lay, s, tau)
        hist = train_model(lay, s, tau)
        res = evaluate_seeds(lay, "ucf101", {k: Path(c) for k, c in zip(hist["seeds"], hist["checkpoints"])}, s,
                             protocols={"all": every_class}, methods=(variant,))
        r = res[variant]["all"]
        rows.append({"tau": tau, "triplets": mined.get("triplets"), "top1": r["top1_mean"],
                     "top5": r["top5_mean"], "seeds": r["seeds"]["seeds"], "top1_seeds": r["seeds"]["top1"],
                     "top5_seeds": r["seeds"]["top5"], "top1_seed_std": r["seeds"]["top1_std"],
                     "n_classes": r["n_classes"], "variant": variant, "seconds": time.perf_counter() - t0})
    return {"dataset": "ucf101", "protocol": every_class, "mode": lay.mode, "variant": variant, "rows": rows}


_RESUMABLE = ("epochs", "patience", "device")  # changing these continues a run instead of restarting it


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _set_aside(path: Path) -> None:
    """Rename a stale result (other settings) to `<name>.stale-<time>` rather than deleting finished work."""
    path.rename(path.with_name(f"{path.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}"))


def save_json(obj: dict, path: Path) -> Path:
    """Atomic JSON write of a results file (numpy values and paths converted)."""
    return write_json(path, obj, indent=2, default=_jsonable)


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
