"""Whether a fidelity switch can change anything on the data at hand (docs/fidelity.md, "Measured cost").

A variant whose switch leaves every input of training and evaluation as it was would measure noise-free zero,
and a "+0.0" in the table would read as "costs nothing" where the truth is "cannot be seen on this data". So
before a variant trains, `unmeasurable` looks at what the variant changes against its reference and checks the
data for it:

- only the visual input (`window`, `max_len`): do both readings take the same feature rows for every mined
  triplet (`featurebank.window_index` over `train.visual_windows`), and, when `max_len` differs, cut every test
  clip into the same windows (`zsar.clip_windows`: a clip longer than `max_len` is encoded in several)?
- only the test clip cut (`max_seconds`): is every test clip at most that many feature rows (1 per second) long?
- only the precision (`autocast`): bf16 autocast exists on CUDA only, so on a CPU there is nothing to turn off.

It returns the reason (a sentence for the table) when nothing can change, else None. Any other difference is
taken to be measurable.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from cezsar.training.featurebank import window_index
from cezsar.training.train import visual_windows
from cezsar.evaluation.zsar import clip_windows

VISUAL_KEYS = {"window", "max_len"}  # what only the visual input of a training triplet reads
CLIP_KEYS = {"max_seconds"}  # what only the test clip cut reads
PRECISION_KEYS = {"autocast"}  # bf16 autocast: CUDA only (train._autocast)


def changed(reference: dict, variant: dict) -> set[str]:
    """The parameter keys whose values differ between the two parameter sets (flat params dicts)."""
    return {k for k in set(reference) | set(variant) if reference.get(k) != variant.get(k)}


def _triplet_rows(triplets: Any, window: str, bounds: np.ndarray | None, offsets: np.ndarray, max_len: int,
                  width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per triplet the bank rows of its visual input, (N, width) int64, and their mask (N, width) bool."""
    vis = visual_windows(triplets, window, bounds)
    rows, mask, win, _ = window_index(np.asarray(vis.video), np.asarray(vis.start), np.asarray(vis.end), offsets,
                                      max_len)  # (W, L), (W, L), (N,)
    r = np.zeros((len(win), width), np.int64)
    m = np.zeros((len(win), width), bool)
    r[:, :max_len], m[:, :max_len] = rows[win], mask[win]
    return np.where(m, r, -1), m


def same_visual_input(triplets: Any, store: Any, bounds: np.ndarray | None, ref: tuple[str, int],
                      var: tuple[str, int]) -> bool:
    """True when the visual inputs `ref` and `var` ((window, max_len) each) take the same feature rows for every
    triplet, so training sees the same numbers (the rows are those `train.prepare` builds)."""
    lengths = np.array([store.length(v) for v in triplets.video_ids], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # (V + 1,)
    width = max(ref[1], var[1])
    a = _triplet_rows(triplets, ref[0], bounds, offsets, ref[1], width)
    b = _triplet_rows(triplets, var[0], bounds, offsets, var[1], width)
    return bool(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))


def longest_clip(store: Any, video_ids: Iterable[str]) -> int:
    """The most feature rows (seconds at 1 fps) of any of these test clips."""
    return max((int(store.length(v)) for v in video_ids), default=0)


def same_test_windows(test_clips: dict[str, tuple[Any, list[str]]], max_len: tuple[int, int],
                      max_seconds: float | None) -> bool:
    """True when every test clip is cut into the same windows under both `max_len` values (`zsar.clip_windows`)."""
    return all(clip_windows(int(store.length(v)), max_len[0], max_seconds) ==
               clip_windows(int(store.length(v)), max_len[1], max_seconds)
               for store, ids in test_clips.values() for v in ids)


def unmeasurable(reference: dict, variant: dict, where: str, *, triplets: Any = None, store: Any = None,
                 bounds: np.ndarray | None = None, test_clips: dict[str, tuple[Any, list[str]]] | None = None,
                 device: str | None = None) -> str | None:
    """Why the variant cannot change anything on this data (one sentence), or None when it can, or when what it
    changes has no check, or when the check lacks its data. `where` names the data ("SynthActions"); `triplets`,
    `store` (training features) and `bounds` (segment bounds) serve the visual-input check, `test_clips`
    {test set: (feature store, video ids)} the test-clip checks, `device` ("cpu", "cuda") the precision check."""
    diff = changed(reference, variant)
    if diff and diff <= PRECISION_KEYS and device is not None and device != "cuda":
        return f"not measurable on {device.upper()}: bf16 autocast runs on CUDA only, so there is none to turn off"
    if diff and diff <= VISUAL_KEYS and triplets is not None:
        ref = (reference.get("window", "paper"), int(reference.get("max_len", 15)))
        var = (variant.get("window", "paper"), int(variant.get("max_len", 15)))
        if not same_visual_input(triplets, store, bounds, ref, var):
            return None
        clips = ""
        if ref[1] != var[1]:  # max_len also cuts the test clips into windows
            if not test_clips or not same_test_windows(test_clips, (ref[1], var[1]), variant.get("max_seconds")):
                return None
            clips = f", and max_len {var[1]} cuts every test clip into the same windows as {ref[1]}"
        return (f"not measurable on {where}: the visual input {var[0]!r} takes the same feature rows as {ref[0]!r} "
                f"for every one of the {len(triplets.video)} mined triplets{clips}")
    if diff and diff <= CLIP_KEYS and test_clips:
        cut = variant.get("max_seconds")
        if cut is not None and reference.get("max_seconds") is None:
            longest = {k: longest_clip(s, ids) for k, (s, ids) in test_clips.items()}
            if all(n <= int(cut) for n in longest.values()):
                sets = ", ".join(f"{k} {n} s" for k, n in longest.items())
                return (f"not measurable on {where}: every test clip is at most {int(cut)} s long (longest: {sets}), "
                        f"so the first {int(cut)} s is the whole clip")
    return None
