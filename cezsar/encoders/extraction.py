"""Feature extraction over a dataset (paper §3.2; docs/decisions.md §2, §10, §11): 1-fps frames through the frame
encoder into the feature folder that `cezsar.encoders.features.FeatureStore` reads back.

Restartable: every file is written to a temp name and renamed, the .npy last, so a video counts as
finished only when both of its files are complete and valid; a rerun skips those and redoes the rest
(a corrupt file is redone, not trusted). `shard=(k, n)` takes the videos whose position in the id-sorted
list is k mod n, so n job-array tasks cover a dataset exactly once; under `torchrun` the shard is the rank
and rank 0 merges the reports at the end (cezsar.encoders.shards, docs/decisions.md §13). Decoders
(`ExtractConfig.decoders`) decode the next videos while the CNN encodes the current one (§11: decoding overlaps the
CNN). A bad video never stops the run: it is listed in the report with its reason. An encoder with `encode_topk` (every
ImageNet FrameEncoder) gets its frames in batches cut across videos (`FrameBatcher`; on a GPU always `batch` frames, the
last padded) and returns each frame's top-k objects computed where it runs (docs/decisions.md §11).
"""
from __future__ import annotations

import collections
import json
import os
import queue
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from cezsar.encoders import shards
from cezsar.formats import manifest
from cezsar.base.atomic import remove_stale_temps, write_atomic, write_json
from cezsar.encoders.backbones import get_encoder
from cezsar.config import ExtractConfig
from cezsar.base.diskspace import require_space
from cezsar.errors import FeatureError
from cezsar.encoders.features import check_objects, check_stack
from cezsar.encoders.objects import NO_LABELS
from cezsar.encoders.frame_batches import FrameBatcher
from cezsar.encoders.objects import topk_from_logits
from cezsar.base.progress import progress_bar
from cezsar.errors import ResourceMissing
from cezsar.encoders.resources import efficientnet_lite0_weights
from cezsar.errors import VideoDecodeError
from cezsar.encoders.video import decode_1fps, decode_released


class VideoLike(Protocol):  # cezsar.formats.datasets.Video or anything with these fields
    video_id: str
    path: Path | None
    label: str


def finished(out: Path, vid: str, dim: int, topk: int) -> bool:
    """Whether video `vid` of folder `out` is done: its stack (and, with `topk` > 0, its objects) complete and valid."""
    try:
        t = len(check_stack(out / f"{vid}.npy", dim))
        if topk == 0:  # no objects for this backbone (CLIP)
            return True
        idx, _ = check_objects(out / "objects" / f"{vid}.npz", t)
    except (FeatureError, FileNotFoundError):
        return False
    return idx.shape[1] == topk


def shard_videos(videos: Iterable[VideoLike], shard: tuple[int, int] = (0, 1)) -> list[VideoLike]:
    """The videos of shard k of n: position in the id-sorted list mod n == k (deterministic)."""
    k, n = shard
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard must be K/N with 0 <= K < N, got {k}/{n}")
    by_id: dict[str, VideoLike] = {}
    for v in videos:
        if v.video_id in by_id:
            raise ValueError(f"duplicate video id {v.video_id!r} ({by_id[v.video_id].path} and {v.path})")
        by_id[v.video_id] = v
    return [by_id[i] for j, i in enumerate(sorted(by_id)) if j % n == k]


_END = object()


def _decode_one(v, cfg: ExtractConfig, size: tuple[int, int] | None, threads: int = 0) -> tuple:
    """(video, frames | None, reason | None) for one video: a bad file is a reason, not an exception.
    threads: FFmpeg's per decoder (0 = its own choice, for a lone decoder; 1 in each of several decoder
    processes, where the parallelism is the processes, `decoders_for`)."""

    if v.path is None:
        return v, None, "no video file"
    try:
        if cfg.released_sampling:  # docs/fidelity.md "frame sampling"
            return v, decode_released(v.path, cfg.max_seconds, size=size, threads=threads), None
        return v, decode_1fps(v.path, cfg.max_seconds, size=size, threads=threads), None
    except VideoDecodeError as err:
        return v, None, err.reason


