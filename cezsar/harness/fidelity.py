"""What each released-code behaviour costs: the paper configuration, each switch alone, all of them together.

For every variant: mine the triplets (once per mining configuration), train the joint embedder with every
training seed on the parameter set's training videos, and score Eq. 9 (VE + O, and VE alone) with every class
of the UCF-form and Kinetics-form test sets (protocol 0/all). The seeds of a variant train together as stacked
weights (`cezsar.training.stacked.fit_stacked`, which equals one `train.fit` per seed) where the variant's model allows
it; the released model variants and the train-mode validation train one `fit` per seed. Models are cached by
configuration, so a variant that only changes evaluation reuses the paper models of its seeds.

Resumable on this machine and on another: each (variant, seed) result is a file under
`<work_dir>/fidelity/results/`, and after each variant the record `figures/fidelity.json` holds every result
with the settings that made it (`record_key`: the parameter values, epochs, the data's digest, the device
kind). `measure` reads the record back when those settings match, so a measurement stopped on one machine goes
on from the committed record on another; a killed run loses at most the variant in training (and of that, the
seeds' finished epochs resume from their last.pt). A variant that cannot change anything on the data
(`cezsar.harness.fidelity_checks`) trains nothing and gets its reason in the table. docs/fidelity.md explains each row.

    python -m cezsar.harness.fidelity --params params/embedded.yaml  # fidelity_seeds x fidelity_epochs of the set
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any, Callable

import torch

from cezsar.evaluation import dataset_embedding, zsar
from cezsar.formats import datasets
from cezsar.harness import pipeline
from cezsar.base.atomic import write_json
from cezsar.formats.captions import read_activitynet_files
from cezsar.training.checkpoints import load_checkpoint
from cezsar.config import FastPathConfig, ModelConfig, TrainConfig, to_dict
from cezsar.base.devices import resolve_device
from cezsar.harness.fidelity_checks import unmeasurable
from cezsar.harness import fidelity_doc, fidelity_report
from cezsar.harness.fidelity_report import key_of as _key
from cezsar.harness.fidelity_report import read_record, record_key, recorded
from cezsar.harness.layout import TEST_SETS
from cezsar.triplet_mining.mine import mine
from cezsar.harness.params import load, stage_configs
from cezsar.training.stacked import fit_stacked, seed_dir, trains_stacked
from cezsar.encoders.text import SentenceEncoder
from cezsar.training.train import fit
from cezsar.training.train_inputs import segment_bounds
from cezsar.formats.triplets import TripletSet

# the released code's behaviours as parameter values (params/released.yaml holds the same, all at once)
RELEASED: dict[str, Any] = {
    "window": "released", "max_len": 16, "released_padding": True, "released_attention": True,
    "released_head": True, "released_sem": True, "positional": False, "xavier_init": True, "d_model": 1024,
    "dropout": 0.2, "autocast": False, "released_validation": True, "split": "triplet", "val_fraction": 0.3,
    "draw": "released",
    "mine_released_objects": True, "object_positives": 2, "normalize_terms": False, "eval_released_objects": True,
    "released_descriptions": True, "max_seconds": 16, "std_ddof": 0,
}
OBJ2 = {"object_positives": 2}  # the paper's two object positives (the embedded set mines captions only)
# the object positives of RELEASED: on a set that mines captions only (the embedded one) they add object positives
# as well as the released way of making them, so "all released" is measured in two parts (docs/fidelity.md)
OBJECT_POSITIVE_KEYS = ("object_positives", "mine_released_objects")

# name -> (what it switches, its parameter overrides, the variant it is compared with)
VARIANTS: dict[str, tuple[str, dict, str]] = {
    "paper": ("the paper's reading (the parameter set as given)", {}, "paper"),
    "window": ("visual input = first 16 s of the segment", {"window": "released", "max_len": 16}, "paper"),
    "padding": ("16 rows, zero padded, padding in attention and mean", {"released_padding": True, "max_len": 16},
                "paper"),
    "attention": ("attention across the batch (training), none across time (test)", {"released_attention": True},
                  "paper"),
    "head": ("VEM head: ReLU, FC, dropout; dropout, ReLU, FC per step, mean; affine LayerNorm in training",
             {"released_head": True},
             "paper"),
    "no_pe": ("no positional encoding", {"positional": False}, "paper"),
    "sem": ("SEM: Dropout + Linear + LayerNorm", {"released_sem": True}, "paper"),
    "width_init": ("d_model 1024, dropout 0.2, Xavier-normal init",
                   {"d_model": 1024, "dropout": 0.2, "xavier_init": True}, "paper"),
    "validation": ("validation loss in train mode (dropout on)", {"released_validation": True}, "paper"),
    "split": ("triplet-level 70/30 validation split", {"split": "triplet", "val_fraction": 0.3}, "paper"),
    "draw": ("negatives with replacement from the released list of positive entries", {"draw": "released"}, "paper"),
    "raw_sum": ("Eq. 9 as a raw sum (nothing L2-normalised)", {"normalize_terms": False}, "paper"),
    "objects_eval": ("O(v): mean over 16 padded rows, top-3, one all-sense text", {"eval_released_objects": True},
                     "paper"),
    "first_16s": ("test clips cut to their first 16 s", {"max_seconds": 16}, "paper"),
    "descriptions": ("descriptions lower-cased, contractions expanded, letters and . , ! ? kept, top-1 by "
                     "similarity to the name", {"released_descriptions": True}, "paper"),
    "fp32": ("fp32 training instead of bf16 autocast (CUDA only)", {"autocast": False}, "paper"),
    "iid": ("i.i.d. batches (paper §4, released) instead of the embedded set's ~16 windows x 8 triplets",
            {"batch_makeup": "iid"}, "paper"),
    "released_captions": ("every released behaviour but the object positives (captions-only mining, as paper)",
                          {k: v for k, v in RELEASED.items() if k not in OBJECT_POSITIVE_KEYS}, "paper"),
    "obj2": ("the paper's 2 object positives per window (reference of the rows below)", OBJ2, "paper"),
    "object_positives": ("released object positives: all-sense fragments, top-5 over 10 s from a random whole second",
                         {**OBJ2, "mine_released_objects": True}, "obj2"),
    "far_from_all": ("paper words: a negative far from the other positives of its window",
                     {**OBJ2, "far_from_all": True}, "obj2"),
    "object_tau": ("paper words: the tau rule also picks object positives", {**OBJ2, "object_tau": True}, "obj2"),
    "released": ("every released behaviour at once (params/released.yaml), against the same 2 object positives",
                 RELEASED, "obj2"),
}
NOT_MEASURED = {
    "preprocess": "BGR + resize 256 / centre crop 224: needs every video re-extracted "
                  "(ExtractConfig.released_preprocess)",
    "sampling": "25-fps linspace frame sampling: needs every video re-extracted (ExtractConfig.released_sampling)",
    "ddof0": "std with ddof 0: changes the reported std over class subsets, never a top-1 mean (EvalConfig.std_ddof)",
}


def train_seeds(trip: Any, store: Any, text_emb: Any, seeds: list[int], train_cfg: TrainConfig,
                model_cfg: ModelConfig, out: Path, stacked: bool = True, **common: Any) -> list[dict]:
    """Train (or resume, or reuse) one model per training seed into `<out>/seed<s>/` (paper §4): all seeds at once
    with `fit_stacked` where `trains_stacked` allows it and `stacked` is on, else one `fit` per seed; `common` goes to
    both (fast, text_model, text_model_name, segment_bounds). Returns fit's summary per seed."""
    if stacked:  # fit_stacked itself trains one fit per seed where the configuration does not stack
        return fit_stacked(trip, store, text_emb, list(seeds), train_cfg, model_cfg, out, resume=True, **common)
    return [fit(trip, store, text_emb, dataclasses.replace(train_cfg, seed=s), model_cfg, seed_dir(out, s),
                resume=True, progress=False, **common) for s in seeds]


