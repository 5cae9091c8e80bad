"""Notebook 03's stage: every training seed of a parameter set trained on the τ triplet file (paper §3.3-§4),
resumed or reused when a finished run of the same settings is found (docs/interfaces.md). The training itself is
`cezsar.training.stacked` (the seeds in one process) and `cezsar.training.train` (one seed, data-parallel under
torchrun).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import torch

from cezsar import config
from cezsar.base import distributed
from cezsar.base.atomic import write_json
from cezsar.training.checkpoints import recorded_seed, resumable_by
from cezsar.errors import DataError
from cezsar.config import FastPathConfig, ModelConfig, TrainConfig
from cezsar.base.devices import resolve_device
from cezsar.harness.layout import Layout
from cezsar.harness.params import Settings, stage_configs
from cezsar.harness.pipeline_mining import mine_triplets, set_aside, training_captions
from cezsar.harness.side_by_side import run_side_by_side
from cezsar.base.progress import progress_mode
from cezsar.training.stacked import fit_stacked, seed_dir
from cezsar.encoders.text import SentenceEncoder
from cezsar.training.train import fit
from cezsar.training.train_inputs import segment_bounds
from cezsar.formats.triplets import TripletSet


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


def migrate_single_seed(out: Path) -> None:
    """A run of the former one-seed layout (`<tau dir>/last.pt`, `best.pt`, logs) moves into the folder of its
    training seed, `<tau dir>/seed<seed>/`, where every reader now looks; nothing is deleted."""
    last = out / "last.pt"
    if not last.is_file():
        return
    seed = recorded_seed(last)
    target = seed_dir(out, seed)
    if target.exists():
        set_aside(last)
        return
    target.mkdir(parents=True)
    for name in ("last.pt", "best.pt", "log.json", "log.csv", "provenance.json"):
        if (out / name).exists():
            (out / name).rename(target / name)


def training_threads(s: Settings) -> int:
    """Torch threads of CPU training (`train_threads`; docs/decisions.md, 'Training threads'): 1 by default, so
    that the trained numbers do not depend on the machine's core count; 0 leaves torch's own count (every core)."""
    n = int(s.values.get("train_threads", 1))
    if n < 0:
        raise ValueError(f"{s.params_file}: train_threads must be 0 (every core) or more (got {n})")
    return n


def ablation_taus(s: Settings) -> list[float]:
    """The τ of the ablation (paper §5; `tau_values`, comma-separated), in the set's order."""
    return [float(t) for t in str(s.tau_values).split(",") if t.strip()]


def every_tau(s: Settings) -> list[float]:
    """The τ that notebook 03 trains: `tau` and every τ of the ablation, ascending."""
    return sorted({float(s.tau), *ablation_taus(s)})


def train_taus(lay: Layout, s: Settings, taus: list[float] | None = None) -> dict[float, dict]:
    """Notebooks 03-04: mine (or reuse) and train (or resume, or reuse) every training seed of each τ
    (`every_tau` by default); {τ: `train_model`'s summary}.

    On a CPU the τ train side by side, one process each with `training_threads` threads
    (`cezsar.harness.side_by_side`): the same numbers as one τ after another, in about 3/4 of the time on 2 cores.
    On a GPU, under torchrun, or with `train_threads: 0`, they train one after another in this process."""
    taus = every_tau(s) if taus is None else [float(t) for t in taus]
    for tau in taus:
        mine_triplets(lay, s, tau)
    threads = training_threads(s)
    if (len(taus) == 1 or threads == 0 or distributed.world_size() > 1
            or resolve_device(train_config(s).device).type != "cpu"):
        return {tau: train_model(lay, s, tau) for tau in taus}
    print(f"training τ {', '.join(f'{t:g}' for t in taus)} side by side: one process each, {threads} thread(s)",
          flush=True)
    done = run_side_by_side(train_model, {f"τ {tau:g}": (lay, s, tau) for tau in taus}, threads)
    return {tau: done[f"τ {tau:g}"] for tau in taus}


@contextlib.contextmanager
def _torch_threads(n: int, device: torch.device):
    """Torch's CPU thread count set to n (0: unchanged) while CPU training runs, then restored."""
    before = torch.get_num_threads()
    if n and device.type == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_model(lay: Layout, s: Settings, tau: float | None = None) -> dict:
    """Notebook 03: train (or resume, or reuse finished runs) every training seed on the τ triplet file.

    The seeds (`training_seeds`) train together in one process as stacked weights (`cezsar.training.stacked`), each
    writing its own checkpoints and logs to `<models_dir>/tau<τ>/seed<k>/`. Every model of the set shares one
    feature bank (`Layout.bank_cache`); `provenance.json` beside each seed's checkpoints records the triplet file,
    the mining and training settings and the parameter set.
    Under torchrun (`cezsar train --params FILE`, docs/decisions.md §13) each seed is data-parallel training
    in turn: rank 0 encodes the sentences, sets a stale run aside and writes the files; the others follow.
    On a CPU it trains with `training_threads` threads.
    Returns {"model_dir", "seeds", "checkpoints", "runs" (each seed's training summary), and seed 0's summary
    and "checkpoint" as before}."""

    tau = s.tau if tau is None else tau
    with _torch_threads(training_threads(s), resolve_device(train_config(s).device)):
        return _train_model(lay, s, tau)


def _train_model(lay: Layout, s: Settings, tau: float) -> dict:
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
            migrate_single_seed(out)
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
                  "train_seeds": seeds, "threads": torch.get_num_threads(),
                  "seconds": round(time.perf_counter() - t0, 1)}
    if main:
        for k in seeds:
            write_json(seed_dir(out, k) / "provenance.json",
                       {**provenance, "seed": k, "train_cfg": config.to_dict(dataclasses.replace(cfg, seed=k))})
    checkpoints = [str(seed_dir(out, k) / "best.pt") for k in seeds]
    return {"model_dir": str(out), "seeds": seeds, "checkpoints": checkpoints, "runs": runs,
            "checkpoint": checkpoints[0], **runs[0]}


def _check_resumable(last: Path, out: Path, trip, cfg: TrainConfig, s: Settings) -> None:
    """Resume only a run of the same triplets and training settings: set any other run aside."""
    if not resumable_by(last, len(trip), cfg, model_config(s)):
        set_aside(out)
