"""Notebook 05: evaluation of every method, Tables 1/2 and the comparisons (the figures: `cezsar.harness.paper_figures`,
the previews: `cezsar.harness.previews`).

The scoring is `pipeline_evaluation.evaluate_methods` (protocols, Eqs. 8–9); this file turns results into the files of
`figures/` and `runs/<name>/results.json`.
"""
from __future__ import annotations

import json
from pathlib import Path

from IPython.display import Markdown

from cezsar.harness import clip_stage, pipeline, pipeline_evaluation, pipeline_training
from cezsar.reporting import compare, tables
from cezsar.base.atomic import write_text
from cezsar.encoders.clip import is_clip
from cezsar.evaluation.clip_baseline import TEMPLATE
from cezsar.harness.params import Settings
from cezsar.harness.pipeline import TEST_SETS, Layout
from cezsar.reporting.results import RESULTS_VERSION, code_version
from cezsar.base import environment  # results.json's "environment", the tables' "Computed on" (docs/interfaces.md)

ROW_NAMES = {"O": "Objects-only baseline (O)", "VE": "CEZSAR (VE)", "VE+O": "CEZSAR (VE + O)"}
# the modern peer on the same splits (docs/decisions.md §14): present in every table, computed with `clip_model`
CLIP_ROW_NAMES = {"CLIP-names": "CLIP frame average (class names)",
                  "CLIP-descriptions": "CLIP frame average (descriptions)", "CLIP+VE": "CEZSAR on CLIP features"}
NEEDS_WEIGHTS = "needs weights"
NEEDS_WEIGHTS_NOTE = ("not computed: set clip_model (e.g. openai/clip-vit-base-patch16, or its local folder) in the "
                      "parameter set; docs/clip.md")
DATASET_NAMES = pipeline.DATASET_NAMES


def _source(lay: Layout, kind: str, res: dict, protocols: dict[str, str], provenance: dict) -> str:
    """What a computed row was computed on: dataset and its videos used, backbone, text model, epochs."""
    first = next(iter(next(iter(res.values())).values()))
    used, total = first["n_videos"], first["n_dataset_videos"]
    name = f"SynthActions {DATASET_NAMES[kind]}-form" if lay.mode == "embedded" else DATASET_NAMES[kind]
    parts = [f"{name}, {first['n_classes'] if lay.mode == 'embedded' else ''}".rstrip(", ")]
    if lay.mode == "embedded":
        parts[0] += " classes (" + ", ".join(f"{c}→{p}" for c, p in protocols.items()) + ")"
    parts.append(f"{used}/{total} videos" + (f" ({total - used} without features)" if used < total else ""))
    parts.append(f"{first.get('backbone') or 'unknown backbone'}, {first.get('text_model')}")
    epochs = provenance.get("epochs_run")
    if epochs is not None:
        parts.append(f"{epochs} epoch{'s' if epochs != 1 else ''}")
    seeds = provenance.get("train_seeds")
    if seeds and len(seeds) > 1:
        parts.append(f"{len(seeds)} training seeds ({seeds[0]}–{seeds[-1]})")
    threads = provenance.get("threads")  # training's own thread count (docs/decisions.md, 'Training threads')
    if threads:
        parts.append(f"trained with {threads} thread{'s' if threads != 1 else ''}")
    return "; ".join(parts)


def _provenance(checkpoint: Path | dict[int, Path]) -> dict:
    """The training record beside a checkpoint (provenance.json, log.json), or {} without one. For several
    seeds' checkpoints ({seed: path}): the first seed's record, "epochs_run" as the most any seed ran, and
    "train_seeds" and "per_seed" (each seed's record)."""
    if isinstance(checkpoint, dict):
        per = {k: _provenance(c) for k, c in checkpoint.items()}
        first = dict(next(iter(per.values())))
        runs = [p["epochs_run"] for p in per.values() if "epochs_run" in p]
        if runs:
            first["epochs_run"] = max(runs)
        first["train_seeds"] = list(checkpoint)
        first["per_seed"] = {str(k): p for k, p in per.items()}
        return first
    folder = Path(checkpoint).parent
    out: dict = {}
    if (folder / "provenance.json").is_file():
        out.update(json.loads((folder / "provenance.json").read_text()))
    if (folder / "log.json").is_file():
        log = json.loads((folder / "log.json").read_text())
        hist = log["history"] if isinstance(log, dict) else log
        out["epochs_run"] = len(hist)
    return out


