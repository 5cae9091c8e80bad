"""Frames of consecutive videos cut into CNN batches of one fixed size across video boundaries (issue 28: a GPU
runs one shape per forward and is never fed a short batch mid-run); each video gets its rows back, in order,
once all of them have been through the CNN (`cezsar.encoders.extraction.extract` writes them)."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Pending:
    video: Any
    frames: int  # T
    rows: int = 0  # rows already through the CNN
    pieces: list = field(default_factory=list)  # (feats, indices, scores) host tensors, in row order
    event: object = None  # the CUDA event of the last batch holding its rows


class FrameBatcher:
    """The frames of consecutive videos cut into CNN batches of exactly `size` frames, whatever the videos'
    lengths (`encoder.encode_topk`: the top-k is computed where the CNN runs); on a GPU the last batch is padded
    to `size` too, so every forward has one shape. `add` and `flush` return the videos whose rows are all
    through the CNN, in order."""

    def __init__(self, encoder, k: int, size: int, pad: bool) -> None:
        self.encoder, self.k, self.size, self.pad = encoder, k, size, pad
        self.frames: list[np.ndarray] = []  # decoded frames not yet through the CNN, in order
        self.waiting = 0
        self.videos: collections.deque = collections.deque()

    def add(self, video: Any, stack: np.ndarray) -> list[Pending]:
        done = []
        if self.frames and stack.shape[1:] != self.frames[0].shape[1:]:
            done += self.flush()  # frames of another size cannot share a batch
        self.videos.append(Pending(video, len(stack)))
        self.frames.append(stack)
        self.waiting += len(stack)
        while self.waiting >= self.size:
            done += self._run(self.size)
        return done

    def flush(self) -> list[Pending]:
        done = []
        while self.waiting:
            done += self._run(min(self.size, self.waiting))
        return done

    def _run(self, n: int) -> list[Pending]:
        take, got = [], 0
        while got < n:  # the next n frames, across video boundaries
            head = self.frames[0]
            m = min(n - got, len(head))
            take.append(head[:m])
            got += m
            if m == len(head):
                self.frames.pop(0)
            else:
                self.frames[0] = head[m:]
        self.waiting -= n
        batch = np.concatenate(take) if len(take) > 1 else take[0]  # (n, H, W, 3)
        if self.pad and n < self.size:
            batch = np.concatenate([batch, np.zeros((self.size - n, *batch.shape[1:]), batch.dtype)])  # (size, ...)
        feats, idx, sc, event = self.encoder.encode_topk(batch, self.k)  # (size, D), (size, K), (size, K)
        lo = 0
        for rec in self.videos:  # hand the batch's rows to the videos they came from
            if lo == n:
                break
            m = min(rec.frames - rec.rows, n - lo)
            rec.pieces.append((feats[lo:lo + m], idx[lo:lo + m], sc[lo:lo + m]))
            rec.rows, rec.event, lo = rec.rows + m, event, lo + m
        done = []
        while self.videos and self.videos[0].rows == self.videos[0].frames:
            done.append(self.videos.popleft())
        return done