class _Data:
    """The parameter set's data, loaded once per measurement and only when a variant needs it."""

    def __init__(self, lay: Any, text_model: str, out: Path) -> None:
        self.lay, self.text_model, self.out = lay, text_model, out
        self.where = "SynthActions" if lay.mode == "embedded" else "this data"

    @functools.cached_property
    def enc(self) -> SentenceEncoder:
        return SentenceEncoder(self.text_model)

    @functools.cached_property
    def captions(self) -> Any:
        return read_activitynet_files(self.lay.captions)

    @functools.cached_property
    def store(self) -> Any:
        return self.lay.store("activitynet")

    @functools.cached_property
    def bounds(self) -> Any:
        return segment_bounds(self.captions)

    @functools.cached_property
    def tests(self) -> dict[str, tuple]:
        """test set -> (dataset, descriptions, feature store)."""
        return {k: (datasets.load_dataset(k, self.lay.roots[k]), datasets.read_descriptions(self.lay.descriptions[k]),
                    self.lay.store(k)) for k in TEST_SETS}

    def triplets(self, mine_cfg: Any) -> tuple[TripletSet, str]:
        """The triplets of a mining configuration (mined once, cached under `<out>/triplets/`) and its key."""
        mkey = _key(to_dict(mine_cfg), self.text_model)
        path = self.out / "triplets" / f"{mkey}.npz"
        if path.is_file():
            return TripletSet.load(path), mkey
        trip = mine(self.captions, self.enc, self.store, mine_cfg)
        trip.save(path)
        return trip, mkey

    def score(self, model: Any, ecfg: Any) -> dict[str, float]:
        """Eq. 9 top-1 on every class of each test set, VE + O (beta of the set) and VE alone (beta 0)."""
        scores = {}
        for kind, (ds, desc, tstore) in self.tests.items():
            for variant, beta in (("VE+O", ecfg.beta), ("VE", 0.0)):
                emb = dataset_embedding.embed_dataset(
                    ds, tstore, desc, self.enc, model=model, alpha=ecfg.alpha, beta=beta,
                    normalize_terms=ecfg.normalize_terms, n_objects=ecfg.n_objects, max_seconds=ecfg.max_seconds,
                    released_objects=ecfg.released_objects, released_descriptions=ecfg.released_descriptions)
                scores[f"{kind}_{variant}"] = zsar.metrics(emb["scores"], emb["labels"])["top1"]
        return scores


