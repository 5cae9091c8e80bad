"""The fast training data path (benchmarks/RESULTS.md): every feature stack in one contiguous array with per-video
offsets, windows as precomputed row-index matrices, and batches that forward each distinct window and
sentence once, packed: only the windows' valid rows are gathered and go through the VEM
(`JointEmbedder.encode_video_packed`).

The bank is a `.npy` file written once (atomically, by ordinary writes) and memory-mapped; on a GPU it is copied whole
to the device so that building a batch is a single gather. The released code instead did one `np.load` per sample
through a DataLoader (see `benchmarks/bench_train.py` for that reference and the ratio).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cezsar.base.atomic import remove_stale_temps, write_atomic, write_json
from cezsar.base.diskspace import require_space

BANK_VERSION = 1
FP16_MAX = 65504.0


# --- the contiguous array ------------------------------------------------------------------------
def _store_dir(store) -> Path | None:
    for name in ("dir", "root", "path", "out_dir"):
        value = getattr(store, name, None)
        if isinstance(value, (str, os.PathLike)) and Path(value).is_dir():
            return Path(value)
    return None


def _fingerprint(store, ids: list[str]) -> list | None:
    """(id, size, mtime) of every source file, so a changed feature folder rebuilds the bank."""
    root = _store_dir(store)
    if root is None:
        return None
    out = []
    for vid in ids:
        st = (root / f"{vid}.npy").stat()
        out.append([vid, st.st_size, st.st_mtime_ns])
    return out


def build_bank(store, ids: list[str], path: Path, dtype: str = "float16") -> tuple[np.ndarray, np.ndarray]:
    """Write the features of `ids` (in that order) into one (R, D) `.npy` at `path`; returns (memmap, offsets).

    offsets: int64 (V + 1,), video i owns rows offsets[i]:offsets[i+1]. Reuses an existing bank when its
    index file says it was built from the same files with the same dtype.
    """
    path = Path(path)
    index_path = path.with_suffix(".json")
    known = set(store.ids)
    missing = [vid for vid in ids if vid not in known]
    if missing:
        raise KeyError(f"{len(missing)} triplet video(s) have no features in the store, e.g. {missing[:5]}")
    fp = _fingerprint(store, ids)
    key = {"version": BANK_VERSION, "ids": list(ids), "dim": int(store.dim), "dtype": dtype, "fingerprint": fp}
    if fp is not None and path.is_file() and index_path.is_file():
        index = json.loads(index_path.read_text())
        if {k: index.get(k) for k in key} == key:
            return np.load(path, mmap_mode="r"), np.asarray(index["offsets"], dtype=np.int64)
    # FeatureStore.length reads only the .npy header; a store without it (an in-memory one) loads the stack
    count = getattr(store, "length", None) or (lambda vid: len(store.load(vid)))
    lengths = np.array([count(vid) for vid in ids], dtype=np.int64)
    for vid, n in zip(ids, lengths):
        if n < 1:
            raise ValueError(f"features of video {vid!r} have no rows")
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    shape, dt = (int(offsets[-1]), int(store.dim)), np.dtype(dtype)
    if path.parent.is_dir():
        remove_stale_temps(path.parent)  # a killed build's temp bank (gigabytes) would count against the room
    require_space(path.parent, shape[0] * shape[1] * dt.itemsize, "feature bank")

    def write(fh) -> None:
        # ordinary writes, never a memory map: a full disk is then an ENOSPC from write() (one line naming the
        # file, docs/errors.md), where pages of a map dirtied past the end of the free space would be SIGBUS
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(dt),
                                                  "fortran_order": False, "shape": shape})
        for i, vid in enumerate(ids):
            x = store.load(vid)  # (T, D) float32, validated by the store
            if x.shape != (lengths[i], store.dim):
                raise ValueError(f"features of video {vid!r}: shape {x.shape}, expected ({lengths[i]}, {store.dim})")
            if dtype == "float16" and x.size and float(np.abs(x).max()) > FP16_MAX:
                raise ValueError(f"features of video {vid!r} exceed float16 range; use bank_dtype='float32'")
            fh.write(np.ascontiguousarray(x, dtype=dt).tobytes())

    write_atomic(path, write)
    write_json(index_path, {**key, "offsets": offsets.tolist()}, indent=None)
    return np.load(path, mmap_mode="r"), offsets


def bank_tensor(bank: np.ndarray, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """The bank as a tensor: zero-copy over the memmap on CPU, one whole copy on a GPU. `dtype`: held in that
    dtype on a GPU instead (converted chunk by chunk on the device, e.g. bfloat16, `cezsar.training.static_step`)."""
    if device.type == "cpu":
        # copy-on-write view: torch wants a writable buffer, nothing is ever written
        return torch.from_numpy(np.load(bank.filename, mmap_mode="c") if isinstance(bank, np.memmap) else bank)
    out = torch.empty(bank.shape, dtype=dtype or getattr(torch, bank.dtype.name), device=device)
    step = max(1, (256 << 20) // max(1, bank.shape[1] * bank.dtype.itemsize))  # ~256 MiB host chunks
    for i in range(0, bank.shape[0], step):
        out[i:i + step].copy_(torch.from_numpy(np.ascontiguousarray(bank[i:i + step])))
    return out


# --- windows -------------------------------------------------------------------------------------
def window_index(video: np.ndarray, start: np.ndarray, end: np.ndarray, offsets: np.ndarray, max_len: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Distinct (video, start, end) windows as bank rows, paper §4 "stacks with up to 15 features".

    Row i of a video is the frame at second i (1 fps, `video.decode_1fps`); a window [start, end) takes the
    frames inside it, rows ceil(start) .. ceil(end) - 1 (a 10-s window [3.4, 13.4) is the 10 rows 4..13),
    clipped to the video's length (at least one row) and cut to the first `max_len`. Returns rows int64 (W, max_len) (padding repeats the
    last valid row so every index is in range), mask bool (W, max_len), win int64 (N,) the window of each
    triplet, and counts of clipped windows.
    """
    keys = np.stack([video.astype(np.float64), start.astype(np.float64), end.astype(np.float64)], axis=1)  # (N, 3)
    uniq, win = np.unique(keys, axis=0, return_inverse=True)
    win = win.reshape(-1).astype(np.int64)
    v = uniq[:, 0].astype(np.int64)
    if v.size and (v.min() < 0 or v.max() >= len(offsets) - 1):
        raise ValueError(f"triplet video index out of range [0, {len(offsets) - 1})")
    length = (offsets[v + 1] - offsets[v]).astype(np.int64)  # (W,)
    first = np.ceil(uniq[:, 1]).astype(np.int64)  # frame i is at second i: floor would add one from before
    last = np.ceil(uniq[:, 2]).astype(np.int64)  # exclusive
    stats = {"windows": int(len(uniq)), "past_end": int((first >= length).sum()), "truncated": 0}
    first = np.clip(first, 0, length - 1)  # a window past the features' end keeps the last second
    last = np.clip(last, first + 1, length)
    n = last - first
    stats["truncated"] = int((n > max_len).sum())
    n = np.minimum(n, max_len)
    steps = np.arange(max_len)[None, :]  # (1, L)
    mask = steps < n[:, None]  # (W, L)
    rows = offsets[v][:, None] + first[:, None] + np.minimum(steps, n[:, None] - 1)  # (W, L)
    return rows, mask, win, stats


