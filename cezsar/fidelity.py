"""What each released-code behaviour costs: the paper configuration, each switch alone, all of them together.

For every variant x training seed: mine the triplets (once per mining configuration), train the joint
embedder on the parameter set's training videos, and score Eq. 9 (VE + O, and VE alone) with every class of
the UCF-form and Kinetics-form test sets (protocol 0/all). One result file per (variant, seed) under
`<work_dir>/fidelity/results/`, so a killed measurement resumes where it stopped; triplets and checkpoints
are cached by configuration, so a variant that only changes evaluation reuses the paper model of its seed.
`report` turns the results into `figures/fidelity.{json,md,png}` (mean ± std over seeds, and the change
against the variant's reference). docs/fidelity.md explains each row.

    python -m cezsar.fidelity --params params/embedded.yaml --seeds 3 --epochs 4
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import torch

from cezsar import compare, dataset_embedding, datasets, pipeline, zsar
from cezsar.atomic import write_json, write_text
from cezsar.captions import read_activitynet_files
from cezsar.checkpoints import load_checkpoint
from cezsar.config import to_dict
from cezsar.mining import mine
from cezsar.params import load, stage_configs
from cezsar.plots import _shown_once
from cezsar.text import SentenceEncoder
from cezsar.train import fit
from cezsar.train_inputs import segment_bounds
from cezsar.triplets import TripletSet

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
    "width_init": ("d_model 1024, dropout 0.2, Xavier init", {"d_model": 1024, "dropout": 0.2, "xavier_init": True},
                   "paper"),
    "validation": ("validation loss in train mode (dropout on)", {"released_validation": True}, "paper"),
    "split": ("triplet-level 70/30 validation split", {"split": "triplet", "val_fraction": 0.3}, "paper"),
    "draw": ("negatives with replacement from the released list of positive entries", {"draw": "released"}, "paper"),
    "raw_sum": ("Eq. 9 as a raw sum (nothing L2-normalised)", {"normalize_terms": False}, "paper"),
    "objects_eval": ("O(v): mean over 16 padded rows, top-3, one all-sense text", {"eval_released_objects": True},
                     "paper"),
    "first_16s": ("test clips cut to their first 16 s", {"max_seconds": 16}, "paper"),
    "descriptions": ("descriptions lower-cased, cleaned, top-1 by similarity to the name",
                     {"released_descriptions": True}, "paper"),
    "obj2": ("the paper's 2 object positives per window (reference of the next three)", OBJ2, "paper"),
    "object_positives": ("released object positives: all-sense fragments, 10 s from a random whole second",
                         {**OBJ2, "mine_released_objects": True}, "obj2"),
    "far_from_all": ("paper words: a negative far from the other positives of its window",
                     {**OBJ2, "far_from_all": True},
                     "obj2"),
    "object_tau": ("paper words: the tau rule also picks object positives", {**OBJ2, "object_tau": True}, "obj2"),
    "iid": ("i.i.d. batches (paper §4, released) instead of the embedded set's ~16 windows x 8 triplets",
            {"batch_makeup": "iid"}, "paper"),
    "released": ("every released behaviour at once (params/released.yaml)", RELEASED, "paper"),
}
NOT_MEASURED = {
    "preprocess": "BGR + resize 256 / centre crop 224: needs every video re-extracted (ExtractConfig.released_preprocess)",
    "sampling": "25-fps linspace frame sampling: needs every video re-extracted (ExtractConfig.released_sampling)",
    "fp32": "fp32 on GPU: the CPU run has no autocast to turn off (TrainConfig.autocast)",
    "ddof0": "std with ddof 0: changes the reported std over class subsets, never a top-1 mean (EvalConfig.std_ddof)",
}


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_one(lay: Any, name: str, seed: int, base: dict, out: Path, epochs: int | None = None,
            text_model: str = "minilm", existing_only: bool = False) -> dict | None:
    """Mine (cached), train (cached, resumable) and score one variant with one training seed; the result file
    `<out>/results/<configuration key>/<name>/seed<seed>.json` is reused when it exists."""

    values = {**base, **VARIANTS[name][1]}
    if epochs is not None:
        values["epochs"] = epochs
    cfg = stage_configs(values)  # the same mapping the notebooks use
    tcfg = dataclasses.replace(cfg["train"], seed=seed)
    # one folder per full configuration: a trial with other epochs or data never answers for this one
    captions_key = str(lay.captions[0]) if len(lay.captions) == 1 else [str(c) for c in lay.captions]
    path = out / "results" / _key({k: to_dict(c) for k, c in cfg.items()}, captions_key, text_model) / \
        name / f"seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    if existing_only:
        return None
    t0 = time.perf_counter()
    enc = SentenceEncoder(text_model)
    captions = read_activitynet_files(lay.captions)
    store = lay.store("activitynet")
    mkey = _key(to_dict(cfg["mine"]), text_model)
    trip_path = out / "triplets" / f"{mkey}.npz"
    if trip_path.is_file():
        trip = TripletSet.load(trip_path)
    else:
        trip = mine(captions, enc, store, cfg["mine"])
        trip.save(trip_path)
    t_mine = time.perf_counter()
    model_dir = out / "models" / _key(mkey, to_dict(cfg["model"]), to_dict(tcfg))
    text_emb = enc.encode(trip.sentences)  # (S, text_dim)
    hist = fit(trip, store, text_emb, tcfg, cfg["model"], model_dir, resume=True, text_model=enc.model_id,
               text_model_name=text_model, progress=False, segment_bounds=segment_bounds(captions))
    model = load_checkpoint(model_dir / "best.pt")[0]
    t_train = time.perf_counter()
    ecfg = cfg["eval"]
    scores: dict = {}
    for kind in ("ucf101", "kinetics400"):
        ds = datasets.load_dataset(kind, lay.roots[kind])
        desc = datasets.read_descriptions(lay.descriptions[kind])
        tstore = lay.store(kind)
        for variant, beta in (("VE+O", ecfg.beta), ("VE", 0.0)):
            emb = dataset_embedding.embed_dataset(ds, tstore, desc, enc, model=model, alpha=ecfg.alpha, beta=beta,
                                                  normalize_terms=ecfg.normalize_terms, n_objects=ecfg.n_objects,
                                                  max_seconds=ecfg.max_seconds,
                                                  released_objects=ecfg.released_objects,
                                                  released_descriptions=ecfg.released_descriptions)
            scores[f"{kind}_{variant}"] = zsar.metrics(emb["scores"], emb["labels"])["top1"]
    res = {"variant": name, "seed": seed, **scores, "epochs_run": hist["epochs_run"],
           "best_epoch": hist["best_epoch"], "triplets": len(trip), "overrides": VARIANTS[name][1],
           "seconds": {"mine": round(t_mine - t0, 1), "train": round(t_train - t_mine, 1),
                       "evaluate": round(time.perf_counter() - t_train, 1)}}
    write_json(path, res)
    return res


def measure(params_file: str, seeds: int = 3, epochs: int | None = None, variants: list[str] | None = None,
            work: str | Path | None = None, log: Callable[[str], None] = print, existing_only: bool = False,
            first_seed: int = 0) -> list[dict]:
    """Every variant x seeds 0..seeds-1 (resumable: finished pairs are read back); returns the result dicts.
    `existing_only`: collect the finished pairs, run nothing."""

    lay = pipeline.layout_from(params_file)
    base = load(params_file)  # the whole set: validated, every key typed like its default
    out = Path(work) if work else lay.work / "fidelity"
    names = variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown fidelity variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    results = []
    for seed in range(first_seed, seeds):  # seed-major: an interrupted run still has every variant at the first seeds
        for name in names:
            t0 = time.perf_counter()
            r = run_one(lay, name, seed, base, out, epochs, base.get("text_model", "minilm"), existing_only)
            if r is None:
                continue
            results.append(r)
            log(f"[fidelity] {name} seed {seed}: UCF {100 * r['ucf101_VE+O']:.1f} %, Kinetics "
                f"{100 * r['kinetics400_VE+O']:.1f} % ({time.perf_counter() - t0:.0f} s)")
    return results


def table(results: list[dict]) -> list[dict]:
    """Per variant: mean ± std (ddof 1) over seeds of each score, and the change of the mean against its
    reference variant (docs/fidelity.md "measured cost")."""
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["variant"], []).append(r)
    keys = ("ucf101_VE+O", "kinetics400_VE+O", "ucf101_VE", "kinetics400_VE")
    stats = {}
    for name, rs in by.items():
        stats[name] = {}
        for k in keys:
            v = np.array([r[k] for r in rs], np.float64)
            stats[name][k] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
    rows = []
    for name in [n for n in VARIANTS if n in by]:
        ref = VARIANTS[name][2]
        row = {"variant": name, "what": VARIANTS[name][0], "reference": ref, "seeds": len(by[name]),
               # each seed's scores, for the paired comparisons (cezsar.compare) under the table
               "per_seed": {k: {str(r["seed"]): r[k] for r in by[name]} for k in keys}}
        for k in keys:
            row[k] = stats[name][k]
            row[f"delta_{k}"] = stats[name][k][0] - stats[ref][k][0] if ref in stats else None
        rows.append(row)
    return rows


def to_markdown(rows: list[dict], settings: dict) -> str:
    """The fidelity table as markdown: top-1 (%) of Eq. 9 (VE + O) on every class, and the change (p.p.)."""
    def cell(row: dict, k: str) -> str:
        m, s = row[k]
        return f"{100 * m:.1f} ± {100 * s:.1f}"

    def delta(row: dict, k: str) -> str:
        d = row[f"delta_{k}"]
        return "–" if d is None or row["variant"] == row["reference"] else f"{100 * d:+.1f}"

    lines = [f"Top-1 accuracy (%) on every class of SynthActions' UCF-form and Kinetics-form test sets, mean ± std "
             f"over {settings['seeds']} training seeds; Δ = change of the mean against the reference variant "
             f"(p.p.). {settings['note']}", "",
             "| variant | what it switches | UCF VE+O | Δ | Kinetics VE+O | Δ | UCF VE | Δ | Kinetics VE | Δ | vs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['what']} | " + " | ".join(
            f"{cell(r, k)} | {delta(r, k)}" for k in ("ucf101_VE+O", "kinetics400_VE+O", "ucf101_VE",
                                                      "kinetics400_VE")) + f" | {r['reference']} |")
    paired = comparisons(rows)
    if paired:
        lines += ["", "Each variant against its reference, paired by training seed (generated by `cezsar.compare`):",
                  "", *[f"- {x}" for x in paired]]
    lines += ["", "Not measured here: " + "; ".join(f"{k} ({v})" for k, v in NOT_MEASURED.items()) + "."]
    return "\n".join(lines) + "\n"


def comparisons(rows: list[dict]) -> list[str]:
    """The paired comparison (`cezsar.compare`) of each variant's VE + O top-1 with its reference's, over the
    seeds both have, per test set; rows recorded without per-seed scores give none."""
    by = {r["variant"]: r for r in rows}
    out = []
    for r in rows:
        ref = by.get(r["reference"])
        if ref is None or r is ref or "per_seed" not in r or "per_seed" not in ref:
            continue
        for k, where in (("ucf101_VE+O", "UCF-form"), ("kinetics400_VE+O", "Kinetics-form")):
            mine, theirs = r["per_seed"][k], ref["per_seed"][k]
            both = sorted(set(mine) & set(theirs), key=int)
            if both:
                out.append(compare.sentence(r["variant"], [mine[x] for x in both], r["reference"],
                                            [theirs[x] for x in both], f"{where}, every class, VE + O top-1"))
    return out


def plot(rows: list[dict]):
    """Change of the VE + O top-1 against each variant's reference, per test set, with the seeds' std."""


    shown = [r for r in rows if r["variant"] != r["reference"]]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(shown) + 1.4))
    y = np.arange(len(shown))
    for off, (k, label) in zip((-0.2, 0.2), (("ucf101_VE+O", "UCF-form"), ("kinetics400_VE+O", "Kinetics-form"))):
        d = [100 * (r[f"delta_{k}"] or 0.0) for r in shown]
        e = [100 * r[k][1] for r in shown]
        ax.barh(y + off, d, height=0.38, xerr=e, label=label, capsize=2)
    ax.set_yticks(y, [r["variant"] for r in shown])
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("Δ top-1 (p.p.) against the reference (paper; obj2 for the object-positive rows)")
    ax.set_title("What each released-code behaviour costs (VE + O, every class)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _shown_once(fig)


def report(results: list[dict], figures: str | Path, settings: dict) -> dict:
    """Write figures/fidelity.{json,md,png}; returns {"rows", "markdown", "figure"}."""
    figures = Path(figures)
    rows = table(results)
    md = to_markdown(rows, settings)
    write_json(figures / "fidelity.json", {"settings": settings, "rows": rows, "results": results})
    write_text(figures / "fidelity.md", md)
    fig = plot(rows)
    fig.savefig(figures / "fidelity.png", dpi=130)
    return {"rows": rows, "markdown": md, "figure": fig}


def recorded(figures: str | Path) -> dict | None:
    """The recorded measurement (figures/fidelity.json) as {"rows", "markdown", "figure", "settings"}, or None."""
    path = Path(figures) / "fidelity.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    rows = [{**r, **{k: tuple(v) for k, v in r.items() if isinstance(v, list)}} for r in data["rows"]]
    return {"rows": rows, "markdown": (Path(figures) / "fidelity.md").read_text() if (Path(figures) / "fidelity.md")
            .is_file() else to_markdown(rows, data["settings"]), "figure": plot(rows), "settings": data["settings"]}


def show_or_measure(params_file: str, figures: str | Path, seeds: int = 3, epochs: int | None = None) -> dict:
    """Notebook 07: the recorded table and plot when `<figures>/fidelity.json` exists; else, on the embedded set,
    measure and record. On real data (mode paper) it never starts the measurement by itself: 57 trainings at the
    paper's scale take days, so it says how to run it instead."""
    rec = recorded(figures)
    if rec is not None:
        return rec
    if load(params_file)["mode"] != "embedded":
        return {"rows": [], "figure": None, "settings": {},
                "markdown": f"No fidelity measurement is recorded in `{figures}`. It trains one model per variant and "
                            f"seed, days at the paper's scale on a CPU; run it on its own with `python -m "
                            f"cezsar.fidelity --params {params_file}`. The embedded set's measurement is in "
                            "`figures/fidelity.md`."}
    return main(["--params", params_file, "--seeds", str(seeds), "--figures", str(figures)]
                + (["--epochs", str(epochs)] if epochs else []), quiet=True)