def check_variant(data: _Data, name: str, base: dict) -> str | None:
    """`fidelity_checks.unmeasurable` for one variant against its reference, on the parameter set's data."""
    ref_values = {**base, **VARIANTS[VARIANTS[name][2]][1]}
    values = {**base, **VARIANTS[name][1]}
    if name == VARIANTS[name][2]:
        return None
    trip = data.triplets(stage_configs(values)["mine"])[0] if {"window", "max_len"} & set(VARIANTS[name][1]) else None
    clips = None
    if {"max_seconds", "max_len"} & set(VARIANTS[name][1]):
        clips = {k: (t[2], [v.video_id for v in t[0].videos]) for k, t in data.tests.items()}
    device = resolve_device(stage_configs(values)["train"].device).type
    return unmeasurable(ref_values, values, data.where, triplets=trip, store=data.store, bounds=data.bounds,
                        test_clips=clips, device=device)


def run_variant(data: _Data, name: str, seeds: list[int], base: dict, epochs: int, results_dir: Path,
                stacked: bool = True) -> list[dict]:
    """Mine (cached), train every seed in `seeds` (together where they stack; cached, resumable) and score one
    variant; each seed's result is written to `<results_dir>/seed<s>.json` and returned."""
    values = {**base, **VARIANTS[name][1], "epochs": epochs}
    cfg = stage_configs(values)  # the same mapping the notebooks use
    t0 = time.perf_counter()
    trip, mkey = data.triplets(cfg["mine"])
    t_mine = time.perf_counter()
    tcfg = dataclasses.replace(cfg["train"], seed=0)  # each seed gets its own below; the folder is the seeds' parent
    model_dir = data.out / "models" / _key(mkey, to_dict(cfg["model"]), to_dict(tcfg))
    text_emb = data.enc.encode(trip.sentences)  # (S, text_dim)
    runs = train_seeds(trip, data.store, text_emb, seeds, cfg["train"], cfg["model"], model_dir, stacked,
                       fast=FastPathConfig(cache_dir=str(data.out / "cache")), text_model=data.enc.model_id,
                       text_model_name=data.text_model, segment_bounds=data.bounds)
    t_train = time.perf_counter()
    out = []
    for s, run in zip(seeds, runs):
        t_eval = time.perf_counter()
        model = load_checkpoint(seed_dir(model_dir, s) / "best.pt")[0]
        res = {"variant": name, "seed": s, **data.score(model, cfg["eval"]), "epochs_run": run["epochs_run"],
               "best_epoch": run["best_epoch"], "triplets": len(trip), "overrides": VARIANTS[name][1],
               "stacked": stacked and trains_stacked(cfg["model"], cfg["train"]),
               "seconds": {"mine": round(t_mine - t0, 1), "train": round((t_train - t_mine) / len(seeds), 1),
                           "evaluate": round(time.perf_counter() - t_eval, 1)}}
        write_json(results_dir / f"seed{s}.json", res)
        out.append(res)
    return out


