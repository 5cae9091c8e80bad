"""Sentence-BERT wrapper with an on-disk embedding cache (paper §3.2 Eq. 6 input, §3.4 mining).

The cache is keyed by (model id, exact sentence text). It lives in one folder per model id, made of
append-only shards: `<name>.npy` float32 (n, dim) written first, then `<name>.json` (the n sentences),
each by temp file + os.replace. The JSON is the commit mark, so a killed run loses at most the shard
being written, and a shard without its JSON (or with a mismatched row count) is ignored at load.
Loading builds one dict sentence -> (shard, row), so lookups for ~100k sentences are a dict pass.
The model itself is loaded lazily: a fully cached pass never imports torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cezsar import config
from cezsar.base.atomic import write_atomic, write_bytes
from cezsar.base.diskspace import require_space
from cezsar.base.progress import progress_bar
from cezsar.encoders.resources import hub_model_cached, text_model_path

_SHARD_ROWS = 4096  # sentences per cache shard: the most a killed run can lose


def _resolve(model: str) -> str:
    """A model name ("minilm", "mpnet"), a local path or a hub id -> what SentenceTransformer loads."""
    return str(text_model_path(model))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _static_dim(path: Path) -> int | None:
    """The output size read from a sentence-transformers folder without loading it (None if unsure)."""
    try:
        modules = _read_json(path / "modules.json")
    except (OSError, ValueError):
        return None
    dim = None
    for mod in modules:
        cfg_file = path / mod.get("path", "") / "config.json"
        kind = mod.get("type", "")
        if kind.endswith("Pooling"):
            try:
                cfg = _read_json(cfg_file)
            except (OSError, ValueError):
                return None
            modes = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v is True]
            if len(modes) != 1:
                return None  # concatenated poolings change the size; let the model say
            dim = int(cfg["word_embedding_dimension"])
        elif kind.endswith("Dense"):
            try:
                dim = int(_read_json(cfg_file)["out_features"])
            except (OSError, ValueError, KeyError):
                return None
    return dim


def _fingerprint(path: Path) -> str:
    """Short hash of a model folder's configs and weight-file sizes: two different models never share a cache."""
    h = hashlib.sha1()
    for f in sorted(path.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(path).as_posix()
        if f.suffix == ".json":
            h.update(rel.encode() + b"\0" + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".pt"):
            h.update(f"{rel}\0{f.stat().st_size}".encode())
    return h.hexdigest()[:8]


class SentenceCache:
    """Append-only (sentence -> float32 row) store for one model id; see the module docstring."""

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self.shards: list[np.ndarray] = []
        self.index: dict[str, tuple[int, int]] = {}
        self.ignored: list[str] = []  # shards dropped at load (interrupted writes), by name
        if self.folder.is_dir():
            self._load()

    def _load(self) -> None:
        # a damaged shard is a cache miss, not an error: it is skipped with a warning that names the file,
        # and its sentences are encoded again (and stored in a new shard) when they are next needed
        for keys_file in sorted(self.folder.glob("shard-*.json")):
            npy = keys_file.with_suffix(".npy")
            try:
                keys = _read_json(keys_file)
                arr = np.load(npy, allow_pickle=False)
            except (OSError, ValueError, EOFError) as err:
                self._ignore(keys_file, " ".join(str(err).split())[:100])
                continue
            if (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)
                    or arr.shape != (len(keys), self.dim) or arr.dtype != np.float32):
                self._ignore(keys_file, f"shape {arr.shape}, {len(keys) if isinstance(keys, list) else '?'} keys, "
                                        f"dim {self.dim}")
                continue
            s = len(self.shards)
            self.shards.append(arr)
            for r, key in enumerate(keys):
                self.index.setdefault(key, (s, r))  # first shard wins; duplicates hold the same vector

    def _ignore(self, keys_file: Path, reason: str) -> None:
        warnings.warn(f"sentence cache: ignoring damaged shard {keys_file} ({reason}); its sentences are "
                      f"re-encoded; delete {keys_file.with_suffix('')}.* to silence this", stacklevel=3)
        self.ignored.append(keys_file.name)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, sentence: str) -> bool:
        return sentence in self.index

    def add(self, sentences: list[str], vectors: np.ndarray) -> None:
        """Write one shard (atomic) and index it."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, dim)
        if vectors.shape != (len(sentences), self.dim):
            raise ValueError(f"sentence cache: {vectors.shape} vectors for {len(sentences)} sentences, dim {self.dim}")
        self.folder.mkdir(parents=True, exist_ok=True)
        require_space(self.folder, vectors.nbytes, "sentence cache")
        name = f"shard-{time.time_ns():020d}-{os.getpid()}"
        write_atomic(self.folder / f"{name}.npy", lambda fh: np.save(fh, vectors, allow_pickle=False))
        data = json.dumps(sentences, ensure_ascii=False).encode("utf-8")
        write_bytes(self.folder / f"{name}.json", data)  # the commit mark
        s = len(self.shards)
        self.shards.append(vectors)
        for r, key in enumerate(sentences):
            self.index.setdefault(key, (s, r))

    def get(self, sentences: Sequence[str]) -> np.ndarray:
        """Rows for sentences that are all cached -> float32 (N, dim)."""
        where = np.array([self.index[s] for s in sentences], dtype=np.int64).reshape(-1, 2)  # (N, 2)
        out = np.empty((len(sentences), self.dim), dtype=np.float32)
        for s in np.unique(where[:, 0]):  # one fancy-index gather per shard
            m = where[:, 0] == s
            out[m] = self.shards[s][where[m, 1]]
        return out


class SentenceEncoder:
    """SBERT sentence encoder, offline, cached on disk (paper §3.2 SBERT(s), Eq. 6).

    Args:
        model: "minilm" (default, all-MiniLM-L6-v2), "mpnet", a local folder or a hub id (offline).
        cache_dir: root of the sentence cache; default `config.cache_dir() / "sentences"`.
        device: torch device for the model. On CUDA the model runs in fp16 with batches of at least 512
            sentences (a GPU forward is cheap, the launches are not), and its vectors are cached apart from
            the fp32 ones (`model_id` ends in "-fp16"); a CPU runs fp32 at `batch`, as always.
        batch: sentences per forward pass.
        backend: an already built SentenceTransformer-like object (`.encode(list, batch_size=...)`,
            `.get_sentence_embedding_dimension()`) used instead of loading `model` (tests, notebooks).
    """

    def __init__(self, model: str = "minilm", cache_dir: str | Path | None = None, device: str = "cpu",
                 batch: int = 64, backend: Any = None) -> None:
        self.model = model
        self.device = device
        self.half = str(device).startswith("cuda")
        self.batch = max(int(batch), 512) if self.half else int(batch)
        self._backend = backend
        self.calls = 0  # forward calls made by this object (a fully cached pass makes none)
        self.encoded = 0  # sentences actually sent to the model
        if backend is not None:
            self.path = None
            self.dim = int(backend.get_sentence_embedding_dimension())
            self.model_id = _slug(f"{model}-{self.dim}d")
        else:
            self.path = _resolve(model)
            local = Path(self.path)
            dim = _static_dim(local) if local.is_dir() else None
            if dim is None:
                dim = int(self._load().get_sentence_embedding_dimension())
            self.dim = dim
            if local.is_dir():
                name = local.name if local.name not in ("model", "snapshot", "") else local.parent.name
                label = model if not Path(model).exists() else name  # registered name, else the folder
                self.model_id = _slug(f"{label}-{self.dim}d-{_fingerprint(local)}")
            else:
                self.model_id = _slug(f"{model}-{self.dim}d")
        if self.half:
            self.model_id += "-fp16"  # fp16 vectors differ from fp32 in the 4th digit: never mixed in one cache
        root = Path(cache_dir) if cache_dir is not None else config.cache_dir() / "sentences"
        self.cache = SentenceCache(root / self.model_id, self.dim)

    def _load(self) -> Any:
        if self._backend is None:
            if hub_model_cached(self.path):  # on this machine: never reach a model hub for it
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            else:  # a hub id the user asked for and does not have yet (e.g. the paper's SBERT): say so
                print(f"text model {self.path!r} is not cached: downloading it from the Hugging Face hub",
                      file=sys.stderr)
            from sentence_transformers import SentenceTransformer  # lazy: loads torch and transformers (seconds)

            try:  # transformers' own "Loading weights" bar: stderr is for messages (docs/errors.md)
                from transformers.utils import logging as hf_logging  # lazy: as SentenceTransformer above

                hf_logging.disable_progress_bar()
            except ImportError:
                pass
            self._backend = SentenceTransformer(self.path, device=self.device)
            if self.half:
                self._backend.half()
        return self._backend

    def encode(self, sentences: Sequence[str], progress: bool = False) -> np.ndarray:
        """Raw (not normalised) SBERT embeddings -> float32 (N, dim); cached sentences are not re-encoded."""
        sentences = list(sentences)
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TypeError(f"sentence #{i} is {type(s).__name__}, expected str: {s!r:.60}")
        missing = [s for s in dict.fromkeys(sentences) if s not in self.cache]  # deduplicated, ordered
        if missing:
            model = self._load()
            with progress_bar(len(missing), f"encode {self.model_id}", unit="sent", enabled=progress) as bar:
                for i in range(0, len(missing), _SHARD_ROWS):
                    chunk = missing[i:i + _SHARD_ROWS]
                    vecs = model.encode(chunk, batch_size=self.batch, convert_to_numpy=True,
                                        normalize_embeddings=False, show_progress_bar=False)
                    self.calls += 1
                    self.encoded += len(chunk)
                    self.cache.add(chunk, np.asarray(vecs, dtype=np.float32))  # one shard per chunk
                    bar.update(len(chunk))
        if not sentences:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.cache.get(sentences)

    __call__ = encode
