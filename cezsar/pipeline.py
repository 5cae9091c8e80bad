"""The notebooks' stages, one function per notebook section (DESIGN §2, §9).

Each stage takes a `Layout` (where everything lives for one parameter set) plus plain parameters, skips the
work that is already finished and valid (features, triplet files, checkpoints, split files), and returns a
dict the notebook displays. The computation itself lives in the stage modules (features, mining, train,
protocols); this file only wires them together.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from cezsar import config
from cezsar.atomic import write_json
from cezsar.config import EvalConfig, ExtractConfig, MiningConfig, TrainConfig

TEST_SETS = ("ucf101", "kinetics400")


def resolve(path: str | Path) -> Path:
    """A parameter path: absolute as given, relative ones against the project root (not the notebook's cwd)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else config.PROJ_ROOT / p


@dataclass
class Layout:
    """Where one parameter set reads and writes (raw -> interim -> processed -> runs, DESIGN §2)."""

    mode: str  # "embedded" (SynthActions) or "paper" (real data)
    captions: Path  # ActivityNet Captions train.json
    train_videos: Path | None  # folder of <video_id>.mp4 (None when released features are used)
    train_features: Path  # folder of <video_id>.npy (extracted here, or the released ones)
    roots: dict[str, Path]  # test set kind -> dataset root
    test_features: dict[str, Path]  # test set kind -> feature folder
    descriptions: dict[str, Path]  # test set kind -> descriptions JSON
    groups: Path | None  # confusable class groups (Figs. 1, 3)
    work: Path  # interim/processed outputs of this parameter set
    run_dir: Path  # runs/<run_name>: results.json, executed notebooks
    figures: Path

    def triplets(self, tau: float) -> Path:
        return self.work / "processed" / f"triplets_tau{tau:.2f}.npz"

    def model_dir(self, tau: float) -> Path:
        return self.work / "models" / f"tau{tau:.2f}"


def layout(mode: str, data_root: str, work_dir: str, run_dir: str, figures_dir: str = "figures",
           anet_captions: str = "", anet_videos: str = "", anet_features: str = "", ucf101_root: str = "",
           ucf101_features: str = "", kinetics400_root: str = "", kinetics400_features: str = "") -> Layout:
    """The Layout of a parameter set. Embedded mode derives every path from `data_root` (SynthActions);
    paper mode takes each real path from its parameter (DESIGN §4 formats, see params/paper.yaml)."""
    work = resolve(work_dir)
    if mode == "embedded":
        root = resolve(data_root)
        return Layout(mode, root / "activitynet" / "train.json", root / "activitynet" / "videos",
                      work / "features" / "activitynet", {k: root / k for k in TEST_SETS},
                      {k: work / "features" / k for k in TEST_SETS},
                      {k: root / "descriptions" / f"{k}.json" for k in TEST_SETS}, root / "groups.json", work,
                      resolve(run_dir), resolve(figures_dir))
    if mode != "paper":
        raise ValueError(f"mode must be 'embedded' or 'paper', not {mode!r}")
    return Layout(mode, resolve(anet_captions), resolve(anet_videos) if anet_videos else None,
                  resolve(anet_features) if anet_features else work / "features" / "activitynet",
                  {"ucf101": resolve(ucf101_root), "kinetics400": resolve(kinetics400_root)},
                  {"ucf101": resolve(ucf101_features) if ucf101_features else work / "features" / "ucf101",
                   "kinetics400": resolve(kinetics400_features) if kinetics400_features
                   else work / "features" / "kinetics400"},
                  {k: config.DESCRIPTIONS_DIR / f"{k}.json" for k in TEST_SETS}, None, work,
                  resolve(run_dir), resolve(figures_dir))


LAYOUT_KEYS = ("mode", "data_root", "work_dir", "run_dir", "figures_dir", "anet_captions", "anet_videos",
               "anet_features", "ucf101_root", "ucf101_features", "kinetics400_root", "kinetics400_features")


def layout_from(params_file: str, overrides: dict | None = None) -> Layout:
    """The Layout of a notebook: every path comes from the parameter file (params/*.yaml), so the paths are
    written in one place; values of the same names in `overrides` (papermill's injected parameters, i.e. the
    notebook's `globals()`) win. `run_dir` defaults to runs/<parameter file name>."""
    import yaml

    path = resolve(params_file)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    values = {k: "" for k in LAYOUT_KEYS}
    values.update(mode="embedded", figures_dir="figures", run_dir=f"runs/{path.stem}")
    values.update({k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k in LAYOUT_KEYS})
    values.update({k: (overrides or {})[k] for k in LAYOUT_KEYS if k in (overrides or {})})
    return layout(**{k: str(v) for k, v in values.items()})


# --- 00: data ----------------------------------------------------------------------------------
def prepare_data(lay: Layout, seed: int = 0, size: str = "default") -> dict:
    """Notebook 00: generate SynthActions (embedded; skipped when the same seed and size exist) or check
    every real input up front, then `check-data` summaries of each part."""
    from cezsar import datasets

    out: dict = {}
    if lay.mode == "embedded":
        root = lay.captions.parents[1]
        stamp = root / "synthactions.json"
        same = stamp.exists() and {k: json.loads(stamp.read_text()).get(k) for k in ("seed", "size")} == \
            {"seed": seed, "size": size}
        if not same or not lay.captions.exists():
            from cezsar.synthetic import generate

            out["generated"] = generate(root, seed=seed, size=size)
        else:
            out["generated"] = f"reused {root} (seed {seed}, size {size})"
    else:
        check_real_inputs(lay)
    caps = datasets.read_activitynet(lay.captions)
    out["activitynet"] = {"videos": len(caps.durations), "segments": len(caps.segments),
                          "problems": dict(caps.problems)}
    for kind in TEST_SETS:
        ds = datasets.load_dataset(kind, lay.roots[kind])
        desc = datasets.read_descriptions(lay.descriptions[kind])
        missing = [c for c in ds.classes if c not in desc]
        if missing:
            raise ValueError(f"{lay.descriptions[kind]}: no description for {missing[:10]}")
        out[kind] = {"classes": len(ds.classes), "videos": len(ds.videos), "problems": dict(ds.problems)}
    return out


def check_real_inputs(lay: Layout) -> None:
    """Paper mode: list every missing input and where to get it, in one error (DESIGN §9)."""
    where = {
        "captions": "ActivityNet Captions train.json (cs.stanford.edu/people/ranjaykrishna/densevid)",
        "train": "the released BiT features (paper footnote 11) or raw ActivityNet videos",
        "ucf101": "UCF-101 with classInd.txt / testlist01.txt (crcv.ucf.edu/data/UCF101.php)",
        "kinetics400": "Kinetics-400 test.csv + clips (github.com/cvdfoundation/kinetics-dataset)",
    }
    missing = []
    if not lay.captions.is_file():
        missing.append(f"anet_captions={lay.captions}: {where['captions']}")
    if not lay.train_features.is_dir() and not (lay.train_videos and lay.train_videos.is_dir()):
        missing.append(f"anet_features={lay.train_features} or anet_videos: {where['train']}")
    for kind in TEST_SETS:
        if not lay.roots[kind].exists():
            missing.append(f"{kind}_root={lay.roots[kind]}: {where[kind]}")
    if missing:
        raise FileNotFoundError("paper mode needs these inputs (set them in params/paper.yaml):\n  - "
                                + "\n  - ".join(missing))


# --- 01: features ------------------------------------------------------------------------------
def extract_features(lay: Layout, cfg: ExtractConfig) -> dict:
    """Notebook 01: 1-fps features and object top-k for the training videos and both test sets.

    A folder of released features (paper mode, no videos) is used as it is."""
    from cezsar import datasets
    from cezsar.features import extract

    reports = {}
    jobs = []
    if lay.train_videos is not None and lay.train_videos.is_dir():
        caps = datasets.read_activitynet(lay.captions)
        vids = [datasets.Video(v, _find_video(lay.train_videos, v), "") for v in sorted(caps.durations)]
        jobs.append(("activitynet", vids, lay.train_features))
    for kind in TEST_SETS:
        if lay.mode == "paper" and lay.test_features[kind].is_dir() and any(lay.test_features[kind].glob("*.npy")):
            continue  # released features
        jobs.append((kind, datasets.load_dataset(kind, lay.roots[kind]).videos, lay.test_features[kind]))
    encoder = None
    for name, vids, out in jobs:
        if encoder is None:
            from cezsar.backbones import get_encoder

            encoder = get_encoder(cfg.backbone, cfg.weights, image_size=cfg.image_size, batch=cfg.batch)
        rep = extract(vids, out, cfg, encoder=encoder, progress=False)
        reports[name] = {k: rep[k] for k in ("videos", "done", "encoded", "reused", "frames", "seconds",
                                             "frames_per_s") if k in rep}
        reports[name]["skipped"] = rep.get("skipped", [])
    return reports


def _find_video(folder: Path, video_id: str) -> Path | None:
    for ext in (".mp4", ".mkv", ".webm", ".avi"):
        if (folder / f"{video_id}{ext}").exists():
            return folder / f"{video_id}{ext}"
    return None  # extract() reports it as skipped with the reason


# --- 02: mining --------------------------------------------------------------------------------
def mine_triplets(lay: Layout, cfg: MiningConfig, text_model: str = "minilm") -> dict:
    """Notebook 02: the triplet file for `cfg.tau` (reused when it exists); returns its summary."""
    from cezsar import datasets
    from cezsar.features import FeatureStore
    from cezsar.mining import TripletSet, mine
    from cezsar.text import SentenceEncoder

    path = lay.triplets(cfg.tau)
    if path.exists():
        old = TripletSet.load(path)
        if old.summary.get("config") == config.to_dict(cfg):
            return {"path": str(path), "reused": True, **old.summary}
        _set_aside(path)  # mined with other settings: keep it, but mine anew
    store = FeatureStore(lay.train_features) if lay.train_features.is_dir() else None
    trip = mine(datasets.read_activitynet(lay.captions), SentenceEncoder(text_model), store, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    trip.save(path)
    return {"path": str(path), "reused": False, **trip.summary}


# --- 03: training ------------------------------------------------------------------------------
def train_model(lay: Layout, tau: float, cfg: TrainConfig, text_model: str = "minilm") -> dict:
    """Notebook 03: train (or resume, or reuse a finished run) on the τ triplet file; the loss history."""
    from cezsar.features import FeatureStore
    from cezsar.mining import TripletSet
    from cezsar.text import SentenceEncoder
    from cezsar.train import fit

    trip = TripletSet.load(lay.triplets(tau))
    text_emb = SentenceEncoder(text_model).encode(trip.sentences)  # (S, text_dim), cached on disk
    out = lay.model_dir(tau)
    last = out / "last.pt"
    if last.exists():  # resume only a run of the same triplets and training settings
        import torch

        meta = torch.load(last, map_location="cpu", weights_only=True)
        same = {k: v for k, v in _plain(config.to_dict(cfg)).items() if k not in _RESUMABLE}
        was = {k: v for k, v in _plain(meta.get("train_cfg") or {}).items() if k not in _RESUMABLE}
        if meta.get("n_triplets") != len(trip) or same != was:
            _set_aside(out)
    history = fit(trip, FeatureStore(lay.train_features), text_emb, cfg, out_dir=out, resume=True,
                  text_model=text_model, progress=False)
    return {"model_dir": str(out), "checkpoint": str(out / "best.pt"), **history}


# --- 04 / 05: evaluation -----------------------------------------------------------------------
def table_protocols(kind: str, n_classes: int) -> dict[str, str]:
    """Table column -> protocol. Real data: the paper's protocols; a smaller dataset (SynthActions): the same
    fractions of its classes (at least 2 classes per run)."""
    from cezsar.protocols import PROTOCOLS
    from cezsar.tables import COLUMNS, FRACTIONS

    real = {int(p.split("/")[1]) for p in PROTOCOLS[kind]}
    if n_classes in real:
        return {c: f"0/{c}" for c in COLUMNS[kind]}
    return {c: ("0/all" if f == 1.0 else f"0/{max(2, round(f * n_classes))}")
            for c, f in zip(COLUMNS[kind], FRACTIONS[kind])}


def evaluate_methods(lay: Layout, kind: str, checkpoint: Path | None, ecfg: EvalConfig,
                     text_model: str = "minilm", protocols: dict[str, str] | None = None,
                     methods: tuple[str, ...] = ("O", "VE", "VE+O")) -> dict:
    """Score the objects-only baseline, CEZSAR VE and CEZSAR VE+O on one test set under its protocols.

    Returns {variant: {column: protocol result}} plus "_emb" (the embedded data, for the figures)."""
    from cezsar import datasets, protocols as P
    from cezsar.features import FeatureStore
    from cezsar.text import SentenceEncoder
    from cezsar.train import load_checkpoint

    ds = datasets.load_dataset(kind, lay.roots[kind])
    desc = datasets.read_descriptions(lay.descriptions[kind])
    store = FeatureStore(lay.test_features[kind])
    enc = SentenceEncoder(text_model)
    model = load_checkpoint(checkpoint)[0] if checkpoint else None
    protocols = table_protocols(kind, len(ds.classes)) if protocols is None else protocols
    out: dict = {"_emb": {}}
    for variant in methods:
        method, beta = ("objects", 0.0) if variant == "O" else ("cezsar", 0.0 if variant == "VE" else ecfg.beta)
        emb = P.embed_dataset(ds, store, desc, enc, method=method, model=model, alpha=ecfg.alpha, beta=beta,
                              normalize_terms=ecfg.normalize_terms, n_objects=ecfg.n_objects,
                              max_seconds=ecfg.max_seconds)
        out["_emb"][variant] = emb
        out[variant] = {}
        for col, proto in protocols.items():
            res = P.run_evaluation(ds, store, desc, enc, proto, method=method, model=model, runs=ecfg.runs,
                                   out_dir=lay.work, emb=emb, alpha=ecfg.alpha, beta=beta,
                                   normalize_terms=ecfg.normalize_terms, n_objects=ecfg.n_objects)
            res.update(checkpoint=str(checkpoint) if checkpoint and method == "cezsar" else None,
                       descriptions=str(lay.descriptions[kind]), text_model=text_model,
                       backbone=store.backbone, dataset_root=str(lay.roots[kind]))
            out[variant][col] = res
    return out


def tau_ablation(lay: Layout, taus: list[float], mcfg: MiningConfig, tcfg: TrainConfig, ecfg: EvalConfig,
                 text_model: str = "minilm") -> dict:
    """Notebook 04 (paper §5): for each τ, mine, train and score VE + O on the UCF-form set, every class."""
    import dataclasses

    rows = []
    for tau in taus:
        t0 = time.perf_counter()
        mined = mine_triplets(lay, dataclasses.replace(mcfg, tau=tau), text_model)
        hist = train_model(lay, tau, tcfg, text_model)
        res = evaluate_methods(lay, "ucf101", Path(hist["checkpoint"]), ecfg, text_model,
                               protocols={"all": "0/all"}, methods=("VE+O",))
        r = res["VE+O"]["all"]
        rows.append({"tau": tau, "triplets": mined.get("triplets"), "top1": r["top1_mean"],
                     "top5": r["top5_mean"], "n_classes": r["n_classes"], "seconds": time.perf_counter() - t0})
    return {"dataset": "ucf101", "protocol": "0/all", "rows": rows}


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
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