# --- batches -------------------------------------------------------------------------------------
BATCH_MAKEUPS = ("iid", "grouped")


def batch_group(makeup: str, group: int) -> int:
    """The `epoch_order` group of a batch makeup: "iid" (paper §4, the released DataLoader) = 1, an i.i.d.
    shuffle; "grouped" = `group` triplets of one window per chunk (docs/fidelity.md "batch makeup")."""
    if makeup not in BATCH_MAKEUPS:
        raise ValueError(f"batch_makeup {makeup!r}: expected one of {', '.join(BATCH_MAKEUPS)}")
    if group < 0:
        raise ValueError(f"group {group}: must be 0 (whole windows) or more")
    return 1 if makeup == "iid" else int(group)


def epoch_order(win: np.ndarray, idx: np.ndarray, seed: int, epoch: int, group: int) -> np.ndarray:
    """A permutation of the triplets `idx` for one epoch, a pure function of (seed, epoch).

    Triplets of one window travel in chunks of `group` (0 = the whole window) so that a batch holds few
    distinct windows and each is forwarded once; chunks are shuffled. `group=1` is an i.i.d. shuffle.
    """
    rng = np.random.default_rng([seed, epoch])
    r = rng.random(len(idx))
    w = win[idx]
    if group == 1:
        return idx[np.argsort(r, kind="stable")]
    by_win = np.lexsort((r, w))  # triplets grouped by window, random order inside
    ws = w[by_win]
    starts = np.r_[0, np.flatnonzero(np.diff(ws)) + 1]  # first position of each window
    pos = np.arange(len(ws)) - np.repeat(starts, np.diff(np.r_[starts, len(ws)]))  # rank inside its window
    chunk = pos // group if group > 0 else np.zeros_like(pos)
    # rows are sorted by (window, chunk): a new group starts wherever either changes (O(N), no sort)
    gid = np.cumsum(np.r_[False, (np.diff(ws) != 0) | (np.diff(chunk) != 0)])
    gkey = rng.random(int(gid[-1]) + 1 if len(gid) else 0)[gid]
    return idx[by_win[np.lexsort((pos, gkey))]]


