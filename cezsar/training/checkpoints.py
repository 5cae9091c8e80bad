"""Checkpoints of the joint embedder, the one place that writes and reads them: an epoch's files (`write_epoch`,
for `cezsar.training.train.fit` and `cezsar.training.stacked.fit_stacked`), reading one back (`load_checkpoint`) with
what it was trained on (its provenance), for evaluation, `cezsar classify` and resumed training (`read_resumable`,
`restore_training`), and the checks the notebooks' training stage makes on a run it finds (`resumable_by`).

A checkpoint is a torch dict: {"version", "model_cfg", "model", "optimizer", RNG states, "epoch", history,
"feat_dim", "text_dim", "text_model", "text_model_name", "trained_on", ...}; `read_checkpoint` validates
the file before anything here uses it.
"""
from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cezsar.base.atomic import write_bytes, write_json, write_text
from cezsar.base.checks import first_sentence, require_file
from cezsar.base.diskspace import require_space
from cezsar.config import FastPathConfig, ModelConfig, TrainConfig, to_dict
from cezsar.errors import CheckpointError
from cezsar.training.joint_embedder import JointEmbedder

CHECKPOINT_VERSION = 1


# --- reading a checkpoint ---------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike, option: str | None = "--model", *, map_location: Any = "cpu",
                    training: bool = False, remedy: str | None = None) -> dict:
    """Load a CEZSAR checkpoint dict with `torch.load(weights_only=True)` and check its shape.

    Zero-byte, truncated, non-torch or foreign files and checkpoints missing a required entry raise
    CheckpointError naming the file and saying to delete or re-create it. `training=True` also requires
    what `--resume` needs (optimizer, epoch, RNG states).
    """
    p = require_file(path, option, "checkpoint", "pass the best.pt or last.pt written by `cezsar train`")
    where = f"{option} {p}" if option else str(p)
    fix = remedy or "delete it or re-create it with `cezsar train`"
    if p.stat().st_size == 0:
        raise CheckpointError(f"{where}: empty file (0 bytes), not a checkpoint; {fix}")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises EOFError, RuntimeError, UnpicklingError, KeyError... by file damage
        reason = first_sentence(err)
        raise CheckpointError(f"{where}: not a readable checkpoint (truncated or not a torch file: {reason}); "
                              f"{fix}") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{where}: holds a {type(ckpt).__name__}, not a CEZSAR checkpoint; {fix}")
    if "version" not in ckpt or "model" not in ckpt or "model_cfg" not in ckpt:
        raise CheckpointError(f"{where}: not a CEZSAR checkpoint (no version/model/model_cfg entries); {fix}")
    if ckpt["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(f"{where}: checkpoint version {ckpt['version']!r}, this package reads "
                              f"{CHECKPOINT_VERSION}; {fix}")
    if training:
        missing = [k for k in ("optimizer", "epoch", "rng", "history", "best_score", "best_epoch", "bad_epochs")
                   if k not in ckpt]
        if missing:
            raise CheckpointError(f"{where}: lacks {', '.join(missing)} needed to resume; {fix}")
    return ckpt


def _build_model(ckpt: dict, where: str, device, fix: str) -> JointEmbedder:
    """The JointEmbedder a checkpoint dict describes, weights loaded; CheckpointError when they do not fit."""
    try:
        model = JointEmbedder(ModelConfig(**ckpt["model_cfg"])).to(device)
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as err:
        reason = " ".join(str(err).split())[:160]
        raise CheckpointError(f"{where}: model entries do not fit this package's JointEmbedder ({reason}); "
                              f"{fix}") from err
    return model


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    option: str | None = None) -> tuple[JointEmbedder, dict]:
    """Rebuild the trained JointEmbedder (eval mode) from `last.pt`/`best.pt`; meta = everything else stored.

    The file is checked first (`read_checkpoint`): a missing, empty, truncated or foreign file
    raises UsageError / CheckpointError naming it. `meta["trained_on"]` always exists (`provenance`),
    with "unknown" for what a checkpoint from before provenance was recorded does not say.
    """
    ckpt = read_checkpoint(path, option, map_location=device)
    where = f"{option} {path}" if option else str(path)
    model = _build_model(ckpt, where, device, "delete it or re-create it with `cezsar train`")
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    meta["trained_on"] = provenance_of(meta)
    return model, meta