def decoders_for(device, wanted: int = 0) -> int:
    """Video decoders beside a CNN on `device`: `wanted` if > 0; else 1 on a CPU, where the CNN already uses
    every core, and on a GPU one single-threaded decoder process per core less two (the CNN's thread and the
    writer keep theirs): one 1-fps decoder feeds ~50-100 frames/s, a GPU CNN takes thousands. Under torchrun
    the machine's cores are shared by its LOCAL_WORLD_SIZE ranks."""
    if wanted > 0:
        return int(wanted)
    if getattr(device, "type", str(device)) == "cpu":
        return 1
    cores = (os.cpu_count() or 2) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, cores - 2)


class _Decoded:
    """The videos of `todo` decoded in their order, as a torch Dataset for DataLoader worker processes."""

    def __init__(self, todo: list, cfg: ExtractConfig, size: tuple[int, int] | None) -> None:
        self.todo, self.cfg, self.size = todo, cfg, size

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int) -> tuple:
        import torch  # lazy: in a worker process, which the DataLoader started with torch loaded

        _, frames, reason = _decode_one(self.todo[i], self.cfg, self.size, threads=1)  # one of several processes
        # the index, not the video: only tensors and strings cross to the CNN's process; a uint8 tensor travels
        # through shared memory, where a numpy array would be pickled through the pipe
        return i, None if frames is None else torch.from_numpy(frames), reason


def _as_is(item):
    return item  # DataLoader's collate: keep the frames as they are


def _decoded(todo: list, cfg: ExtractConfig, size: tuple[int, int] | None, workers: int):
    """Yield (video, frames | None, reason | None) in the order of `todo`. One decoder runs in this thread;
    several run as DataLoader worker processes, not threads: a decoder thread holds the GIL while it converts
    frames, and the CNN's thread needs the GIL to launch its GPU kernels (measured on an H100: 8 decoder
    threads fed BiT slower than 1)."""
    if workers <= 1 or len(todo) <= 1:
        for v in todo:
            yield _decode_one(v, cfg, size)
        return
    import torch.utils.data  # lazy: extraction with one decoder (the CPU default) never needs it

    loader = torch.utils.data.DataLoader(_Decoded(todo, cfg, size), batch_size=None, shuffle=False,
                                         num_workers=min(workers, len(todo)), collate_fn=_as_is, prefetch_factor=2)
    for i, frames, reason in loader:
        yield todo[i], None if frames is None else frames.numpy(), reason  # (T, H, W, 3) uint8, no copy


def _prefetch(todo: list, cfg: ExtractConfig, size: tuple[int, int] | None, q: queue.Queue, stop: threading.Event,
              workers: int = 1) -> None:
    """Producer thread: decode videos into `q` in their order as (video, frames | None, reason | None), with
    `workers` decoders (`_decoded`)."""
    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in _decoded(todo, cfg, size, workers):
            if not put(item):
                return
        put(_END)
    except Exception as err:  # a bug, not a bad video: hand it to the main thread to re-raise
        put(err)


_WRITES_IN_FLIGHT = 4


def _check_room(out: Path, mine: list, todo: list) -> None:
    """Refuse before decoding when the videos still to do will not fit under `out` (docs/errors.md): their size
    is estimated from the stacks already written (mean bytes per video), so a first run is checked per video."""
    if not todo:
        return
    done = [out / f"{v.video_id}.npy" for v in mine if v not in todo]
    sizes = [p.stat().st_size for p in done[:200] if p.is_file()]
    if sizes:
        per_video = sum(sizes) / len(sizes) * (1.1 if (out / "objects").is_dir() else 1.0)
        require_space(out, int(per_video * len(todo)), f"features of {len(todo)} video(s)")