def evaluate_all(lay: Layout, s: Settings, checkpoint: Path | None = None) -> dict:
    """Notebook 05: O, VE and VE + O (VE alone without objects) on both test sets under their protocols, the
    trained rows once per training seed (`pipeline_evaluation.evaluate_seeds`); writes results.json with the code
    version, the parameter set, the training provenance and every run of every seed. `checkpoint`: one model instead of
    the set's seeds."""
    checkpoints = {int(s.seed): Path(checkpoint)} if checkpoint else pipeline_training.model_checkpoints(lay, s)
    prov = _provenance(checkpoints)
    results: dict = {"results_version": RESULTS_VERSION, "mode": lay.mode, "code": code_version(),
                     "params": s.to_dict(), "overrides": {k: v[1] for k, v in s.overrides.items()},
                     "checkpoint": str(next(iter(checkpoints.values()))),
                     "checkpoints": {str(k): str(c) for k, c in checkpoints.items()}, "train_seeds": list(checkpoints),
                     "training": prov, "alpha": s.alpha, "beta": s.beta,
                     "text_model": s.text_model, "objects_used": pipeline.uses_objects(lay, s), "datasets": {}}
    for kind in TEST_SETS:
        print(f"evaluating {DATASET_NAMES[kind]}", flush=True)
        res = pipeline_evaluation.evaluate_seeds(lay, kind, checkpoints, s)
        res.pop("_emb")
        res.pop("_seed_emb")
        first = next(iter(next(iter(res.values())).values()))
        protos = {c: r["protocol"] for c, r in next(iter(res.values())).items()}
        results["datasets"][kind] = {"source": _source(lay, kind, res, protos, prov), "methods": res,
                                     "videos": first["n_dataset_videos"], "videos_used": first["n_videos"],
                                     "skipped_videos": first["skipped_videos"]}
    if s.clip_model:  # the CLIP rows: extra methods beside O, VE, VE + O (absent: the tables say "needs weights")
        peer = clip_stage.clip_rows(lay, s)
        results["clip"] = {"model": s.clip_model, "template": TEMPLATE, "training": peer["training"]}
        for kind in TEST_SETS:
            d = results["datasets"][kind]
            d["methods"].update(peer[kind])
            trained = peer["training"].get("checkpoints") or {}
            d["clip_sources"] = {  # each row's own: the baseline has no epochs, its text model is CLIP's
                v: _source(lay, kind, {v: res}, {c: r["protocol"] for c, r in res.items()},
                           _provenance({int(k): Path(c) for k, c in trained.items()})
                           if trained and v == "CLIP+VE" else {})
                for v, res in peer[kind].items()}
    results["environment"] = environment.record(str(s.device))
    pipeline.save_json(results, lay.run_dir / "results.json")
    return results


def write_tables(results: dict, figures: Path) -> dict[str, str]:
    """Table 1 (UCF-101) and Table 2 (Kinetics-400) as .md and .csv under `figures`; returns the markdown."""
    out = {}
    for kind, stem, title in (("ucf101", "table1", "Table 1. UCF-101 top-1 accuracy (%)"),
                              ("kinetics400", "table2", "Table 2. Kinetics-400 top-1 accuracy (%)")):
        d = _with_environment(results["datasets"][kind], results.get("environment"), "clip" in results)
        rows = [tables.computed_row(ROW_NAMES[v], {c: _cell(r) for c, r in d["methods"][v].items()}, d["source"])
                for v in ("O", "VE", "VE+O") if v in d["methods"]]
        if d["methods"]:  # nothing computed (only CLIP results files not given either): no chance row
            any_method = next((v for v in ("O", "VE", "VE+O") if v in d["methods"]), next(iter(d["methods"])))
            chance = {c: {"mean": r["chance"], "runs": [0]} for c, r in d["methods"][any_method].items()}
            rows.insert(0, tables.computed_row("Chance (1 / classes)", chance, d["source"]))
        rows += clip_table_rows(d)
        table = tables.build_table(kind, rows)
        tables.write_table(kind, table, figures / stem, caption=title)
        out[stem] = tables.to_markdown(kind, table, caption=title)
    return out


def _with_environment(d: dict, env: dict | None, clip_here: bool) -> dict:
    """A test set's results with the environment's short form closing each "Computed on" of the rows computed
    with it (the CLIP rows only when notebook 05 computed them too); none recorded: as is."""
    if not env:
        return d
    tail = "; " + environment.short(env)
    clip = d.get("clip_sources", {})
    return {**d, "source": d["source"] + tail,
            "clip_sources": {v: text + tail for v, text in clip.items()} if clip_here else clip}


def clip_table_rows(d: dict) -> list[tables.Row]:
    """The CLIP rows of one test set's results: computed ones, or "needs weights" with how to compute them."""
    rows = []
    for variant, name in CLIP_ROW_NAMES.items():
        if variant in d["methods"]:
            rows.append(tables.computed_row(name, {c: _cell(r) for c, r in d["methods"][variant].items()},
                                            d.get("clip_sources", {}).get(variant, d["source"])))
        else:
            rows.append(tables.pending_row(name, NEEDS_WEIGHTS, NEEDS_WEIGHTS_NOTE))
    return rows