def table(results: list[dict], not_measurable: dict[str, str] | None = None) -> list[dict]:
    """`fidelity_report.table` over VARIANTS: per variant mean ± std over seeds and the paired Δ (95 % interval)."""
    return fidelity_report.table(results, VARIANTS, not_measurable)


def report(results: list[dict], figures: str | Path, settings: dict,
           not_measurable: dict[str, str] | None = None) -> dict:
    """`fidelity_report.report` over VARIANTS: write figures/fidelity.{json,md,png}."""
    return fidelity_report.report(results, figures, settings, VARIANTS, NOT_MEASURED, not_measurable)


def _settings(params_file: str, key: dict, seeds: int, results: list[dict], where: str) -> dict:
    """The record's settings: its key, the command that continues it, and what ran."""
    epochs = key["epochs"]
    return {"params": params_file, "key": key, "seeds": seeds, "epochs": epochs,
            "command": f"python -m cezsar.harness.fidelity --params {params_file} --seeds {seeds} --epochs {epochs}",
            "results": len(results), "stacked": sum(bool(r.get("stacked")) for r in results),
            "seconds_all_runs": round(sum(sum(r["seconds"].values()) for r in results)),
            "note": f"Each model trained up to {epochs} epoch{'s' if epochs != 1 else ''} with early stopping as "
                    f"the parameter set says (patience, validation split) on {where}' training videos, mining "
                    "seed fixed; the seeds of a variant trained together as stacked weights where the model allows "
                    "it; evaluation-only variants reuse the paper models of their seeds"
                    + (f"; every model trained on one kernel family ({key['kernels']}), so that a variant's seed "
                       "pairs with the paper's same seed" if key.get("kernels") else "") + "."}


def _merge(figures: Path, key: dict, mine: list[dict], verdicts: dict[str, str]) -> tuple[list[dict], dict]:
    """Our results joined with those another process recorded meanwhile under the same key (ours win a tie)."""
    theirs, their_verdicts = read_record(figures, key, VARIANTS)
    ours = {(r["variant"], r["seed"]) for r in mine}
    return [r for r in theirs if (r["variant"], r["seed"]) not in ours] + mine, {**their_verdicts, **verdicts}


def measure(params_file: str, seeds: int | None = None, epochs: int | None = None, variants: list[str] | None = None,
            work: str | Path | None = None, figures: str | Path | None = None, log: Callable[[str], None] = print,
            existing_only: bool = False, first_seed: int = 0, stacked: bool = True,
            replace: bool = False) -> dict:
    """Every variant x training seeds first_seed..seeds-1 (default: the set's fidelity_seeds, fidelity_epochs),
    variant by variant; the results recorded in `<figures>/fidelity.json` under the same settings (`record_key`)
    and the result files of `<work>` are read back, not rerun. After each variant the record (and its table and
    plot) is rewritten; a record of other settings stops the run unless `replace`. `existing_only`: collect what is
    finished, run nothing. Returns the report
    ({"rows", "markdown", "figure"}) with "results", "not_measurable" and "settings"."""
    lay = pipeline.layout_from(params_file)
    base = load(params_file)  # the whole set: validated, every key typed like its default
    seeds = int(seeds or base["fidelity_seeds"])
    epochs = int(epochs or base["fidelity_epochs"])
    out = Path(work) if work else lay.work / "fidelity"
    figures = Path(figures) if figures else pipeline.resolve(base["figures_dir"])
    names = variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown fidelity variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    key = record_key(base, epochs, lay)
    other = fidelity_report.other_settings(figures, key)
    if other is not None and not replace:  # the record is tracked: never overwritten by a trial of other settings
        raise SystemExit(f"fidelity: {figures / 'fidelity.json'} records a measurement of other settings ({other}); "
                         "pass --replace-record to start a new record there, or --figures DIR to write elsewhere")
    results, verdicts = read_record(figures, key, VARIANTS)
    if results or verdicts:
        log(f"[fidelity] {figures / 'fidelity.json'}: {len(results)} (variant, seed) results of these settings")
    data = _Data(lay, base.get("text_model", "minilm"), out)
    where = data.where

    def save() -> dict:
        nonlocal results, verdicts
        results, verdicts = _merge(figures, key, results, verdicts)
        settings = _settings(params_file, key, seeds, results, where)
        rep = report(results, figures, settings, verdicts)
        return {**rep, "results": results, "not_measurable": verdicts, "settings": settings}

    for name in names:
        local = out / "results" / _key(key) / f"{name}-{_key(VARIANTS[name][1])}"
        done = {r["seed"] for r in results if r["variant"] == name}
        for s in range(first_seed, seeds):
            if s not in done and (local / f"seed{s}.json").is_file():  # finished here, not yet in the record
                results.append(json.loads((local / f"seed{s}.json").read_text()))
                done.add(s)
        pending = [s for s in range(first_seed, seeds) if s not in done]
        if not pending or existing_only or name in verdicts:
            continue
        reason = check_variant(data, name, base)
        if reason is not None:
            verdicts[name] = reason
            log(f"[fidelity] {name}: {reason}")
            save()
            continue
        t0 = time.perf_counter()
        new = run_variant(data, name, pending, base, epochs, local, stacked)
        results.extend(new)
        for r in new:
            log(f"[fidelity] {name} seed {r['seed']}: UCF {100 * r['ucf101_VE+O']:.1f} %, Kinetics "
                f"{100 * r['kinetics400_VE+O']:.1f} % (best epoch {r['best_epoch'] + 1} of {r['epochs_run']})")
        log(f"[fidelity] {name}: {len(new)} seed(s) in {time.perf_counter() - t0:.0f} s")
        save()
    if not results and not verdicts:
        raise SystemExit("fidelity: no finished (variant, seed) pair to report")
    return save()


