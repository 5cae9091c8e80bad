"""Objects of a folder of pooled features, through the backbone's own linear ImageNet head (paper §3.5).

The released features (`<video_id>.npy`, BiT-M-R152x2 pre-logits, float32 (T, 4096)) come without the
objects that mining (§3.4 object positives) and Eq. 9 (O(v)) need. The authors obtained each second's objects
by applying BiT's classification head to those same pre-logits; this module does the same for any backbone
whose classifier is one linear layer on the pooled feature:
| weights file | head keys | classes | label space |
|---|---|---|---|
| BiT `.npz` (official key layout) | `resnet/head/conv2d/{kernel,bias}` | 21,843 (BiT-M) or 1,000 (BiT-S) | imagenet21k / imagenet1k |
| EfficientNet-Lite0 state dict | `_fc.{weight,bias}` | 1,000 | imagenet1k |
| torchvision ResNet-152 state dict | `fc.{weight,bias}` | 1,000 | imagenet1k |

Only the head is read from the file (np.load of an .npz is lazy per key), so the 900 MB BiT file costs one
(4096, 21843) matrix. Output: `<out>/<video_id>.npz` {"indices": int32 (T, K), "scores": float16 (T, K)}, the
same files `cezsar extract` writes under `objects/`, plus `<out>/objects.json` (label space, head, top-k) and
`<out>/report.json`. Resumable: a valid file is kept on a rerun, a torn one is redone.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cezsar.encoders import shards
from cezsar.base.atomic import remove_stale_temps, write_atomic, write_json
from cezsar.base.diskspace import require_space
from cezsar.formats.datasets import Video
from cezsar.base.devices import resolve_device
from cezsar.errors import FeatureError
from cezsar.encoders.features import FeatureStore, check_objects, check_stack
from cezsar.encoders.extraction import shard_videos
from cezsar.encoders.objects import topk_logsumexp
from cezsar.base.progress import progress_bar
from cezsar.encoders.resources import efficientnet_lite0_weights

LABEL_SPACE_BY_CLASSES = {21843: "imagenet21k", 1000: "imagenet1k"}
_BIT_KERNEL, _BIT_BIAS = "resnet/head/conv2d/kernel", "resnet/head/conv2d/bias"


@dataclass
class LinearHead:
    """logits = features @ weight.T + bias: a backbone's ImageNet classifier on its pooled feature."""

    weight: np.ndarray  # (C, D) float32
    bias: np.ndarray  # (C,) float32
    backbone: str  # bit_m_r152x2 | efficientnet_lite0 | resnet152
    source: str  # the weights file it came from

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def label_space(self) -> str:
        if self.num_classes not in LABEL_SPACE_BY_CLASSES:
            raise ValueError(f"{self.source}: a head with {self.num_classes} classes has no ImageNet label space "
                             f"(expected one of {sorted(LABEL_SPACE_BY_CLASSES)})")
        return LABEL_SPACE_BY_CLASSES[self.num_classes]


def load_head(weights: str | Path | None, backbone: str | None = None) -> LinearHead:
    """The linear head stored in `weights` (kind recognised from the file, see the module table).

    `weights=None` with backbone efficientnet_lite0 (or None) takes the offline EfficientNet-Lite0 weights.
    A file that holds no known head is an error naming it.
    """
    if weights is None or str(weights) == "":
        if backbone not in (None, "efficientnet_lite0"):
            raise FileNotFoundError(f"the {backbone} head needs its weights file (--weights)")

        weights = efficientnet_lite0_weights()
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: head weights file not found")
    if path.suffix == ".npz":
        try:
            with np.load(path) as npz:
                if _BIT_KERNEL not in npz.files or _BIT_BIAS not in npz.files:
                    raise ValueError(f"{path}: no BiT head ({_BIT_KERNEL!r}, {_BIT_BIAS!r}) in this .npz")
                kernel = np.asarray(npz[_BIT_KERNEL], np.float32)  # (1, 1, D, C), TensorFlow HWIO
                bias = np.asarray(npz[_BIT_BIAS], np.float32).reshape(-1)  # (C,)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: unreadable .npz ({err})") from err
        if kernel.ndim != 4 or kernel.shape[:2] != (1, 1) or kernel.shape[3] != bias.shape[0]:
            raise ValueError(f"{path}: BiT head kernel {kernel.shape} / bias {bias.shape} do not fit (1, 1, D, C)")
        return LinearHead(np.ascontiguousarray(kernel[0, 0].T), bias, "bit_m_r152x2", str(path))  # (C, D)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a state dict
        first = str(err).strip().split(". ")[0][:120]  # torch's messages run to several sentences
        raise ValueError(f"{path}: not a BiT .npz nor a readable torch state dict ({type(err).__name__}: {first})") \
            from err
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    for prefix, name in (("_fc", "efficientnet_lite0"), ("fc", "resnet152")):
        w, b = sd.get(f"{prefix}.weight") if isinstance(sd, dict) else None, \
            sd.get(f"{prefix}.bias") if isinstance(sd, dict) else None
        if isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor) and w.ndim == 2:
            return LinearHead(w.float().numpy().copy(), b.float().numpy().copy(), name, str(path))
    raise ValueError(f"{path}: no linear head found (expected '_fc.weight' of EfficientNet-Lite0 or 'fc.weight' "
                     "of ResNet-152, or a BiT .npz)")