def _write_video(out: Path, video_id: str, feats: np.ndarray, idx: np.ndarray | None, sc: np.ndarray | None) -> None:
    """A video's two files, objects first and stack last: a .npy on disk implies its objects are complete
    (objects None: a backbone without them, only the stack)."""
    require_space(out, feats.size * 4 + (0 if idx is None else idx.nbytes + sc.nbytes), f"features of {video_id}")
    if idx is not None:
        write_atomic(out / "objects" / f"{video_id}.npz", lambda fh: np.savez(fh, indices=idx, scores=sc))
    write_atomic(out / f"{video_id}.npy", lambda fh: np.save(fh, feats.astype(np.float32), allow_pickle=False))


def _write_rows(out: Path, video_id: str, pieces: list, event) -> None:
    """A video's rows, gathered from the batches they ran in, written as by `_write_video` once the device has
    finished copying them back (`event`: the CUDA event of the video's last batch, None on a CPU)."""
    if event is not None:
        event.synchronize()  # this thread waits for the copies; the CNN's thread does not
    feats = np.concatenate([f.numpy() for f, _, _ in pieces])  # (T, D)
    idx = np.concatenate([i.numpy() for _, i, _ in pieces]).astype(np.int32)  # (T, K)
    sc = np.concatenate([c.numpy() for _, _, c in pieces]).astype(np.float16)  # (T, K)
    _write_video(out, video_id, feats, idx, sc)


def extraction_manifest(encoder, cfg: ExtractConfig) -> dict:
    """The manifest (cezsar.formats.manifest) of the features `encoder` makes under `cfg`: backbone, the SHA-256 of its
    weights file (the packaged EfficientNet-Lite0 one when `cfg.weights` is None), preprocessing, sampling."""
    weights = cfg.weights
    if weights is None and encoder.name == "efficientnet_lite0":
        try:
            weights = efficientnet_lite0_weights()
        except ResourceMissing:
            weights = None
    mode = getattr(encoder, "preprocess_mode", "paper")
    return manifest.make(encoder.name, int(encoder.dim), int(encoder.image_size),
                         manifest.preprocess_name(mode, encoder.image_size),
                         "released" if cfg.released_sampling else "1fps", weights=weights)