def add_clip_results(results: dict | None, evaluated: list[dict]) -> dict:
    """Tables' input: notebook 05's results (or, with None, none) plus `cezsar evaluate` results of the CLIP rows,
    each placed by its dataset, its row (variants CLIP-names, CLIP-descriptions; VE of a model trained on CLIP
    features is "CLIP+VE") and the table column of its protocol. Anything else is a ValueError naming it."""

    out = json.loads(json.dumps(results)) if results else {"datasets": {}}
    for res in evaluated:
        kind, variant = res.get("dataset"), res.get("variant")
        if kind not in TEST_SETS:
            raise ValueError(f"a {kind!r} result: Tables 1/2 hold ucf101 and kinetics400")
        if variant == "VE" and is_clip(res.get("backbone")):
            variant = "CLIP+VE"
        if variant not in CLIP_ROW_NAMES:
            raise ValueError(f"{res.get('features')}: a {variant} result of {res.get('backbone')} features; only the "
                             "CLIP rows are added here (the others come from notebook 05's results.json)")
        d = out["datasets"].setdefault(kind, {"methods": {}, "source": ""})
        column = _column(kind, res, d)
        d["methods"].setdefault(variant, {})[column] = res
        d.setdefault("clip_sources", {})[variant] = (
            f"{DATASET_NAMES[kind]} at {res.get('dataset_root')}; {res['n_videos']}/{res['n_dataset_videos']} videos; "
            f"{res.get('backbone')}, {res.get('text_model')}")
    return out


def _column(kind: str, res: dict, d: dict) -> str:
    """The table column a result's protocol fills: the one notebook 05 ran it under, else the one
    `pipeline_evaluation.table_protocols` gives for its dataset's class count (its split file's; 0/101 ... on the real
    data); every class (0/all) is the first column."""
    proto = res["protocol"]
    ran = {r["protocol"]: c for m in d["methods"].values() for c, r in m.items()}
    split = Path(str(res.get("split_file")))
    total = json.loads(split.read_text()).get("n_dataset_classes") if split.is_file() else None
    scaled = {p: c for c, p in pipeline_evaluation.table_protocols(kind, int(total)).items()} if total else {}
    paper = {f"0/{c}": c for c in tables.COLUMNS[kind]}
    column = ran.get(proto) or scaled.get(proto) or paper.get(proto) or \
        (tables.COLUMNS[kind][0] if proto == "0/all" else None)
    if column is None:
        raise ValueError(f"{res.get('split_file')}: protocol {proto} is no column of Table "
                         f"{1 if kind == 'ucf101' else 2} ({', '.join(f'0/{c}' for c in tables.COLUMNS[kind])}, or "
                         "the columns of notebook 05's results.json)")
    return column


def _cell(r: dict) -> dict:
    """A table cell's numbers: the mean (over seeds, when the record has them), the subsets' spread, and the
    spread over training seeds with their count."""
    seeds = r.get("seeds") or {}
    return {"mean": r["top1_mean"], "std": r["top1_std"] or 0.0, "runs": r["runs"],
            "n_seeds": seeds.get("n", 1), "seed_std": seeds.get("top1_std", 0.0)}


def _per_seed(r: dict) -> list[float]:
    """Each training seed's top-1 of a record (one value for a record of one model)."""
    return list((r.get("seeds") or {}).get("top1") or [r["top1_mean"]])


def comparisons(results: dict) -> list[str]:
    """Every comparison the tables support, generated by `cezsar.reporting.compare` from each seed's numbers (paired by
    training seed): CEZSAR VE + O against VE, and each trained row against the objects-only baseline, per test
    set and column."""
    lines = []
    for kind in TEST_SETS:
        d = results["datasets"].get(kind)
        if not d:
            continue
        m = d["methods"]
        pairs = [("VE+O", "VE"), ("VE+O", "O"), ("VE", "O"), ("CLIP+VE", "CLIP-descriptions")]
        for a, b in pairs:
            if a not in m or b not in m:
                continue
            for col in m[a]:
                if col not in m[b]:
                    continue
                what = f"{DATASET_NAMES[kind]}-form, {col} column, top-1" if results.get("mode") == "embedded" \
                    else f"{DATASET_NAMES[kind]} 0/{col}, top-1"
                other = _per_seed(m[b][col])
                lines.append(compare.sentence(_row_name(a), _per_seed(m[a][col]), _row_name(b),
                                              other if len(other) > 1 else other[0], what))
    return lines


def _row_name(variant: str) -> str:
    return ROW_NAMES.get(variant) or CLIP_ROW_NAMES.get(variant, variant)


def write_comparisons(results: dict, figures: Path) -> Markdown:
    """Notebook 05: the generated comparison sentences (`comparisons`) as `<figures>/comparisons.md`; shown."""
    seeds = len(results.get("train_seeds") or [1])
    md = (f"**Comparisons** (paired over {seeds} training seed{'s' if seeds != 1 else ''}; 95 % t-interval of the "
          "mean difference; generated by `cezsar.reporting.compare`)\n\n"
          + "\n".join(f"- {x}" for x in comparisons(results)) + "\n")
    write_text(figures / "comparisons.md", md)
    return Markdown(md)
