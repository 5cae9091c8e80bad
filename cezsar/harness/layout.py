"""Where a parameter set's data lives, and whether all of it is there (docs/interfaces.md).

`layout_from(settings)` turns a parameter set (cezsar.harness.params) into a `Layout`: every input and output folder of
one run, relative paths resolved against the project root, objects of features made elsewhere (the released ones)
placed under the set's work folder. `check_inputs` lists everything missing before a stage runs, and
`uses_objects` decides whether a run has the objects that mining's object positives and Eq. 9 need.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cezsar import config
from cezsar.harness.params import Settings, resolve, settings
from cezsar.encoders.features import FeatureStore
from cezsar.encoders.resources import hub_model_cached
from cezsar.encoders.stack_origin import check_one_backbone

TEST_SETS = ("ucf101", "kinetics400")


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
    work: Path  # interim outputs of this parameter set: features, objects, the shared feature bank
    processed: Path  # its triplet files
    models: Path  # its checkpoints, one folder per τ
    run_dir: Path  # runs/<run_name>: results.json, executed notebooks
    figures: Path
    weights: Path | None  # the backbone's weights (extraction, and the head for objects)
    train_manifest: str | None = None  # built-in manifest of training features made elsewhere (cezsar.formats.manifest)

    def triplets(self, tau: float) -> Path:
        return self.processed / f"triplets_tau{tau:.2f}.npz"

    def model_dir(self, tau: float) -> Path:
        return self.models / f"tau{tau:.2f}"

    @property
    def bank_cache(self) -> Path:
        """One training feature bank for every model of this set (the τ ablation shares it)."""
        return self.work / "cache"

    def folders(self, part: str) -> tuple[Path, Path]:
        """(features, objects) folders of "activitynet" (the training corpus) or a test set."""
        if part == "activitynet":
            return self.train_features, self.train_objects
        return self.test_features[part], self.test_objects[part]

    def store(self, part: str):
        """The FeatureStore of "activitynet" or a test set, with its objects folder; a folder mixing the stacks of
        two backbones is refused (`stack_origin.check_one_backbone`, docs/errors.md)."""

        declared = self.train_manifest if part == "activitynet" else None  # test folders carry their own file
        store = FeatureStore(*self.folders(part), declared_manifest=declared)
        check_one_backbone(store)
        return store


def _beside(work: Path, kind: str) -> Path:
    """Where a set's triplets ("processed") or checkpoints ("models") go by default: for the usual
    `data/interim/<set>` work folder, `data/processed/<set>` and `models/<set>` (data flows raw -> interim ->
    processed, trained models sit beside data/); for any other work folder, inside it (`<work_dir>/<kind>`)."""
    if work.parent.name != "interim":
        return work / kind
    data = work.parent.parent
    return (data / "processed" if kind == "processed" else data.parent / "models") / work.name


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
    processed = resolve(s.processed_dir) if s.processed_dir else _beside(work, "processed")
    models = resolve(s.models_dir) if s.models_dir else _beside(work, "models")
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
                  processed, models, run_dir, figures, weights, s.anet_features_manifest or None)


def describe(lay: Layout) -> dict:
    """The layout as plain strings (for a notebook's output and the results file)."""
    return {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, tuple)
                else {a: str(b) for a, b in v.items()} if isinstance(v, dict) else v)
            for k, v in dataclasses.asdict(lay).items()}


# --- inputs ------------------------------------------------------------------------------------
def npy_ids(folder: Path) -> set[str]:
    """The ids of a feature folder: the stems of its visible .npy files (none when it does not exist)."""
    return {p.stem for p in folder.glob("*.npy") if not p.name.startswith(".")} if folder.is_dir() else set()


def have_objects(lay: Layout, part: str) -> bool:
    """Whether a part's objects are ready: its features name an ImageNet label space (or an objects.json is there)
    and every feature file has its objects .npz."""
    feats, folder = lay.folders(part)
    if not feats.is_dir():
        return False
    meta = feats / "features.json"
    label = json.loads(meta.read_text()).get("label_space") if meta.is_file() else None
    if label is None and not (folder / "objects.json").is_file():
        return False
    done = {p.stem for p in folder.glob("*.npz")} if folder.is_dir() else set()
    return npy_ids(feats) <= done


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
    return all(have_objects(lay, p) for p in parts) or head_weights(lay, s) is not None


def check_inputs(lay: Layout, s: Settings) -> dict:
    """Every input this parameter set needs, checked before anything runs: raises one error listing every
    missing input, what it is for and where to get it; returns the notices (e.g. "O terms off")."""

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
    have_train = bool(npy_ids(lay.train_features))
    if not have_train and not (lay.train_videos and lay.train_videos.is_dir()):
        missing.append(f"anet_features={lay.train_features} or anet_videos (stages 01-04, training features): "
                       f"{where['train']}")
    need_cnn = lay.train_videos is not None and lay.train_videos.is_dir() and not have_train
    for kind in TEST_SETS:
        if not lay.roots[kind].exists():
            missing.append(f"{kind}_root={lay.roots[kind]} (stages 00, 04-06, test videos and labels): {where[kind]}")
        if not npy_ids(lay.test_features[kind]):
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
            have_objects(lay, p) for p in ("activitynet", *TEST_SETS)):
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