def extract(videos: Iterable[VideoLike], out_dir: str | Path, cfg: ExtractConfig | None = None,
            shard: tuple[int, int] | None = None, encoder=None, progress: bool = True) -> dict:
    """Encode every video of the shard at 1 fps into `out_dir` (module doc); returns the report dict.

    shard: (k, n); None = the whole list alone, this rank's part under torchrun (then rank 0 returns the
    merged report of all ranks, written to report.json).

    Report: backbone, shard, videos, done (finished videos, old and new), encoded (this run), reused
    (valid from an earlier run), skipped [{video_id, path, reason}], frames (encoded this run), seconds,
    frames_per_s.
    """

    cfg = cfg or ExtractConfig()
    shard, merge = shards.for_this_process(shard, getattr(encoder, "device", "cpu"))
    out = Path(out_dir)
    if encoder is None:
        encoder = get_encoder(cfg.backbone, cfg.weights, image_size=cfg.image_size, batch=cfg.batch)
    objects = encoder.label_space != NO_LABELS  # CLIP has no ImageNet head: no objects, said in features.json
    out.mkdir(parents=True, exist_ok=True)
    if objects:
        (out / "objects").mkdir(exist_ok=True)
    stale = remove_stale_temps(out) + remove_stale_temps(out / "objects")  # a killed earlier run's leftovers
    meta = {"backbone": encoder.name, "dim": int(encoder.dim), "label_space": encoder.label_space,
            "topk": int(cfg.topk_objects) if objects else 0, "image_size": int(encoder.image_size)}
    meta_path = out / "features.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        clash = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
        if clash:
            raise ValueError(f"{meta_path}: folder holds other features {clash} (old, new); use another --out")
    else:
        write_json(meta_path, meta)
    made = extraction_manifest(encoder, cfg)
    old_made = manifest.read(out)
    if old_made is not None:
        clash = manifest.compare(old_made, made)
        if clash:
            raise ValueError(f"{out / manifest.FILE}: folder holds features made another way "
                             f"{ {k: (a, b) for k, a, b in clash} } (old, new); use another --out")
    elif next((p for p in out.glob("*.npy") if not p.name.startswith(".")), None) is not None:
        # stacks from before manifests: how they were made is unknown, so no manifest may vouch for them
        warnings.warn(f"{out}: holds feature stacks made before manifests; {manifest.FILE} is not written (how they "
                      "were made is unknown): extract into an empty folder to have one", stacklevel=2)
    else:
        manifest.write(out, made)

    mine = shard_videos(videos, shard)
    t0 = time.perf_counter()
    todo, reused = [], 0
    for v in mine:
        if finished(out, v.video_id, meta["dim"], meta["topk"]):
            reused += 1
        else:
            todo.append(v)
    _check_room(out, mine, todo)

    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    # the decoder's output size: the encoder's square input, or native frames (None) for an encoder that crops
    size = getattr(encoder, "decode_size", (encoder.image_size, encoder.image_size))
    workers = decoders_for(getattr(encoder, "device", "cpu"), cfg.decoders)
    producer = threading.Thread(target=_prefetch, args=(todo, cfg, size, q, stop, workers), daemon=True)
    producer.start()
    skipped, encoded, frames = [], 0, 0
    # an encoder that computes its objects where it runs (FrameEncoder) gets fixed-size batches across videos
    batcher = FrameBatcher(encoder, meta["topk"], int(getattr(encoder, "batch", 32)),
                       pad=getattr(getattr(encoder, "device", None), "type", "cpu") == "cuda") \
        if objects and hasattr(encoder, "encode_topk") else None
    # the files are written (and fsynced) on a thread while the CNN encodes the next video; at most
    # `in_flight` videos wait, and every write has finished (or raised) before the report is written
    writes: collections.deque = collections.deque()
    # batched, a write waits for its batch's copies: allow two batches of (one-frame) videos in flight, so the
    # CNN's thread never waits for the batch it has just launched
    in_flight = max(_WRITES_IN_FLIGHT, 2 * batcher.size) if batcher is not None else _WRITES_IN_FLIGHT

    def submit(fn, *args) -> None:
        writes.append(writer.submit(fn, out, *args))
        while len(writes) > in_flight:
            writes.popleft().result()

    try:
        with progress_bar(len(todo), f"extract {shard[0]}/{shard[1]}", unit="video", enabled=progress) as bar, \
                ThreadPoolExecutor(1, thread_name_prefix="write") as writer:
            while True:
                item = q.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                v, stack, reason = item
                if stack is None:
                    skipped.append({"video_id": v.video_id, "path": str(v.path), "reason": reason})
                elif batcher is not None:
                    done = batcher.add(v, stack)
                    if not batcher.pad and q.empty():  # a CPU CNN has no use for full batches: never wait for them
                        done += batcher.flush()
                    for rec in done:
                        submit(_write_rows, rec.video.video_id, rec.pieces, rec.event)
                    encoded += 1
                    frames += len(stack)
                else:
                    feats, logits = encoder.encode(stack)  # (T, D), (T, C)
                    idx, sc = topk_from_logits(logits, cfg.topk_objects) if objects else (None, None)  # (T, K)
                    submit(_write_video, v.video_id, feats, idx, sc)
                    encoded += 1
                    frames += len(feats)
                bar.update(1)
            for rec in batcher.flush() if batcher is not None else []:
                submit(_write_rows, rec.video.video_id, rec.pieces, rec.event)
            while writes:
                writes.popleft().result()
    finally:
        stop.set()
        producer.join(timeout=5)
    seconds = time.perf_counter() - t0
    report = {"backbone": encoder.name, "shard": list(shard), "videos": len(mine), "done": reused + encoded,
              "encoded": encoded, "reused": reused, "skipped": skipped, "stale_temps_removed": len(stale),
              "frames": frames, "decoders": workers,
              "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 2) if seconds > 0 else 0.0,
              "config": asdict(cfg)}
    write_json(out / shards.report_name(shard), report)
    return shards.finish(out, report) if merge else report

