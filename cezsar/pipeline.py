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
from dataclasses import dataclass
from pathlib import Path

from cezsar import config
from cezsar.atomic import write_json
from cezsar.config import EvalConfig, ExtractConfig, MiningConfig, ModelConfig, TrainConfig
from cezsar.params import Settings, resolve, settings, stage_configs

TEST_SETS = ("ucf101", "kinetics400")
DATASET_NAMES = {"activitynet": "ActivityNet Captions", "ucf101": "UCF-101", "kinetics400": "Kinetics-400"}


@dataclass
class Layout:
    """Where one parameter set reads and writes (raw -> interim -> processed -> runs)."""

    mode: str  # "embedded" (SynthActions) or "paper" (real data)
    data_root: Path  # SynthActions root (embedded) or the raw data folder
    captions: tuple[Path, ...]  # ActivityNet Captions file(s): train.json (+ val_1.json, val_2.json)
    train_videos: Path | None  # folder of <video_id>.mp4 (None when released features are used)
    train_features: Path  # folder of <video_id>.npy (extracted here, or the released ones)
    train_objects: Path  # per-second objects of the training features
    roots: dict[str, Path]  # test set kind -> dataset root
    test_features: dict[str, Path]  # test set kind -> feature folder
    test_objects: dict[str, Path]  # test set kind -> objects folder
    descriptions: dict[str, Path]  # test set kind -> descriptions (our JSON or a folder of <class>.txt)
    groups: Path | None  # confusable class groups (Figs. 1, 3)
    work: Path  # interim/processed outputs of this parameter set
    run_dir: Path  # runs/<run_name>: results.json, executed notebooks
    figures: Path
    weights: Path | None  # the backbone's weights (extraction, and the head for objects)

    def triplets(self, tau: float) -> Path:
        return self.work / "processed" / f"triplets_tau{tau:.2f}.npz"

    def model_dir(self, tau: float) -> Path:
        return self.work / "models" / f"tau{tau:.2f}"

    @property
    def bank_cache(self) -> Path:
        """One training feature bank for every model of this set (the τ ablation shares it)."""
        return self.work / "cache"

    def store(self, part: str):
        """The FeatureStore of "activitynet" or a test set, with its objects folder."""
        from cezsar.features import FeatureStore

        if part == "activitynet":
            return FeatureStore(self.train_features, self.train_objects)
        return FeatureStore(self.test_features[part], self.test_objects[part])


def _objects_dir(features: Path, work: Path, part: str) -> Path:
    # features made here keep their objects beside them; objects of a folder made elsewhere (the released
    # features) go under this set's work folder, so a raw data folder is never written to
    inside = work in features.parents or features == work
    return features / "objects" if inside else work / "objects" / part


def layout_from(params: Settings | str, overrides: dict | None = None) -> Layout:
    """The Layout of a parameter set (a `Settings`, or a parameter file read with `overrides`).

    Embedded mode derives every data path from `data_root` (SynthActions); paper mode takes each real path
    from its parameter (see params/paper.yaml). Every relative path resolves against the project root.
    """
    s = params if isinstance(params, Settings) else settings(params, overrides)
    work = resolve(s.work_dir)
    runs = os.environ.get("CEZSAR_RUNS_DIR") or "runs"  # run_all.sh's runs folder, also in JupyterLab
    run_dir = resolve(s.run_dir or str(Path(runs) / Path(s.params_file).stem))
    figures = resolve(s.figures_dir)
    weights = resolve(s.backbone_weights) if s.backbone_weights else None
    root = resolve(s.data_root)
    ours = {k: config.DESCRIPTIONS_DIR / f"{k}.json" for k in TEST_SETS}
    if s.mode == "embedded":
        roots = {k: root / k for k in TEST_SETS}
        feats = {k: work / "features" / k for k in TEST_SETS}
        desc = {k: root / "descriptions" / f"{k}.json" for k in TEST_SETS}
        train_feats = work / "features" / "activitynet"
        captions: tuple[Path, ...] = (root / "activitynet" / "train.json",)
        videos: Path | None = root / "activitynet" / "videos"
        groups: Path | None = root / "groups.json"
    elif s.mode == "paper":
        roots = {k: resolve(s[f"{k}_root"]) for k in TEST_SETS}
        feats = {k: resolve(s[f"{k}_features"]) if s[f"{k}_features"] else work / "features" / k for k in TEST_SETS}
        desc = dict(ours)
        train_feats = resolve(s.anet_features) if s.anet_features else work / "features" / "activitynet"
        captions = tuple(resolve(p.strip()) for p in str(s.anet_captions).split(",") if p.strip())
        videos = resolve(s.anet_videos) if s.anet_videos else None
        groups = None
    else:
        raise ValueError(f"{s.params_file}: mode must be 'embedded' or 'paper', not {s.mode!r}")
    for k in TEST_SETS:  # a user's description set (e.g. the authors' per-class .txt folder) replaces ours
        if s[f"{k}_descriptions"]:
            desc[k] = resolve(s[f"{k}_descriptions"])
    return Layout(s.mode, root, captions, videos, train_feats, _objects_dir(train_feats, work, "activitynet"),
                  roots, feats, {k: _objects_dir(feats[k], work, k) for k in TEST_SETS}, desc, groups, work,
                  run_dir, figures, weights)


