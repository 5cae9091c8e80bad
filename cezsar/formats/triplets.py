"""The mined triplet file: (window, positive, negative) index arrays in a deterministic .npz (docs/decisions.md §2, §7)."""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cezsar.base.atomic import write_atomic
from cezsar.base.diskspace import require_space

_ARRAYS = ("video", "segment", "start", "end", "pos", "neg", "val")
_VOLATILE = ("time",)  # summary keys left out of the file, so the same seed gives the same bytes


@dataclass
class TripletSet:
    """Mined triplets as index arrays into `sentences` / `video_ids` (docs/decisions.md §2: ints, not copies)."""

    sentences: list[str]
    video_ids: list[str]
    video: np.ndarray  # int32 (N,) index into video_ids
    start: np.ndarray  # float32 (N,) window start, seconds
    end: np.ndarray  # float32 (N,) window end, seconds
    pos: np.ndarray  # int32 (N,) positive sentence id
    neg: np.ndarray  # int32 (N,) negative sentence id
    val: np.ndarray  # bool (N,) True = validation video (split by video, never by triplet)
    summary: dict = field(default_factory=dict)
    text_model: str = ""
    segment: np.ndarray | None = None  # int32 (N,) captioned segment the window comes from

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def subset_videos(self, keep: set[str]) -> "TripletSet":
        """The triplets whose video id is in `keep` (video indices renumbered; sentences kept as they are)."""
        kept = [i for i, v in enumerate(self.video_ids) if v in keep]
        remap = np.full(len(self.video_ids), -1, np.int32)
        remap[kept] = np.arange(len(kept), dtype=np.int32)
        rows = np.flatnonzero(remap[self.video] >= 0)
        pick = (lambda a: None if a is None else np.asarray(a)[rows])
        return TripletSet(self.sentences, [self.video_ids[i] for i in kept], remap[self.video][rows],
                          pick(self.start), pick(self.end), pick(self.pos), pick(self.neg), pick(self.val),
                          dict(self.summary), self.text_model, pick(self.segment))

    def save(self, path: str | Path) -> None:
        """Atomic, deterministic .npz (no pickle; fixed zip timestamps; timings left out)."""
        path = Path(path)
        meta = {"sentences": self.sentences, "video_ids": self.video_ids, "text_model": self.text_model,
                "summary": {k: v for k, v in self.summary.items() if k not in _VOLATILE}}
        arrays = {name: getattr(self, name) for name in _ARRAYS if getattr(self, name) is not None}
        arrays["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"), np.uint8)
        # deflate seldom shrinks these much: the uncompressed size is the estimate (docs/errors.md, a full disk)
        require_space(path.parent, sum(np.asarray(a).nbytes for a in arrays.values()), "triplet file")

        def write(fh) -> None:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name, arr in arrays.items():
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                    zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue(),
                                compress_type=zipfile.ZIP_DEFLATED)

        write_atomic(path, write)

    @classmethod
    def load(cls, path: str | Path) -> "TripletSet":
        """Read a file written by `save`; errors name the file."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode("utf-8"))
                arrays = {name: z[name] for name in _ARRAYS if name in z.files}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: not a triplet file ({err})") from err
        missing = [n for n in _ARRAYS if n != "segment" and n not in arrays]
        if missing:
            raise ValueError(f"{path}: triplet file lacks {', '.join(missing)}")
        ts = cls(meta["sentences"], meta["video_ids"], summary=meta["summary"], text_model=meta["text_model"],
                 **arrays)
        n = len(ts)
        if any(a.shape != (n,) for a in arrays.values()):
            raise ValueError(f"{path}: triplet arrays differ in length")
        if n and (ts.pos.max() >= len(ts.sentences) or ts.neg.max() >= len(ts.sentences)
                  or ts.video.max() >= len(ts.video_ids)):
            raise ValueError(f"{path}: sentence or video index out of range")
        return ts
