"""Feature manifests: how the vectors of a feature folder were made (docs/fidelity.md "feature manifests").

A model scores test features well only when they come from the same input distribution as its training
features. Every folder written by `cezsar extract` carries `<folder>/manifest.json`:

    backbone, weights_sha256, dim, image_size    the frame CNN and its input side
    preprocess    "rgb-resize" (here: RGB, the whole frame resized) | "released-bgr-crop<S>" (the released
                  extraction: BGR frames fed as RGB, resize 256/224 of S + centre crop S) | "clip" (CLIP's own)
    sampling      "1fps-whole-second" (row i = the frame at i s) | "released-25fps-linspace" (the frames of a
                  25-fps re-encode at linspace(0, n-1, n//25))
    dtype, package_version    how the rows are stored, and by which version of this package

A folder made elsewhere (the released BiT features) holds no manifest; the parameter set declares it by name
(`anet_features_manifest: released_bit`, one of `BUILT_IN`), so nobody writes a file into a raw data folder.
A checkpoint records the manifest of its training features (`cezsar.training.checkpoints.training_provenance`).

`compare(a, b)` lists the differences in the keys that change the vectors (`VECTOR_KEYS`); a value that is
unknown on either side (None: e.g. the hash of the weights the released features came from) is not compared
but listed by `unknown(a, b)`. dtype and package_version are recorded, not compared: float16 storage rounds
the same vectors, and a new version of the package computes the same ones.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cezsar import __version__
from cezsar.base.atomic import write_json
from cezsar.errors import ManifestMismatch

FILE = "manifest.json"
VECTOR_KEYS = ("backbone", "weights_sha256", "dim", "image_size", "preprocess", "sampling")
INFO_KEYS = ("dtype", "package_version")
SAMPLING = {"1fps": "1fps-whole-second", "released": "released-25fps-linspace"}

# feature folders made elsewhere, declared by name in a parameter set (anet_features_manifest)
BUILT_IN: dict[str, dict[str, Any]] = {
    # paper footnote 11; docs/fidelity.md rows "frame colour and crop" and "frame sampling"
    "released_bit": {"backbone": "bit_m_r152x2", "weights_sha256": None, "dim": 4096, "image_size": 224,
                     "preprocess": "released-bgr-crop224", "sampling": SAMPLING["released"], "dtype": None,
                     "package_version": None, "made_by": "the authors' released BiT-M-R152x2 features"},
}


def preprocess_name(mode: str, image_size: int) -> str:
    """The manifest's preprocess value of a frame encoder's `preprocess_mode` ("paper", "released", "clip")."""
    if mode == "released":
        return f"released-bgr-crop{int(image_size)}"
    if mode == "paper":
        return "rgb-resize"
    return str(mode)


_DIGESTS: dict[tuple, str] = {}


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file (hex), remembered per (path, size, mtime) for the process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def make(backbone: str, dim: int, image_size: int, preprocess: str, sampling: str,
         weights: str | os.PathLike | None = None, dtype: str = "float32") -> dict[str, Any]:
    """A manifest: `preprocess` a `preprocess_name` value, `sampling` a key or value of `SAMPLING`, `weights`
    the weights file (hashed) or None when there is none to hash (a hub model)."""
    digest = sha256_of(weights) if weights is not None and Path(weights).is_file() else None
    return {"backbone": backbone, "weights_sha256": digest, "dim": int(dim), "image_size": int(image_size),
            "preprocess": preprocess, "sampling": SAMPLING.get(sampling, sampling), "dtype": dtype,
            "package_version": __version__}


def write(folder: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write `<folder>/manifest.json` (atomically)."""
    path = Path(folder) / FILE
    write_json(path, manifest)
    return path


def read(folder: str | os.PathLike, declared: str | None = None) -> dict[str, Any] | None:
    """The manifest of a feature folder: its manifest.json, else the built-in one named `declared` (a
    parameter set's `anet_features_manifest`), else None (a folder made before manifests). A manifest.json
    wins over a declaration; an unknown declared name or an unreadable file is a ValueError naming it."""
    path = Path(folder) / FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: unreadable feature manifest ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a feature manifest must be a JSON object, got {type(data).__name__}")
        return data
    if declared:
        if declared not in BUILT_IN:
            raise ValueError(f"anet_features_manifest {declared!r}: not a built-in manifest (known: "
                             f"{', '.join(sorted(BUILT_IN))})")
        return {**BUILT_IN[declared], "declared": declared}
    return None


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, a's value, b's value) for every key of `VECTOR_KEYS` known on both sides that differs."""
    return [(k, a.get(k), b.get(k)) for k in VECTOR_KEYS
            if a.get(k) is not None and b.get(k) is not None and a.get(k) != b.get(k)]


def unknown(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The keys of `VECTOR_KEYS` that cannot be compared: unknown (None or absent) on either side."""
    return [k for k in VECTOR_KEYS if a.get(k) is None or b.get(k) is None]


def check_against_training(test: dict[str, Any] | None, trained: dict[str, Any] | None, where: str) -> list[str]:
    """Refuse test features made another way than the training features (ManifestMismatch, one line naming
    both values of each difference); returns warnings for what cannot be checked: a folder or checkpoint
    without a manifest (made before manifests), or keys unknown on one side. `where` names the test folder."""
    if test is None or trained is None:
        missing = [w for w, m in ((f"{where} has no {FILE}", test), ("the checkpoint records no training-feature "
                                  "manifest", trained)) if m is None]
        return [f"{where}: cannot check that these features were made like the model's training features: "
                + " and ".join(missing) + " (made before manifests); re-extract to check"]
    diffs = compare(test, trained)
    if diffs:
        raise ManifestMismatch(f"{where}: " + "; ".join(f"{k} {a!r} differs from the checkpoint's training features "
                                                        f"{b!r}" for k, a, b in diffs)
                               + " (docs/fidelity.md \"feature manifests\": re-extract them the same way)")
    gaps = [k for k in unknown(test, trained) if k != "weights_sha256" or test.get(k) or trained.get(k)]
    return [f"{where}: not known on both sides, so not checked: {', '.join(gaps)}"] if gaps else []