def topk_probs(logits: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row top-k of the softmax: indices int32 (T, k) by decreasing probability, scores float16 (T, k).

    The same output as `objects.topk_from_logits` (a float64 softmax and a full sort, the reference), from
    `objects.topk_logsumexp`: top-k of the logits and one log-sum-exp per row, on the logits' device.
    """
    idx, sc = topk_logsumexp(logits, k)  # (T, k) each
    return idx.to(torch.int32).cpu().numpy(), sc.to(torch.float16).cpu().numpy()


def chunk_rows_for(device: torch.device, num_classes: int) -> int:
    """Feature rows per head GEMM: 65,536 on a GPU (a (65,536, 21,843) fp32 logit block is 5.7 GB), and on a CPU
    as many as keep that block near 256 MB (2,048 rows at 21,843 classes)."""
    if device.type == "cuda":
        return 65536
    return max(256, min(65536, (256 << 20) // (4 * max(1, num_classes))))


def objects_from_bank(bank: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, topk: int = 5,
                      chunk_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row objects of a feature bank (paper §3.5): logits = bank @ weight.T + bias in chunks of `chunk_rows`
    rows on the bank's device, each reduced to its top-k and log-sum-exp before the next (never a float64
    softmax, never all the logits at once). bank (N, D) any float dtype; weight (C, D), bias (C,) float32.
    Returns (indices int32 (N, k), scores float16 (N, k)) on the bank's device."""
    n = bank.shape[0]
    k = min(topk, weight.shape[0])
    chunk = chunk_rows or chunk_rows_for(bank.device, weight.shape[0])
    idx = torch.empty((n, k), dtype=torch.int32, device=bank.device)
    sc = torch.empty((n, k), dtype=torch.float16, device=bank.device)
    for i in range(0, n, chunk):
        x = bank[i:i + chunk].to(weight.dtype)  # (R, D) in the head's dtype
        ci, cs = topk_logsumexp(torch.addmm(bias, x, weight.T), k)  # (R, C) logits -> (R, k) each
        idx[i:i + chunk] = ci.to(torch.int32)
        sc[i:i + chunk] = cs.to(torch.float16)
    return idx, sc


def _valid(path: Path, t: int, k: int) -> bool:
    """A finished objects file: readable, T rows, k classes a row (the check `cezsar extract` uses)."""

    try:
        idx, _ = check_objects(path, t)
    except FeatureError:
        return False
    return idx.shape[1] == k


def objects_from_features(features: str | Path, head: LinearHead, out: str | Path | None = None, topk: int = 5,
                          device: str = "cpu", batch_rows: int | None = None, progress: bool = True,
                          shard: tuple[int, int] | None = None) -> dict:
    """Write `<out>/<id>.npz` for every `<features>/<id>.npy` that lacks a valid one (module doc).

    `out` defaults to `<features>/objects` (where `cezsar extract` puts them). Returns the report:
    {"videos", "done", "computed", "reused", "skipped": [{"video_id", "reason"}], "rows", "seconds",
    "label_space", "out"}; a stack that cannot be read is skipped with its reason, never silently.
    shard: (k, n); None = every stack alone, this rank's part under torchrun (rank 0 then returns the merged
    report, cezsar.encoders.shards). batch_rows: feature rows per head GEMM, gathered across videos (None: 65,536 on a
    GPU, `chunk_rows_for`); the rows of consecutive videos go through `objects_from_bank` together.
    """

    shard, merge = shards.for_this_process(shard, resolve_device(device))
    store = FeatureStore(features)
    if store.dim != head.dim:
        raise ValueError(f"{features}: features are {store.dim}-d but the head in {head.source} takes "
                         f"{head.dim}-d inputs (a head of another backbone?)")
    out = Path(out) if out else Path(features) / "objects"
    out.mkdir(parents=True, exist_ok=True)
    stale = remove_stale_temps(out)  # a killed earlier run's half-written files
    meta = {"label_space": head.label_space, "num_classes": head.num_classes, "topk": int(topk),
            "backbone": head.backbone, "dim": head.dim, "head": Path(head.source).name}
    meta_path = out / "objects.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        clash = {k: (old.get(k), v) for k, v in meta.items() if k != "head" and old.get(k) != v}
        if clash:
            raise ValueError(f"{meta_path}: folder holds other objects {clash} (old, new); delete it or use "
                             "another --out")
    else:
        write_json(meta_path, meta)
    dev = resolve_device(device)
    w = torch.from_numpy(head.weight).to(dev)  # (C, D)
    b = torch.from_numpy(head.bias).to(dev)  # (C,)
    chunk = batch_rows or chunk_rows_for(dev, head.num_classes)

    ids = [v.video_id for v in shard_videos([Video(i, None, "") for i in store.ids], shard)]
    t0 = time.perf_counter()
    computed = reused = rows = 0
    skipped: list[dict] = []
    pending: list[tuple[str, np.ndarray]] = []  # checked stacks waiting for a full chunk of rows

    def flush() -> None:
        nonlocal computed, rows
        if not pending:
            return
        bank = torch.from_numpy(np.concatenate([x for _, x in pending]))  # (R, D) float32
        with torch.inference_mode():
            idx_d, sc_d = objects_from_bank(bank.to(dev), w, b, topk, chunk)  # (R, K) each
        idx, sc = idx_d.cpu().numpy(), sc_d.cpu().numpy()
        lo = 0
        for vid, x in pending:
            vi, vs = idx[lo:lo + len(x)], sc[lo:lo + len(x)]
            require_space(out, vi.nbytes + vs.nbytes, f"objects of {vid}")
            write_atomic(out / f"{vid}.npz", lambda fh: np.savez(fh, indices=vi, scores=vs))
            lo += len(x)
            computed += 1
            rows += len(x)
            bar.update(1)
        pending.clear()

    with progress_bar(len(ids), f"objects {shard[0]}/{shard[1]}", unit="video", enabled=progress) as bar:
        for vid in ids:
            target = out / f"{vid}.npz"
            try:
                t = store.length(vid)
            except (OSError, ValueError) as err:
                skipped.append({"video_id": vid, "reason": f"unreadable .npy ({err})"})
                bar.update(1)
                continue
            if _valid(target, t, min(topk, head.num_classes)):
                reused += 1
                bar.update(1)
                continue
            try:
                x = check_stack(store.path(vid), store.dim)  # (T, D) float32, checked
            except FeatureError as err:
                skipped.append({"video_id": vid, "reason": str(err)})
                bar.update(1)
                continue
            pending.append((vid, x))
            if sum(len(p) for _, p in pending) >= chunk:  # a handful of stacks per chunk: the sum is cheap
                flush()
        flush()
    seconds = time.perf_counter() - t0
    report = {"features": str(features), "out": str(out), "label_space": head.label_space, "head": head.source,
              "shard": list(shard), "videos": len(ids), "done": computed + reused, "computed": computed,
              "reused": reused, "skipped": skipped, "stale_temps_removed": len(stale), "rows": rows,
              "seconds": round(seconds, 3),
              "rows_per_s": round(rows / seconds, 1) if seconds > 0 else 0.0}
    write_json(out / shards.report_name(shard), report)
    return shards.finish(out, report) if merge else report