@dataclass
class TripletTensors:
    """Everything a training step reads, already on the step's device."""

    bank: Tensor  # (R, D) float16/32 features of every video
    rows: Tensor  # (W, L) int64 bank rows of each window
    mask: Tensor  # (W, L) bool valid rows
    win: Tensor  # (N,) int64 window of each triplet
    pos: Tensor  # (N,) int64 positive sentence id
    neg: Tensor  # (N,) int64 negative sentence id
    text: Tensor  # (S, text_dim) float32 SBERT vectors

    def video_batch(self, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Distinct windows of triplets `b`, padded for `encode_video`: (x (U, T, D) float32, mask (U, T),
        inverse (B,)). Training uses `packed_video_batch`; this layout is its reference in the tests."""
        uw, mask, inv = self._windows(b)
        rows = self.rows[uw, :mask.shape[1]]  # (U, t)
        x = self.bank[rows.reshape(-1)].reshape(rows.shape[0], rows.shape[1], -1).float()  # (U, t, D) one gather
        return x, mask, inv

    def packed_video_batch(self, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Distinct windows of triplets `b`, packed for `JointEmbedder.encode_video_packed`: (x (N, D) float32
        the valid rows only, window after window; mask (U, t); index (N,) flat position of each row in the
        (U, t) layout; inverse (B,)). Equal to `video_batch`'s x[mask], without gathering the padding."""
        uw, mask, inv = self._windows(b)
        index = mask.reshape(-1).nonzero().squeeze(1)  # (N,) row-major: window after window
        rows = self.rows[uw, :mask.shape[1]].reshape(-1)[index]  # (N,) bank rows of the valid steps
        x = self.bank[rows].float()  # (N, D) one gather
        return x, mask, index, inv

    def _windows(self, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Distinct windows of triplets `b`: (window ids (U,), mask (U, t) cut to the longest, inverse (B,))."""
        uw, inv = torch.unique(self.win[b], return_inverse=True)
        mask = self.mask[uw]  # (U, L)
        t = int(mask.sum(1).max())  # trim the all-padding tail; padding never changes the output
        return uw, mask[:, :t], inv

    def text_batch(self, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Distinct sentences of triplets `b`: (s (U, text_dim), inverse_pos (B,), inverse_neg (B,))."""
        ids = torch.cat([self.pos[b], self.neg[b]])  # (2B,)
        us, inv = torch.unique(ids, return_inverse=True)
        return self.text[us], inv[: len(b)], inv[len(b):]


def to_tensors(bank: np.ndarray, rows: np.ndarray, mask: np.ndarray, win: np.ndarray, pos: np.ndarray,
               neg: np.ndarray, text: np.ndarray, device: torch.device,
               bank_dtype: torch.dtype | None = None) -> TripletTensors:
    """Move the fast path's arrays to `device` once (the bank whole on a GPU, in `bank_dtype` when given)."""
    def t(a: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    if text.shape[0] and (pos.max(initial=0) >= text.shape[0] or neg.max(initial=0) >= text.shape[0]):
        raise ValueError(f"triplet sentence id out of range of the {text.shape[0]} sentence vectors")
    return TripletTensors(bank_tensor(bank, device, bank_dtype), t(rows, torch.int64), t(mask, torch.bool),
                          t(win, torch.int64), t(pos, torch.int64), t(neg, torch.int64), t(text, torch.float32))

