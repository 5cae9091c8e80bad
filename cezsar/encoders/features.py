"""The feature folder (paper §3.2; docs/decisions.md §2, §10, §11): its files, their checks, and `FeatureStore`,
which reads them back; `cezsar.encoders.extraction.extract` writes it.

The layout (the released features', so those drop in unchanged):
    <out>/<video_id>.npy            float32 (T, D), row i = second i (cezsar.encoders.video sampling rule)
    <out>/objects/<video_id>.npz    {"indices": int32 (T, K), "scores": float16 (T, K) softmax probs}
    <out>/features.json             {"backbone", "dim", "label_space", "topk", "image_size"}
    <out>/manifest.json             how the vectors were made (cezsar.formats.manifest): backbone, weights SHA-256,
                                    image size, preprocessing, frame sampling, dtype, package version

A backbone without an ImageNet head (CLIP, `label_space` "none") writes no objects/ folder and records topk 0:
its videos are finished when their stack is (docs/decisions.md §14).
    <out>/report.json               (report_shard<k>of<n>.json for a shard)

A file is trusted only when complete and valid: a truncated or corrupt one raises FeatureError naming it and
saying how to redo it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from cezsar.formats import manifest
from cezsar.errors import FeatureError
from cezsar.encoders.objects import NO_LABELS
from cezsar.base.textio import read_json


# --- validity of finished outputs ------------------------------------------------------------------
_REDO = "delete it and run `cezsar extract` again (it redoes only the missing videos)"


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a `.npy` file from its header alone, checked against the file's size; FeatureError naming
    the file (and saying what to do) for a file that is not a `.npy`, is truncated or holds Python objects."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = read[version](fh, max_header_size=1 << 16)  # Fortran order loads as well
            offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise FeatureError(f"{path}: no such feature file") from None
    except Exception as err:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors... by damage
        raise FeatureError(f"{path}: not a readable .npy file ({' '.join(str(err).split())[:100]}); {_REDO}") from None
    if dtype.hasobject:
        raise FeatureError(f"{path}: holds Python objects (dtype {dtype}), not float features; {_REDO}")
    need = offset + int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if size < need:
        raise FeatureError(f"{path}: truncated ({size:,} bytes, its header {tuple(shape)} {dtype} needs {need:,}); "
                           f"{_REDO}")
    return tuple(int(n) for n in shape), dtype


def _stack_shape(path: Path, dim: int | None) -> tuple[int, int]:
    """(T, D) of a feature stack from its header: a flat stack of `dim` values is one second (T = 1)."""
    shape, dtype = npy_header(path)
    if len(shape) == 1 and dim is not None and shape[0] == dim:
        shape = (1, dim)
    if len(shape) != 2 or shape[0] == 0:
        flat = f" (a flat stack of {shape[0]} values is one second only when the store's dim is {shape[0]})" \
            if len(shape) == 1 else ""
        raise FeatureError(f"{path}: expected a (T, D) stack with T >= 1, got shape {shape}{flat}; {_REDO}")
    if dim is not None and shape[1] != dim:
        raise FeatureError(f"{path}: feature dim {shape[1]} != {dim} of this store")
    if not np.issubdtype(dtype, np.floating):
        raise FeatureError(f"{path}: dtype {dtype} is not floating point; {_REDO}")
    return shape[0], shape[1]


def check_stack(path: Path, dim: int | None) -> np.ndarray:
    """Load a feature stack and check it; FeatureError names the file otherwise."""
    _stack_shape(path, dim)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise FeatureError(f"{path}: unreadable .npy ({err}); {_REDO}") from err
    if arr.ndim == 1 and dim is not None and arr.shape[0] == dim:
        arr = arr[None]  # a one-second stack saved flat
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise FeatureError(f"{path}: expected a (T, D) stack with T >= 1, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise FeatureError(f"{path}: feature dim {arr.shape[1]} != {dim} of this store")
    if not np.issubdtype(arr.dtype, np.floating):
        raise FeatureError(f"{path}: dtype {arr.dtype} is not floating point")
    if not np.isfinite(arr).all():
        raise FeatureError(f"{path}: contains NaN or inf")
    return arr.astype(np.float32, copy=False)


def check_objects(path: Path, t: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            idx, sc = z["indices"], z["scores"]
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise FeatureError(f"{path}: unreadable objects file ({err})") from err
    if idx.ndim != 2 or idx.shape != sc.shape or (t is not None and idx.shape[0] != t):
        raise FeatureError(f"{path}: objects shapes {idx.shape}/{sc.shape} do not match T={t}")
    return idx, sc


# --- loading side ------------------------------------------------------------------------------------
@dataclass
class _Meta:
    backbone: str | None
    dim: int
    label_space: str | None


class FeatureStore:
    """A folder of `<video_id>.npy` stacks (ours, or the released BiT features with no features.json).

    `.ids` (sorted), `.dim`, `.label_space` (None for released features until their objects are computed),
    `.manifest` (cezsar.formats.manifest: the folder's manifest.json, else the built-in one `declared_manifest` names,
    else None),
    `.load(id)` -> float32 (T, D) checked for shape and NaN, `.objects(id)` -> (indices int32 (T, K), scores
    float16 (T, K)) | None, read from `objects_dir` (default `<root>/objects`).
    """

    def __init__(self, root: str | Path, objects_dir: str | Path | None = None, declared_manifest: str | None = None
                 ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"feature folder not found: {self.root}")
        try:  # how the vectors were made: manifest.json, else a built-in one declared by the parameter set
            self.manifest = manifest.read(self.root, declared_manifest)
        except ValueError as err:
            raise FeatureError(str(err)) from None
        # objects of released features are computed into a folder of their own (cezsar.encoders.feature_objects),
        # so a raw data folder is never written to
        self.objects_dir = Path(objects_dir) if objects_dir else self.root / "objects"
        self.ids = sorted(p.stem for p in self.root.glob("*.npy") if not p.name.startswith("."))
        meta_path = self.root / "features.json"
        if meta_path.exists():
            m = read_json(meta_path, "features.json", FeatureError)
            if not isinstance(m, dict) or isinstance(m.get("dim"), bool) or not isinstance(m.get("dim"), int):
                raise FeatureError(f"{meta_path}: no integer 'dim'; delete it and re-create the folder with "
                                   "`cezsar extract`")
            self.meta = _Meta(m.get("backbone"), int(m["dim"]), m.get("label_space"))
        elif self.ids:
            first = self.root / f"{self.ids[0]}.npy"
            shape, _ = npy_header(first)
            self.meta = _Meta(None, int(shape[-1]) if shape else 0, None)  # released features: dim from the first
        else:
            raise FeatureError(f"{self.root}: no <video_id>.npy files and no features.json")
        # objects computed into a folder of their own: the released features' (no label space yet), or a CLIP's
        # videos given another backbone's objects (`--objects`, docs/decisions.md §14)
        if self.meta.label_space in (None, NO_LABELS) and (self.objects_dir / "objects.json").is_file():
            o = read_json(self.objects_dir / "objects.json", "objects.json", FeatureError)
            self.meta.label_space, self.meta.backbone = o.get("label_space"), self.meta.backbone or o.get("backbone")
        self.dim, self.label_space, self.backbone = self.meta.dim, self.meta.label_space, self.meta.backbone

    @property
    def has_objects(self) -> bool:
        """Whether per-second objects exist for this folder (a label space and an objects folder); never for
        features without an ImageNet head (label_space "none": CLIP)."""
        return self.label_space not in (None, NO_LABELS) and self.objects_dir.is_dir()

    @property
    def objects_off_reason(self) -> str | None:
        """Why this folder has no objects, when its backbone has none by nature (CLIP); None otherwise."""
        if self.label_space == NO_LABELS:
            return f"O off: {self.backbone or 'these'} features have no ImageNet head (CLIP), so no objects"
        return None

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, video_id: str) -> bool:
        return (self.root / f"{video_id}.npy").exists()

    def path(self, video_id: str) -> Path:
        return self.root / f"{video_id}.npy"

    def load(self, video_id: str) -> np.ndarray:
        """float32 (T, D) for one video; FeatureError naming the file when it is missing or bad."""
        p = self.path(video_id)
        if not p.exists():
            raise FeatureError(f"{p}: no features for video {video_id!r}")
        return check_stack(p, self.dim)

    def length(self, video_id: str) -> int:
        """T without reading the data (the `.npy` header, checked like `load` checks the stack)."""
        return _stack_shape(self.path(video_id), self.dim)[0]

    def objects(self, video_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        p = self.objects_dir / f"{video_id}.npz"
        return check_objects(p) if p.exists() else None


def check_folder(store: FeatureStore, video_ids: Iterable[str], sample: int | None = 200) -> dict:
    """A feature folder against its dataset's video list: which videos lack a stack, which stacks belong to no
    video of the dataset, the dim / backbone / objects it holds, and (on up to `sample` stacks, all with None)
    the stacks that fail to load (shape, dtype, NaN). Completeness is decided from the dataset's list, never from
    "some .npy exist"."""
    wanted = list(dict.fromkeys(video_ids))
    have = set(store.ids)
    missing = [v for v in wanted if v not in have]
    extra = sorted(have - set(wanted))
    present = [v for v in wanted if v in have]
    step = 1 if sample is None or len(present) <= sample else len(present) / sample
    probe = [present[int(i * step)] for i in range(len(present) if step == 1 else sample)]
    bad = []
    for vid in probe:
        try:
            store.load(vid)
        except FeatureError as err:
            bad.append({"video_id": vid, "reason": str(err)})
    no_objects = [v for v in present if store.has_objects and not (store.objects_dir / f"{v}.npz").exists()]
    return {"folder": str(store.root), "videos": len(wanted), "with_features": len(present),
            "missing": len(missing), "missing_examples": missing[:10], "extra": len(extra),
            "extra_examples": extra[:10], "dim": store.dim, "backbone": store.backbone,
            "label_space": store.label_space, "objects": store.has_objects, "without_objects": len(no_objects),
            "checked": len(probe), "bad": bad, "complete": not missing and not bad}


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