def show_or_measure(params_file: str, figures: str | Path, seeds: int | None = None,
                    epochs: int | None = None) -> dict:
    """Notebook 07: the recorded table and plot when `<figures>/fidelity.json` exists; else, on the embedded set,
    measure and record. On real data (mode paper) it never starts the measurement by itself: ~20 variants x 5
    seeds at the paper's scale take days, so it says how to run it instead."""
    rec = recorded(figures)
    if rec is not None:
        return rec
    if load(params_file)["mode"] != "embedded":
        return {"rows": [], "figure": None, "settings": {},
                "markdown": f"No fidelity measurement is recorded in `{figures}`. It trains one model per variant and "
                            f"seed, days at the paper's scale on a CPU; run it on its own with `python -m "
                            f"cezsar.harness.fidelity --params {params_file}`. The embedded set's measurement is in "
                            "`figures/fidelity.md`."}
    return measure(params_file, seeds, epochs, figures=figures, log=lambda s: None)


def main(argv: list[str] | None = None) -> dict:
    """`python -m cezsar.harness.fidelity`: measure (resumable) and write figures/fidelity.{json,md,png}."""
    p = argparse.ArgumentParser(prog="python -m cezsar.harness.fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--params", default="params/embedded.yaml", help="parameter set (its data, mining and training)")
    p.add_argument("--seeds", type=int, default=None,
                   help="training seeds per variant (0 .. N-1; default: the set's fidelity_seeds)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per training, early stopping as the set says (default: the set's fidelity_epochs)")
    p.add_argument("--variants", default=None, help=f"comma list (default all): {','.join(VARIANTS)}")
    p.add_argument("--figures", default=None,
                   help="where the record fidelity.{json,md,png} is read and written (default: the set's figures_dir)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: ~5x faster than 2 on a loaded 2-core machine; 0 = torch's)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="start at this seed (a second process can take the later seeds; the record is shared)")
    p.add_argument("--per-seed", action="store_true", help="train one model at a time (no stacked seeds)")
    p.add_argument("--report-only", action="store_true", help="tabulate the finished (variant, seed) pairs only")
    p.add_argument("--replace-record", action="store_true",
                   help="start a new record where the figures folder holds one of other settings")
    p.add_argument("--doc", default=None, metavar="FILE",
                   help="also rewrite the measured-cost column of FILE (docs/fidelity.md) from the record")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rep = measure(args.params, args.seeds, args.epochs, args.variants.split(",") if args.variants else None,
                  figures=args.figures and pipeline.resolve(args.figures), existing_only=args.report_only,
                  first_seed=args.first_seed, stacked=not args.per_seed, replace=args.replace_record)
    if args.doc:
        changed = fidelity_doc.write(pipeline.resolve(args.doc), rep)
        print(f"[fidelity] {args.doc}: measured-cost column {'rewritten' if changed else 'already up to date'}")
    return rep


if __name__ == "__main__":
    main()