# --- provenance: what a checkpoint was trained on ----------------------------------------------------
PROVENANCE_KEYS = ("dataset", "captions", "features", "backbone", "feat_dim", "label_space", "text_model", "params")


def training_provenance(triplets, store, text_model: str | None, params: str | None = None) -> dict:
    """What a run trains on, recorded in its checkpoints: the captions' dataset and file (from the triplet
    file's summary), the feature folder's backbone and dim (its features.json), the text model id, the
    parameter-set name. Unknown items are "unknown", never guessed. (The folder's manifest is recorded beside
    it, `features_manifest`: `training_manifest`.)"""
    summary = getattr(triplets, "summary", None) or {}
    cap = summary.get("captions") if isinstance(summary.get("captions"), dict) else {}
    root = getattr(store, "root", None)
    out = {"dataset": cap.get("dataset"), "captions": cap.get("file"),
           "features": Path(root).name if root is not None else None,
           "backbone": getattr(store, "backbone", None), "feat_dim": int(store.dim),
           "label_space": getattr(store, "label_space", None), "text_model": text_model, "params": params}
    return {k: ("unknown" if v in (None, "") else v) for k, v in out.items()}


def training_manifest(meta: dict) -> dict | None:
    """The manifest of a checkpoint's training features (cezsar.formats.manifest; `features_manifest`, written by
    `train.fit` from the feature folder); None for a checkpoint from before manifests or of a folder without one."""
    found = meta.get("features_manifest")
    return found if isinstance(found, dict) else None


def provenance_of(meta: dict) -> dict:
    """A checkpoint's `trained_on`, completed for old checkpoints (missing fields -> "unknown")."""
    got = meta.get("trained_on") if isinstance(meta.get("trained_on"), dict) else {}
    out = {k: got.get(k) for k in PROVENANCE_KEYS}
    out["feat_dim"] = out["feat_dim"] or meta.get("feat_dim")
    out["text_model"] = out["text_model"] or meta.get("text_model")
    return {k: ("unknown" if v in (None, "") else v) for k, v in out.items()}


def describe_provenance(trained_on: dict) -> str:
    """One line: "model trained on SynthActions (synthetic clips), captions train.json, backbone
    efficientnet_lite0 (1280-d), text minilm-384d-…, parameter set embedded"."""
    t = {k: trained_on.get(k, "unknown") for k in PROVENANCE_KEYS}
    cap = f", captions {t['captions']}" if t["captions"] != "unknown" else ""
    dim = f" ({t['feat_dim']}-d)" if t["feat_dim"] != "unknown" else ""
    return (f"model trained on {t['dataset']}{cap}, backbone {t['backbone']}{dim}, text {t['text_model']}, "
            f"parameter set {t['params']}")


def is_synthetic(trained_on: dict) -> bool:
    """Whether the provenance says the model saw only the embedded synthetic clips (SynthActions)."""
    return "synth" in str(trained_on.get("dataset", "")).lower()


RESUME_FIX = "delete it to start over, or use another output folder"


def checkpoint_meta(model_cfg: ModelConfig, train_cfg: TrainConfig, fast: FastPathConfig, text_model: str | None,
                    text_model_name: str | None, triplets, store, params: str | None) -> dict:
    """The header every checkpoint of a run carries (`fit` and the stacked seeds alike): the configs, the dims,
    the text model, what the run trained on, and the manifest of its training features."""
    return {"version": CHECKPOINT_VERSION, "model_cfg": to_dict(model_cfg), "train_cfg": to_dict(train_cfg),
            "fast_cfg": to_dict(fast), "feat_dim": model_cfg.feat_dim, "text_dim": model_cfg.text_dim,
            "text_model": text_model, "text_model_name": text_model_name, "n_triplets": int(len(triplets.video)),
            "trained_on": training_provenance(triplets, store, text_model, params),
            "features_manifest": getattr(store, "manifest", None)}  # how the training vectors were made


def read_resumable(last: Path, meta: dict, device: torch.device) -> dict:
    """`last.pt` read for `--resume`, refused (CheckpointError) when it was trained on other triplets or with
    another model than `meta` says."""
    ckpt = read_checkpoint(last, None, map_location=device, training=True, remedy=RESUME_FIX)
    for key in ("model_cfg", "feat_dim", "text_dim", "n_triplets"):
        if ckpt.get(key) != meta[key]:
            raise CheckpointError(f"{last}: {key} {ckpt.get(key)} differs from this run's {meta[key]}; "
                                  "resume with the same triplets and settings, or " + RESUME_FIX)
    return ckpt