def main(argv: list[str] | None = None, quiet: bool = False) -> dict:
    """`python -m cezsar.fidelity`: measure (resumable) and write figures/fidelity.{json,md,png}."""
    p = argparse.ArgumentParser(prog="python -m cezsar.fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--params", default="params/embedded.yaml", help="parameter set (its data, mining and training)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per variant (0 .. N-1; default 3)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per training (default: the parameter set's)")
    p.add_argument("--variants", default=None, help=f"comma list (default all): {','.join(VARIANTS)}")
    p.add_argument("--figures", default="figures", help="where fidelity.{json,md,png} go (default figures/)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: ~5x faster than 2 on a loaded 2-core machine; 0 = torch's)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="start at this seed (a second process can take the later seeds; results are shared)")
    p.add_argument("--report-only", action="store_true", help="tabulate the finished (variant, seed) pairs only")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results = measure(args.params, args.seeds, args.epochs, args.variants.split(",") if args.variants else None,
                      log=(lambda s: None) if quiet else print, existing_only=args.report_only,
                      first_seed=args.first_seed)
    if not results:
        raise SystemExit("fidelity: no finished (variant, seed) pair to report")

    base = load(args.params)
    epochs = args.epochs or base["epochs"]
    settings = {"params": args.params, "seeds": len({r["seed"] for r in results}), "epochs": epochs,
                "command": f"python -m cezsar.fidelity --params {args.params} --seeds {args.seeds}"
                           + (f" --epochs {args.epochs}" if args.epochs else ""),
                "seconds_all_runs": round(sum(sum(r["seconds"].values()) for r in results)),
                **({} if args.report_only else {"seconds_this_call": round(time.perf_counter() - t0)}),
                "note": f"Each model trained {epochs} epochs (early stopping as the parameter set says) on "
                        "SynthActions' training videos, mining seed fixed; one training per (variant, seed), "
                        "evaluation-only variants reuse the paper model of their seed."}
    return report(results, pipeline.resolve(args.figures), settings)


if __name__ == "__main__":
    main()