def describe(lay: Layout) -> dict:
    """The layout as plain strings (for a notebook's output and the results file)."""
    return {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, tuple)
                else {a: str(b) for a, b in v.items()} if isinstance(v, dict) else v)
            for k, v in dataclasses.asdict(lay).items()}


# --- inputs ------------------------------------------------------------------------------------
def _npy_ids(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.npy") if not p.name.startswith(".")} if folder.is_dir() else set()


def _have_objects(lay: Layout, part: str) -> bool:
    folder = lay.train_objects if part == "activitynet" else lay.test_objects[part]
    feats = lay.train_features if part == "activitynet" else lay.test_features[part]
    if not feats.is_dir():
        return False
    meta = feats / "features.json"
    label = json.loads(meta.read_text()).get("label_space") if meta.is_file() else None
    if label is None and not (folder / "objects.json").is_file():
        return False
    done = {p.stem for p in folder.glob("*.npz")} if folder.is_dir() else set()
    return _npy_ids(feats) <= done


def head_weights(lay: Layout, s: Settings) -> Path | str | None:
    """Where the objects' linear head comes from: the backbone's weights file, or for EfficientNet-Lite0 the
    offline weights ("default"); None when there is none."""
    if lay.weights is not None and lay.weights.is_file():
        return lay.weights
    if s.backbone == "efficientnet_lite0" and not s.backbone_weights:
        return "default"
    return None


def uses_objects(lay: Layout, s: Settings) -> bool:
    """Whether this run has objects (mining's object positives, O and VE + O): `use_objects` is "on", or
    "auto" and every feature folder has objects or a head to compute them from."""
    if s.use_objects == "off":
        return False
    if s.use_objects == "on":
        return True
    parts = ["activitynet", *TEST_SETS]
    return all(_have_objects(lay, p) for p in parts) or head_weights(lay, s) is not None


def check_inputs(lay: Layout, s: Settings) -> dict:
    """Every input this parameter set needs, checked before anything runs: raises one error listing every
    missing input, what it is for and where to get it; returns the notices (e.g. "O terms off")."""
    from cezsar.resources import hub_model_cached

    where = {
        "captions": "ActivityNet Captions (cs.stanford.edu/people/ranjaykrishna/densevid)",
        "train": "the released BiT-M-R152x2 features (paper footnote 11) or the raw ActivityNet videos",
        "ucf101": "UCF-101: classInd.txt + testlist01.txt + videos, or ucf101_dataset.json (crcv.ucf.edu)",
        "kinetics400": "Kinetics-400: test.csv + clips (github.com/cvdfoundation/kinetics-dataset)",
    }
    missing, notices = [], []
    for cap in lay.captions:
        if not cap.is_file():
            missing.append(f"anet_captions={cap} (stages 00-04, training captions): {where['captions']}")
    if not lay.captions:
        missing.append(f"anet_captions is empty (stages 00-04): {where['captions']}")
    have_train = bool(_npy_ids(lay.train_features))
    if not have_train and not (lay.train_videos and lay.train_videos.is_dir()):
        missing.append(f"anet_features={lay.train_features} or anet_videos (stages 01-04, training features): "
                       f"{where['train']}")
    need_cnn = lay.train_videos is not None and lay.train_videos.is_dir() and not have_train
    for kind in TEST_SETS:
        if not lay.roots[kind].exists():
            missing.append(f"{kind}_root={lay.roots[kind]} (stages 00, 04-06, test videos and labels): {where[kind]}")
        if not _npy_ids(lay.test_features[kind]):
            need_cnn = True  # test features will be extracted from the videos
        if not lay.descriptions[kind].exists():
            missing.append(f"{kind}_descriptions={lay.descriptions[kind]} (stages 04-06, class descriptions)")
    if need_cnn and s.backbone != "efficientnet_lite0" and not (lay.weights and lay.weights.is_file()):
        missing.append(f"backbone_weights={lay.weights or '(empty)'} (stage 01, extraction with {s.backbone}): "
                       "BiT-M-R152x2.npz from storage.googleapis.com/bit_models/")
    if not hub_model_cached(s.text_model):
        notices.append(f"text model {s.text_model!r} is not on this machine: it is downloaded from the Hugging "
                       "Face hub on first use (needs the network; offline, set text_model: minilm or mpnet)")
    if s.use_objects == "on" and head_weights(lay, s) is None and not all(
            _have_objects(lay, p) for p in ("activitynet", *TEST_SETS)):
        missing.append(f"backbone_weights={lay.weights or '(empty)'} (stage 01, objects: use_objects is 'on'): the "
                       "backbone's weights file, whose ImageNet head gives each second's objects")
    elif not uses_objects(lay, s):
        notices.append("objects are OFF for this run (no objects in the feature folders and no head weights to "
                       "compute them): mining uses captions only and only CEZSAR VE is evaluated (no O, no VE + O). "
                       "Give backbone_weights (BiT-M-R152x2.npz) to turn them on.")
    if missing:
        raise FileNotFoundError(f"{s.params_file} needs these inputs (set them in the parameter file):\n  - "
                                + "\n  - ".join(missing))
    for n in notices:
        print(f"NOTE: {n}")
    return {"notices": notices, "objects": uses_objects(lay, s)}


# --- 00: data ----------------------------------------------------------------------------------
def prepare_data(lay: Layout, s: Settings) -> dict:
    """Notebook 00: generate SynthActions (embedded; skipped when the same seed and size exist) or check
    every real input up front, then a summary of each part."""
    from cezsar import datasets

    out: dict = {}
    if lay.mode == "embedded":
        root = lay.data_root
        stamp = root / "synthactions.json"
        same = stamp.exists() and {k: json.loads(stamp.read_text()).get(k) for k in ("seed", "size")} == \
            {"seed": s.synth_seed, "size": s.synth_size}
        if not same or not lay.captions[0].exists():
            from cezsar.synthetic import generate

            out["generated"] = generate(root, seed=s.synth_seed, size=s.synth_size)
        else:
            out["generated"] = f"reused {root} (seed {s.synth_seed}, size {s.synth_size})"
    out["inputs"] = check_inputs(lay, s)
    caps = datasets.read_activitynet_files(lay.captions)
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
    from cezsar import datasets
    from cezsar.feature_objects import load_head, objects_from_features
    from cezsar.features import extract

    cfg = ExtractConfig(backbone=s.backbone, weights=str(lay.weights) if lay.weights else None,
                        image_size=s.image_size, released_preprocess=s.released_preprocess)
    reports: dict = {}
    jobs = []
    if lay.train_videos is not None and lay.train_videos.is_dir():
        caps = datasets.read_activitynet_files(lay.captions)
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
    encoder = None
    for name, vids, out in jobs:
        if encoder is None:
            from cezsar.backbones import get_encoder

            encoder = get_encoder(cfg.backbone, cfg.weights, device=s.device, image_size=cfg.image_size,
                                  batch=cfg.batch, preprocess="released" if cfg.released_preprocess else "paper")
        rep = extract(vids, out, cfg, encoder=encoder, progress=True)
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
            feats = lay.train_features if part == "activitynet" else lay.test_features[part]
            out = lay.train_objects if part == "activitynet" else lay.test_objects[part]
            rep = objects_from_features(feats, head, out, device=s.device, progress=True)
            reports.setdefault(part, {})["objects"] = {k: rep[k] for k in ("videos", "computed", "reused",
                                                                           "skipped", "label_space", "out")}
    reports["objects_used"] = uses_objects(lay, s)
    return reports


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
    from cezsar.text import SentenceEncoder

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
    from cezsar import datasets

    caps = datasets.read_activitynet_files(lay.captions)
    have = set(store.ids)
    lacking = sorted(v for v in caps.durations if v not in have)
    if lacking:
        caps = datasets.Captions([g for g in caps.segments if g.video_id in have],
                                 {v: d for v, d in caps.durations.items() if v in have}, caps.problems, caps.examples)
    return caps, lacking


def mine_triplets(lay: Layout, s: Settings, tau: float | None = None) -> dict:
    """Notebook 02: the triplet file for τ (reused when its config and every input are the same); its summary.

    Segments of videos without training features are left out and counted ("videos_without_features")."""
    from cezsar.mining import TripletSet, mine
    from cezsar.text import SentenceEncoder

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


def train_model(lay: Layout, s: Settings, tau: float | None = None) -> dict:
    """Notebook 03: train (or resume, or reuse a finished run) on the τ triplet file; the loss history.

    Every model of the set shares one feature bank (`Layout.bank_cache`); `provenance.json` beside the
    checkpoints records the triplet file, the mining and training settings and the parameter set."""
    from cezsar.featurebank import FastPathConfig
    from cezsar.mining import TripletSet
    from cezsar.progress import progress_mode
    from cezsar.text import SentenceEncoder
    from cezsar.train import fit

    tau = s.tau if tau is None else tau
    cfg = train_config(s)
    trip = TripletSet.load(lay.triplets(tau))
    encoder = SentenceEncoder(s.text_model)
    text_emb = encoder.encode(trip.sentences, progress=True)  # (S, text_dim), cached on disk
    out = lay.model_dir(tau)
    last = out / "last.pt"
    if last.exists():  # resume only a run of the same triplets and training settings
        from cezsar.checks import read_checkpoint

        meta = read_checkpoint(last, None, training=True, remedy="delete it to train anew")
        same = {k: v for k, v in _plain(config.to_dict(cfg)).items() if k not in _RESUMABLE}
        was = {k: v for k, v in _plain(meta.get("train_cfg") or {}).items() if k not in _RESUMABLE}
        sized = ("feat_dim", "text_dim")  # set by fit from the data
        model_same = {k: v for k, v in config.to_dict(model_config(s)).items() if k not in sized}
        model_was = {k: v for k, v in (meta.get("model_cfg") or {}).items() if k not in sized}
        if meta.get("n_triplets") != len(trip) or same != was or model_same != model_was:
            _set_aside(out)
    store = lay.store("activitynet")
    have = set(store.ids)
    lacking = [v for v in trip.video_ids if v not in have]
    if lacking:  # features removed since mining: leave their triplets out, counted
        trip = trip.subset_videos(have)
        print(f"NOTE: {len(lacking)} training video(s) have no features any more; their triplets are left out")

    def log(row: dict) -> None:
        val = f", val {row['val_loss']:.4f}" if row.get("val_loss") is not None else ""
        print(f"epoch {row['epoch'] + 1}/{cfg.epochs}: train {row['train_loss']:.4f}{val} "
              f"({row['seconds']:.1f} s, {row['triplets_per_s']:.0f} triplets/s)", flush=True)

    bounds = None
    if cfg.window == "released":  # the first 16 s of each captioned segment: the segments' bounds, as mined
        from cezsar.train import segment_bounds

        bounds = segment_bounds(training_captions(lay, store)[0])
    t0 = time.perf_counter()
    history = fit(trip, store, text_emb, cfg, model_config(s), out_dir=out, resume=True, text_model=encoder.model_id,
                  text_model_name=s.text_model, params=Path(s.params_file).stem, segment_bounds=bounds,
                  fast=FastPathConfig(cache_dir=str(lay.bank_cache)), progress=progress_mode() == "widget",
                  on_epoch_end=log)
    provenance = {"params_file": s.params_file, "triplets": str(lay.triplets(tau)),
                  "mining": trip.summary.get("config"), "mining_inputs": trip.summary.get("inputs"),
                  "train_cfg": config.to_dict(cfg), "text_model": s.text_model, "backbone": store.backbone,
                  "feature_dim": store.dim, "train_videos": len(trip.video_ids),
                  "videos_without_features": trip.summary.get("videos_without_features", 0) + len(lacking),
                  "dataset": "SynthActions (synthetic clips)" if lay.mode == "embedded" else "ActivityNet Captions",
                  "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "provenance.json", provenance)
    return {"model_dir": str(out), "checkpoint": str(out / "best.pt"), **history}


# --- 04 / 05: evaluation -----------------------------------------------------------------------
def eval_config(s: Settings) -> EvalConfig:
    """The EvalConfig of a parameter set (switches included)."""
    return dataclasses.replace(stage_configs(s.values)["eval"], runs=s.runs)


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


class ReadOnce:
    """A FeatureStore seen through a memo: each stack and objects file is read from disk once per evaluation,
    however many methods and protocols use it. Kept only while the test set's stacks fit `budget_gb`
    (beyond it, reads go to disk each time, so memory stays bounded at any scale)."""

    def __init__(self, store, budget_gb: float = 4.0) -> None:
        self._store = store
        size = sum(store.path(v).stat().st_size for v in store.ids)
        self.keep = size <= budget_gb * 2**30
        self._stacks: dict = {}
        self._objects: dict = {}
        self.disk_reads = 0

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def load(self, video_id: str):
        if video_id not in self._stacks:
            self.disk_reads += 1
            x = self._store.load(video_id)
            if not self.keep:
                return x
            self._stacks[video_id] = x
        return self._stacks[video_id]

    def objects(self, video_id: str):
        if video_id not in self._objects:
            o = self._store.objects(video_id)
            if not self.keep:
                return o
            self._objects[video_id] = o
        return self._objects[video_id]


def methods_for(lay: Layout, s: Settings) -> tuple[str, ...]:
    """The rows a run can compute: O, VE and VE + O with objects, VE alone without."""
    return ("O", "VE", "VE+O") if uses_objects(lay, s) else ("VE",)


def evaluate_methods(lay: Layout, kind: str, checkpoint: Path | None, s: Settings,
                     protocols: dict[str, str] | None = None, methods: tuple[str, ...] | None = None) -> dict:
    """Score the objects-only baseline, CEZSAR VE and CEZSAR VE+O on one test set under its protocols.

    Returns {variant: {column: protocol result}} plus "_emb" (the embedded data, for the figures). With
    `skip_missing`, test videos without features are left out and counted in every result."""
    from cezsar import datasets, protocols as P
    from cezsar.text import SentenceEncoder
    from cezsar.train import load_checkpoint

    ecfg = eval_config(s)
    methods = methods_for(lay, s) if methods is None else methods
    ds = datasets.load_dataset(kind, lay.roots[kind])
    desc = datasets.read_descriptions(lay.descriptions[kind])
    store = ReadOnce(lay.store(kind), float(os.environ.get("CEZSAR_EVAL_CACHE_GB", "4")))
    enc = SentenceEncoder(s.text_model)
    model = load_checkpoint(checkpoint)[0] if checkpoint else None
    protocols = table_protocols(kind, len(ds.classes)) if protocols is None else protocols
    out: dict = {"_emb": {}}
    for variant in methods:
        method, beta = ("objects", 0.0) if variant == "O" else ("cezsar", 0.0 if variant == "VE" else ecfg.beta)
        emb = P.embed_dataset(ds, store, desc, enc, method=method, model=model, alpha=ecfg.alpha, beta=beta,
                              normalize_terms=ecfg.normalize_terms, n_objects=ecfg.n_objects,
                              max_seconds=ecfg.max_seconds, skip_missing=bool(s.skip_missing),
                              released_objects=ecfg.released_objects,
                              released_descriptions=ecfg.released_descriptions)
        out["_emb"][variant] = emb
        out[variant] = {}
        for col, proto in protocols.items():
            res = P.run_evaluation(ds, store, desc, enc, proto, method=method, model=model, runs=ecfg.runs,
                                   out_dir=lay.work, emb=emb, std_ddof=ecfg.std_ddof, alpha=ecfg.alpha, beta=beta,
                                   normalize_terms=ecfg.normalize_terms, n_objects=ecfg.n_objects,
                                   max_seconds=ecfg.max_seconds)
            res.update(checkpoint=str(checkpoint) if checkpoint and method == "cezsar" else None,
                       descriptions=str(lay.descriptions[kind]),
                       descriptions_layout="per-class .txt folder" if lay.descriptions[kind].is_dir() else "json",
                       text_model=s.text_model, backbone=store.backbone, dataset_root=str(lay.roots[kind]),
                       split_sha256=_sha256(res.get("split_file")))
            out[variant][col] = res
    return out


def _sha256(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tau_ablation(lay: Layout, s: Settings) -> dict:
    """Notebook 04 (paper §5): for each τ, mine, train and score VE + O (VE without objects) on the UCF-form
    set, every class."""
    taus = [float(t) for t in str(s.tau_values).split(",") if t.strip()]
    variant = "VE+O" if uses_objects(lay, s) else "VE"
    from cezsar import datasets

    # every class, as Table 1's first column names it (0/101 on UCF-101, whose split files are tracked)
    every_class = next(iter(table_protocols("ucf101", len(datasets.load_dataset("ucf101", lay.roots["ucf101"])
                                                           .classes)).values()))
    rows = []
    for tau in taus:
        t0 = time.perf_counter()
        print(f"τ = {tau}: mining, training, evaluating", flush=True)
        mined = mine_triplets(lay, s, tau)
        hist = train_model(lay, s, tau)
        res = evaluate_methods(lay, "ucf101", Path(hist["checkpoint"]), s, protocols={"all": every_class},
                               methods=(variant,))
        r = res[variant]["all"]
        rows.append({"tau": tau, "triplets": mined.get("triplets"), "top1": r["top1_mean"],
                     "top5": r["top5_mean"], "n_classes": r["n_classes"], "variant": variant,
                     "seconds": time.perf_counter() - t0})
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
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