# --- writing a run's files --------------------------------------------------------------------------------
def rng_state() -> dict:
    """RNG states as tensors and plain types, so `torch.load(weights_only=True)` can read them back."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the RNG states `rng_state` recorded (CUDA's only where CUDA is available)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_logs(history: list[dict], out: Path) -> None:
    """The training history as log.json and log.csv in `out` (one row per epoch), each written atomically."""
    write_json(out / "log.json", history)
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    write_text(out / "log.csv", buf.getvalue())


def write_epoch(ckpt: dict, out: Path, best: bool) -> None:
    """An epoch's files, each written atomically: last.pt, best.pt when `best`, the logs. The checkpoint is
    serialised once; best.pt is its own file with the same bytes (never a link, so a file copied over one of them
    cannot change the other)."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    data = buf.getbuffer()
    write_bytes(out / "last.pt", data)
    if best:
        write_bytes(out / "best.pt", data)
    write_logs(ckpt["history"], out)


def checkpoint_bytes(last: Path, weights: dict[str, torch.Tensor]) -> int:
    """What one checkpoint takes on disk: the previous last.pt's size, else the weights (a state_dict) and
    AdamW's state."""
    if last.is_file():
        return last.stat().st_size
    weights = sum(w.numel() * w.element_size() for w in weights.values())
    return weights * 3  # the weights and AdamW's two moment estimates


def require_checkpoint_room(out: Path, weights: dict[str, torch.Tensor], best: bool) -> None:
    """Room for an epoch's last.pt (and best.pt when `best`) before either is replaced, so that a full disk keeps
    the previous ones (docs/errors.md); a DiskFullError naming `out` otherwise."""
    require_space(out, checkpoint_bytes(out / "last.pt", weights) * (2 if best else 1), "checkpoint")



def restore_training(ckpt: dict, last: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     state_keys, world: int, rank: int, warn: bool) -> dict:
    """Load a resumable checkpoint (`read_resumable`) into `model` and `optimizer` and restore this rank's RNG
    state; returns the run state {k: ckpt[k] for k in state_keys}. A checkpoint of another process count
    continues from the same weights, not bit for bit (a warning when `warn`); unusable entries raise
    CheckpointError naming `last`."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = {k: ckpt[k] for k in state_keys}
        per_rank = ckpt.get("rng_ranks") or [ckpt["rng"]]  # one state per rank (one-process runs: "rng")
        if len(per_rank) != world and warn:
            print(f"warning: {last} was written by {len(per_rank)} process(es), this run has {world}; it "
                  "continues from the same weights, but not bit for bit (dropout draws differ)")
        set_rng_state(per_rank[rank] if len(per_rank) == world else ckpt["rng"])
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:160]
        raise CheckpointError(f"{last}: model, optimizer or RNG state unusable ({reason}); {RESUME_FIX}") from err
    return state


# --- a run found on disk: continue it or set it aside --------------------------------------------------
RESUMABLE = ("epochs", "patience", "device")  # changing these continues a run instead of restarting it
_FOUND_FIX = "delete it to train anew"


def recorded_seed(last: Path) -> int:
    """The training seed a run's `last.pt` was trained with (0 when it does not say)."""
    ckpt = read_checkpoint(last, None, training=True, remedy=_FOUND_FIX)
    return int((ckpt.get("train_cfg") or {}).get("seed", 0))


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def resumable_by(last: Path, n_triplets: int, train_cfg: TrainConfig, model_cfg: ModelConfig) -> bool:
    """Whether the run whose `last.pt` this is trained on as many triplets with the same training and model
    settings (up to `RESUMABLE` and the data-set sizes `fit` fills in), so that it may continue."""
    meta = read_checkpoint(last, None, training=True, remedy=_FOUND_FIX)
    same = {k: v for k, v in _plain(to_dict(train_cfg)).items() if k not in RESUMABLE}
    was = {k: v for k, v in _plain(meta.get("train_cfg") or {}).items() if k not in RESUMABLE}
    sized = ("feat_dim", "text_dim")  # set by fit from the data
    model_same = {k: v for k, v in to_dict(model_cfg).items() if k not in sized}
    model_was = {k: v for k, v in (meta.get("model_cfg") or {}).items() if k not in sized}
    return meta.get("n_triplets") == n_triplets and same == was and model_same == model_was
