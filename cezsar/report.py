"""Notebooks 04–06: evaluation of every method, Tables 1/2, Figs. 1/3 and the τ-ablation outputs.

The scoring is `pipeline.evaluate_methods` (protocols, Eqs. 8–9); this file turns results into the files of
`figures/` and `runs/<name>/results.json`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cezsar import pipeline, plots, tables
from cezsar.atomic import write_text
from cezsar.config import EvalConfig
from cezsar.pipeline import TEST_SETS, Layout

ROW_NAMES = {"O": "Objects-only baseline (O)", "VE": "CEZSAR (VE)", "VE+O": "CEZSAR (VE + O)"}
DATASET_NAMES = {"ucf101": "UCF-101", "kinetics400": "Kinetics-400"}


def _source(lay: Layout, kind: str, n_classes: int, protocols: dict[str, str]) -> str:
    if lay.mode == "embedded":
        shown = ", ".join(f"{c}→{p}" for c, p in protocols.items())
        return f"SynthActions {DATASET_NAMES[kind]}-form, {n_classes} classes ({shown})"
    return DATASET_NAMES[kind]


def evaluate_all(lay: Layout, checkpoint: Path, ecfg: EvalConfig, text_model: str = "minilm") -> dict:
    """Notebook 05: O, VE and VE + O on both test sets under their protocols; writes results.json."""
    results: dict = {"mode": lay.mode, "checkpoint": str(checkpoint), "alpha": ecfg.alpha, "beta": ecfg.beta,
                     "text_model": text_model, "datasets": {}}
    for kind in TEST_SETS:
        res = pipeline.evaluate_methods(lay, kind, checkpoint, ecfg, text_model)
        res.pop("_emb")
        n = next(iter(res["O"].values()))["n_classes"] if lay.mode == "embedded" else None
        protos = {c: r["protocol"] for c, r in res["O"].items()}
        results["datasets"][kind] = {"source": _source(lay, kind, n or 0, protos), "methods": res}
    pipeline.save_json(results, lay.run_dir / "results.json")
    return results


def write_tables(results: dict, figures: Path) -> dict[str, str]:
    """Table 1 (UCF-101) and Table 2 (Kinetics-400) as .md and .csv under `figures`; returns the markdown."""
    out = {}
    for kind, stem, title in (("ucf101", "table1", "Table 1. UCF-101 top-1 accuracy (%)"),
                              ("kinetics400", "table2", "Table 2. Kinetics-400 top-1 accuracy (%)")):
        d = results["datasets"][kind]
        rows = [tables.computed_row(ROW_NAMES[v], {c: _cell(r) for c, r in d["methods"][v].items()}, d["source"])
                for v in ("O", "VE", "VE+O")]
        chance = {c: {"mean": r["chance"], "runs": [0]} for c, r in d["methods"]["O"].items()}
        rows.insert(0, tables.computed_row("Chance (1 / classes)", chance, d["source"]))
        table = tables.build_table(kind, rows)
        tables.write_table(kind, table, figures / stem, caption=title)
        out[stem] = tables.to_markdown(kind, table, caption=title)
    return out


def _cell(r: dict) -> dict:
    return {"mean": r["top1_mean"], "std": r["top1_std"] or 0.0, "runs": r["runs"]}


def tau_outputs(ablation: dict, figures: Path) -> str:
    """Notebook 04: figures/tau_ablation.png and .md from `pipeline.tau_ablation`'s rows."""
    rows = ablation["rows"]
    fig = plots.tau_ablation([r["tau"] for r in rows], [r["top1"] for r in rows], plots.PAPER_TAU,
                             dataset="SynthActions UCF-form, every class")
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / "tau_ablation.png", dpi=130)
    lines = ["| τ | triplets | top-1 (%) | top-5 (%) | paper, UCF-101 0/101 (%) |", "|---|---|---|---|---|"]
    lines += [f"| {r['tau']:.1f} | {r['triplets']} | {100 * r['top1']:.1f} | {100 * r['top5']:.1f} | "
              f"{plots.PAPER_TAU.get(round(r['tau'], 1), '–')} |" for r in rows]
    md = "\n".join(lines) + "\n"
    write_text(figures / "tau_ablation.md", md)
    return md


def _subset(emb: dict, classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Videos, labels (0..k-1), prototypes and scores restricted to `classes`."""
    col = [emb["classes"].index(c) for c in classes]
    local = np.full(len(emb["classes"]), -1)
    local[col] = np.arange(len(col))
    rows = np.flatnonzero(local[emb["labels"]] >= 0)
    return (emb["videos"][rows], local[emb["labels"][rows]], emb["prototypes"][col],
            emb["scores"][np.ix_(rows, col)])


def groups(lay: Layout, kind: str) -> dict:
    """Confusable class groups (normalised names): SynthActions' groups.json, or the paper's UCF-101 classes
    (§5, Figs. 1/3)."""
    from cezsar.datasets import normalize_class

    if lay.groups is not None and lay.groups.exists():
        g = json.loads(lay.groups.read_text())[kind]
        return {k: [normalize_class(c) for c in g[k]] for k in ("tsne", "hard")}
    return {"tsne": ["horse riding", "horse race", "pommel horse", "balance beam"],
            "hard": ["horse riding", "horse race", "pommel horse", "balance beam", "floor gymnastics",
                     "basketball", "basketball dunk", "boxing punching bag", "boxing speed bag",
                     "apply eye makeup", "apply lipstick", "brushing teeth", "blow dry hair", "haircut",
                     "head massage"]}


def figures_1_and_3(lay: Layout, checkpoint: Path, ecfg: EvalConfig, text_model: str = "minilm",
                    kind: str = "ucf101", seed: int = 0) -> dict:
    """Notebook 06: Fig. 1 (t-SNE, baseline SBERT space vs joint space) and Fig. 3 (confusion matrices of the
    hard classes, objects-only baseline vs CEZSAR VE + O); saved under figures/."""
    from cezsar.zsar import metrics

    res = pipeline.evaluate_methods(lay, kind, checkpoint, ecfg, text_model, protocols={}, methods=("O", "VE+O"))
    base, ours = res["_emb"]["O"], res["_emb"]["VE+O"]
    g = groups(lay, kind)
    lay.figures.mkdir(parents=True, exist_ok=True)
    spaces, labels = {}, None
    for title, emb in (("(a) SBERT space: objects-only baseline", base), ("(b) CEZSAR joint space (VE + O)", ours)):
        v, labels, p, _ = _subset(emb, g["tsne"])
        spaces[title] = (v, p)
    f1 = plots.fig1_tsne(spaces, labels, g["tsne"], seed=seed)
    f1.savefig(lay.figures / "fig1_tsne.png", dpi=130)
    mats, accs = {}, {}
    for name, emb in (("objects-only baseline", base), ("CEZSAR (VE + O)", ours)):
        _, y, _, s = _subset(emb, g["hard"])
        m = metrics(s, y, g["hard"])
        accs[name] = m["top1"]
        mats[f"({'ab'[len(mats)]}) {name}: acc. {100 * m['top1']:.1f}%"] = np.asarray(m["confusion"])
    f3 = plots.fig3_confusion(mats, g["hard"])
    f3.savefig(lay.figures / "fig3_confusion.png", dpi=130)
    return {"fig1": f1, "fig3": f3, "hard_class_accuracy": accs, "tsne_classes": g["tsne"], "hard_classes": g["hard"]}
