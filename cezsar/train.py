"""Contrastive training of the joint embedder (paper §3.3 and §4) in the MAE engine style:
`train_one_epoch` / `evaluate` / `fit`, with per-epoch atomic checkpoints that resume bit-for-bit on CPU.

Data arrives through the fast path of `cezsar.featurebank`: one contiguous feature array, windows as
row-index matrices, each distinct window and sentence forwarded once per batch, the windows packed (their
valid rows only through the VEM, `JointEmbedder.encode_video_packed`).

Under `torchrun` (docs/decisions.md §13) the same `fit` runs DistributedDataParallel: every rank draws the
same epoch order, each global batch of `TrainConfig.batch` triplets is cut into one equal slice per rank,
gradients are averaged across ranks, and rank 0 alone writes checkpoints and logs.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import io
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from cezsar import distributed
from cezsar.background import CheckpointWriter, OrderAhead, snapshot
from cezsar.atomic import write_atomic, write_json, write_text
from cezsar.checkpoints import RESUME_FIX, checkpoint_meta, read_resumable
from cezsar.checks import CheckpointError
from cezsar.config import FastPathConfig, ModelConfig, TrainConfig
from cezsar.diskspace import require_space
from cezsar.devices import resolve_device
from cezsar.featurebank import TripletTensors, batch_group, build_bank, epoch_order, to_tensors, window_index
from cezsar.joint_embedder import JointEmbedder

def triplet_loss(v: Tensor, s_pos: Tensor, s_neg: Tensor, margin: float = 1.0) -> Tensor:
    """Eq. 7 per triplet: max(||v - s_p|| - ||v - s_n|| + margin, 0), Euclidean distance. Returns (B,).

    Plain norms (no eps inside the difference, unlike torch's TripletMarginLoss) so the value is exactly
    the paper's formula.
    """
    d_pos = torch.linalg.vector_norm(v - s_pos, dim=-1)  # (B,)
    d_neg = torch.linalg.vector_norm(v - s_neg, dim=-1)  # (B,)
    return torch.clamp(d_pos - d_neg + margin, min=0.0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def batch_loss(model: JointEmbedder, data: TripletTensors, b: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Eq. 7 for triplets `b`; each distinct window and sentence is embedded once and shared.

    The windows go through the packed VEM (Eqs. 1-5 on their valid rows only, `encode_video_packed`): the
    same function as `encode_video` on the padded batch, without the padding's compute.
    Returns (per-triplet loss (B,), d_pos < d_neg (B,) bool).
    """
    s, inv_p, inv_n = data.text_batch(b)
    if model.cfg.released_padding or model.cfg.released_attention:  # released variants need the padded layout
        xp, mask, inv_v = data.video_batch(b)
        ve = model.encode_video(xp, mask).float()  # (U, d_emb)
    else:
        x, mask, index, inv_v = data.packed_video_batch(b)
        ve = model.encode_video_packed(x, mask, index).float()  # (U, d_emb) fp32 for the loss under bf16 autocast
    se = model.encode_text(s).float()  # (Us, d_emb)
    v, sp, sn = ve[inv_v], se[inv_p], se[inv_n]  # (B, d_emb) each
    loss = triplet_loss(v, sp, sn, margin)
    with torch.no_grad():
        correct = torch.linalg.vector_norm(v - sp, dim=-1) < torch.linalg.vector_norm(v - sn, dim=-1)
    return loss, correct


def make_optimizer(model: JointEmbedder, cfg: TrainConfig, capturable: bool = False) -> torch.optim.AdamW:
    """AdamW with the paper's lr, betas and weight decay (§4).

    The fused kernel updates all parameters in one pass: on CPU the optimiser step is ~5x cheaper than
    torch's default loop, and with window sharing that step is a large part of a batch's cost.
    `capturable`: the step count stays on the device, so the update can be recorded in a CUDA graph
    (`cezsar.graphed_step`).
    """
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                             fused=True, capturable=capturable)


def _autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (TrainConfig.autocast); the released code trained in fp32 (autocast=False)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


class _BatchLoss(nn.Module):
    """`batch_loss` as a module's forward, so that DistributedDataParallel sees the step (it hooks `forward`;
    the packed path calls the model's encoders, not the model)."""

    def __init__(self, model: JointEmbedder, data: TripletTensors, margin: float) -> None:
        super().__init__()
        self.model, self.data, self.margin = model, data, margin

    def forward(self, b: Tensor) -> tuple[Tensor, Tensor]:
        return batch_loss(self.model, self.data, b, self.margin)


def rank_slice(n: int, world: int, rank: int) -> slice:
    """Rank `rank`'s part of a global batch of `n`: equal contiguous slices (the last ones shorter or empty
    when `n` does not divide), disjoint, covering the batch."""
    per = (n + world - 1) // world
    return slice(min(rank * per, n), min((rank + 1) * per, n))


def train_one_epoch(model: JointEmbedder, data: TripletTensors, optimizer: torch.optim.Optimizer, order: np.ndarray,
                    cfg: TrainConfig, device: torch.device, progress: bool = False, limit_steps: int | None = None,
                    desc: str = "train", ddp: DistributedDataParallel | None = None) -> dict:
    """One pass over the triplets in `order` (global batch cfg.batch); returns {"loss", "steps", "triplets",
    "seconds"}, loss and triplets over all ranks.

    `ddp`: the step wrapped in DistributedDataParallel (`fit` under torchrun); each rank then takes its
    `rank_slice` of every global batch, so N ranks x B/N triplets step like one process x B (up to float
    summation order, with dropout 0: dropout masks are drawn per rank)."""

    model.train()
    world = distributed.world_size() if ddp is not None else 1
    rank = distributed.rank() if ddp is not None else 0
    order_t = torch.as_tensor(order, dtype=torch.int64).to(device)
    steps = (len(order) + cfg.batch - 1) // cfg.batch
    if limit_steps is not None:
        steps = min(steps, limit_steps)
    total = torch.zeros((), dtype=torch.float64, device=device)  # summed on device: no sync per step
    seen = 0
    t0 = time.perf_counter()
    for i in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        b = order_t[i * cfg.batch:(i + 1) * cfg.batch]  # (B,) the global batch, the same on every rank
        if world == 1:
            with _autocast(device, cfg.autocast):
                loss, _ = batch_loss(model, data, b, cfg.margin)
            mean = loss.mean()
            n = len(b)
        else:
            part = rank_slice(len(b), world, rank)
            mine = b[part] if part.stop > part.start else b[:1]  # (B/N,); an empty slice still joins the all-reduce
            with _autocast(device, cfg.autocast):
                loss, _ = ddp(mine)
            # DDP averages gradients over ranks: sum * N / B here makes that average the global batch's mean
            weight = world / len(b) if part.stop > part.start else 0.0
            mean = loss.sum() * weight
            n = part.stop - part.start
            loss = loss if n else loss[:0]
        optimizer.zero_grad(set_to_none=True)
        mean.backward()
        optimizer.step()
        total += loss.detach().sum().double()
        seen += n
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if world > 1:  # the epoch's loss over every rank's triplets
        sums = distributed.all_reduce_sum(torch.stack([total, torch.tensor(float(seen), dtype=torch.float64,
                                                                          device=device)]))  # (2,)
        total, seen = sums[0], int(sums[1])
    return {"loss": float(total) / max(seen, 1), "steps": steps, "triplets": seen, "seconds": seconds}


@torch.no_grad()
def evaluate(model: JointEmbedder, data: TripletTensors, idx: np.ndarray, cfg: TrainConfig, device: torch.device) -> dict:
    """Mean Eq. 7 loss and triplet accuracy (d_pos < d_neg) over triplets `idx` (the video-level val split).

    Under torchrun each rank evaluates every N-th batch and the sums are all-reduced: every rank returns the
    same numbers. `cfg.released_validation`: the model stays in train mode, as in the released loop (dropout
    on, so the early-stopping loss is noisy; the released head's training-only LayerNorm applied)."""
    model.train(cfg.released_validation)
    if len(idx) == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    win = data.win.cpu().numpy()
    order = torch.as_tensor(idx[np.argsort(win[idx], kind="stable")], dtype=torch.int64).to(device)  # share windows
    world = distributed.world_size() if distributed.active() else 1
    rank = distributed.rank() if world > 1 else 0
    total, correct = 0.0, 0
    for j, i in enumerate(range(0, len(order), cfg.batch)):
        if j % world != rank:  # under torchrun each rank takes every N-th batch
            continue
        b = order[i:i + cfg.batch]
        with _autocast(device, cfg.autocast):
            loss, ok = batch_loss(model, data, b, cfg.margin)
        total += float(loss.double().sum())
        correct += int(ok.sum())
    if world > 1:
        sums = distributed.all_reduce_sum(torch.tensor([total, correct], dtype=torch.float64, device=device))  # (2,)
        total, correct = float(sums[0]), int(sums[1])
    return {"loss": total / len(idx), "acc": correct / len(idx)}


def _write_logs(history: list[dict], out: Path) -> None:
    write_json(out / "log.json", history)
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    write_text(out / "log.csv", buf.getvalue())


def _write_epoch(ckpt: dict, out: Path, best: bool) -> None:
    """An epoch's files, each written atomically: last.pt, best.pt when `best`, the logs."""
    write_atomic(out / "last.pt", lambda fh: torch.save(ckpt, fh))
    if best:
        write_atomic(out / "best.pt", lambda fh: torch.save(ckpt, fh))
    _write_logs(ckpt["history"], out)


# --- the visual input of a triplet ---------------------------------------------------------------
RELEASED_SECONDS = 16.0  # the released code's visual input: the first 16 s of the captioned segment


def segment_bounds(captions) -> np.ndarray:
    """(S, 2) float64 [start, end] of every caption segment, in the order `mining.mine` numbers them
    (`TripletSet.segment`)."""
    return np.array([[s.start, s.end] for s in captions.segments], dtype=np.float64).reshape(-1, 2)


def visual_windows(triplets, window: str, bounds: np.ndarray | None = None):
    """The triplets with the visual input `window` asks for (TrainConfig.window).

    "paper" (paper §3.4): the mined window of up to 10 s, as mined. "released": the first 16 rows of the
    triplet's captioned segment as the released loader sliced them, `features[int(start):int(end)][:16]`
    (both bounds truncated, not ceil'd: a segment [3.7, 25.2) gives rows 3 .. 18), whatever window the objects
    came from; needs `triplets.segment` and the segments' `bounds`. Returns a shallow copy with new start/end
    arrays (whole seconds, so `featurebank.window_index` takes exactly those rows).
    """
    if window == "paper":
        return triplets
    if window != "released":
        raise ValueError(f"unknown window {window!r} (expected 'paper' or 'released')")
    seg = getattr(triplets, "segment", None)
    if seg is None or bounds is None:
        raise ValueError("window='released' (first 16 s of the segment) needs the triplets' segment ids and the "
                         "segments' bounds: fit(..., segment_bounds=train.segment_bounds(captions)); "
                         "`cezsar train --window released --captions FILE`")
    seg = np.asarray(seg, np.int64)
    bounds = np.asarray(bounds, np.float64)
    if seg.size and (seg.min() < 0 or seg.max() >= len(bounds)):
        raise ValueError(f"triplet segment id out of range of the {len(bounds)} segment bounds (other captions?)")
    out = copy.copy(triplets)
    start = np.trunc(bounds[seg, 0])  # int() of the released loader (timestamps are >= 0: floor)
    out.start = start.astype(np.float32)
    out.end = np.minimum(np.trunc(bounds[seg, 1]), start + RELEASED_SECONDS).astype(np.float32)
    return out


# --- the whole run -------------------------------------------------------------------------------
def prepare(triplets, store, text_emb: np.ndarray, model_cfg: ModelConfig, fast: FastPathConfig, cache: Path,
            device: torch.device, bank_on_device: torch.dtype | None = None) -> tuple[TripletTensors, dict]:
    """Validate the inputs, build (or reuse) the feature bank and move everything to `device` (the bank in
    `bank_on_device` on a GPU, when given)."""
    n = len(triplets.video)
    for name in ("start", "end", "pos", "neg", "val"):
        if len(getattr(triplets, name)) != n:
            raise ValueError(f"triplets: array {name!r} has {len(getattr(triplets, name))} rows, 'video' has {n}")
    if n == 0:
        raise ValueError("triplets: the set is empty")
    if text_emb.shape[0] != len(triplets.sentences):
        raise ValueError(f"text_emb has {text_emb.shape[0]} rows for {len(triplets.sentences)} triplet sentences")
    if store.dim != model_cfg.feat_dim or text_emb.shape[1] != model_cfg.text_dim:
        raise ValueError(f"dims: features {store.dim}, text {text_emb.shape[1]}; model expects "
                         f"{model_cfg.feat_dim}, {model_cfg.text_dim}")
    with distributed.main_first():  # under torchrun rank 0 builds the cached bank, the others then reuse it
        bank, offsets = build_bank(store, list(triplets.video_ids), cache / f"featurebank-{fast.bank_dtype}.npy",
                                   fast.bank_dtype)
    rows, mask, win, stats = window_index(np.asarray(triplets.video), np.asarray(triplets.start),
                                          np.asarray(triplets.end), offsets, model_cfg.max_len)
    data = to_tensors(bank, rows, mask, win, np.asarray(triplets.pos), np.asarray(triplets.neg),
                      np.asarray(text_emb, dtype=np.float32), device, bank_on_device)
    return data, {**stats, "triplets": n, "videos": len(triplets.video_ids), "bank_rows": int(offsets[-1])}


def _checkpoint_bytes(last: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """What one checkpoint takes on disk: the previous last.pt's size, else the weights and optimizer state."""
    if last.is_file():
        return last.stat().st_size
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return weights * 3  # the weights and AdamW's two moment estimates


def fit(triplets, store, text_emb: np.ndarray, train_cfg: TrainConfig | None = None,
        model_cfg: ModelConfig | None = None, out_dir: str | os.PathLike = ".", resume: bool = False, *,
        fast: FastPathConfig | None = None, text_model: str | None = None, text_model_name: str | None = None,
        params: str | None = None, progress: bool = True, segment_bounds: np.ndarray | None = None,
        on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train the joint embedder on a TripletSet (paper §3.3-§4); writes last.pt, best.pt, log.csv, log.json.

    feat_dim / text_dim of `model_cfg` are taken from `store.dim` and `text_emb`. Early stopping watches
    the mean loss on the video-level validation triplets (`triplets.val`; the training loss when there are
    none). `resume=True` continues from `out_dir/last.pt` (from scratch when it is absent).
    `text_model` is the sentence encoder's id (default: the triplets'), `text_model_name` the name to
    rebuild it with (`SentenceEncoder(name)`); both go into the checkpoint for evaluation, with the rest
    of what the run trained on (`training_provenance`; `params` = the parameter-set name, when given).
    `segment_bounds` (S, 2) [start, end] seconds per caption segment (`segment_bounds(captions)`) is needed by
    `train_cfg.window="released"` only.

    Under torchrun (WORLD_SIZE > 1) this is data-parallel training (module doc): `train_cfg.batch` is the
    global batch, rank 0 writes the files and calls `on_epoch_end`, every rank returns the same summary.
    `on_epoch_end(row)` runs once that epoch's files are on disk: with `fast.background` on, while or after the
    next epoch trains (`cezsar.background`). `fast.step` picks the static or the eager step (docs/decisions.md
    §16), `fast.graph` the CUDA-graph path of the static one.
    """
    from cezsar.graphed_step import GraphedTrainer  # these build on this module's loss: imported at call time
    from cezsar.static_step import evaluate_static, run_length, train_one_epoch_static

    train_cfg = train_cfg or TrainConfig()
    fast = fast or FastPathConfig()
    model_cfg = dataclasses.replace(model_cfg or ModelConfig(), feat_dim=int(store.dim), text_dim=int(text_emb.shape[1]))
    triplets = visual_windows(triplets, train_cfg.window, segment_bounds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(train_cfg.device)  # cuda:LOCAL_RANK under torchrun
    distributed.init(device)
    world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main()
    if train_cfg.batch < world:
        raise ValueError(f"batch {train_cfg.batch} is the global batch, cut into one slice per rank: it needs at "
                         f"least one triplet for each of the {world} ranks")
    text_model = text_model or getattr(triplets, "text_model", None)
    if fast.step not in ("static", "eager"):
        raise ValueError(f"FastPathConfig.step must be 'static' or 'eager', got {fast.step!r}")
    if fast.background not in ("auto", "on", "off"):
        raise ValueError(f"FastPathConfig.background must be 'auto', 'on' or 'off', got {fast.background!r}")
    # the static step (docs/decisions.md §16): one process, the packed VEM (the released variants pad instead)
    static = (fast.step == "static" and world == 1
              and not (model_cfg.released_padding or model_cfg.released_attention))
    graphed = static and fast.graph and device.type == "cuda"
    if fast.device_bank not in ("auto", "stored", "bfloat16"):
        raise ValueError(f"FastPathConfig.device_bank must be 'auto', 'stored' or 'bfloat16', got {fast.device_bank!r}")
    # bf16 under CUDA autocast: what the first Linear reads anyway (fp16 -> bf16 rounds as fp16 -> fp32 -> bf16)
    bf16 = device.type == "cuda" and (fast.device_bank == "bfloat16" or (
        fast.device_bank == "auto" and static and train_cfg.autocast and not fast.tf32))
    data, stats = prepare(triplets, store, text_emb, model_cfg, fast, Path(fast.cache_dir or out / "cache"), device,
                          torch.bfloat16 if bf16 else None)
    val_mask = np.asarray(triplets.val, dtype=bool)
    train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    if len(train_idx) == 0:
        raise ValueError("triplets: every triplet is in the validation split")

    tf32 = fast.tf32 and device.type == "cuda"  # fp32 with TF32 GEMMs in place of bf16 autocast
    step_cfg = dataclasses.replace(train_cfg, autocast=False) if tf32 else train_cfg
    background = fast.background == "on" or (fast.background == "auto" and device.type == "cuda")

    seed_everything(train_cfg.seed)
    model = JointEmbedder(model_cfg).to(device)
    optimizer = make_optimizer(model, train_cfg, capturable=graphed)
    meta = checkpoint_meta(model_cfg, train_cfg, fast, text_model, text_model_name, triplets, store, params)
    state = {"epoch": -1, "best_score": float("inf"), "best_epoch": -1, "bad_epochs": 0, "history": []}
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = read_resumable(last, meta, device)
        fix = RESUME_FIX
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            state = {k: ckpt[k] for k in state}
            per_rank = ckpt.get("rng_ranks") or [ckpt["rng"]]  # one state per rank (one-process runs: "rng")
            if len(per_rank) != world and main:
                print(f"warning: {last} was written by {len(per_rank)} process(es), this run has {world}; it "
                      "continues from the same weights, but not bit for bit (dropout draws differ)")
            set_rng_state(per_rank[rank] if len(per_rank) == world else ckpt["rng"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            reason = " ".join(str(err).split())[:160]
            raise CheckpointError(f"{last}: model, optimizer or RNG state unusable ({reason}); {fix}") from err

    ddp = None
    if world > 1:  # created after a resume's load: DDP starts from rank 0's weights, the same on every rank
        ddp = DistributedDataParallel(_BatchLoss(model, data, train_cfg.margin),
                                      device_ids=[device.index] if device.type == "cuda" else None)
    history: list[dict] = list(state["history"])
    win = data.win.cpu().numpy()
    group = batch_group(train_cfg.batch_makeup, fast.group)  # 1 = i.i.d. batches (docs/fidelity.md "batch makeup")

    def order_of(epoch: int) -> np.ndarray:
        return epoch_order(win, train_idx, train_cfg.seed, epoch, group)

    t_run = run_length(data) if static else 0
    trainer = GraphedTrainer(model, data, optimizer, step_cfg, t_run, fast.unroll) if graphed else None
    orders, writer = OrderAhead(order_of, background), CheckpointWriter(background and main)
    tf32_before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        for epoch in range(state["epoch"] + 1, train_cfg.epochs):
            if state["bad_epochs"] >= train_cfg.patience:
                break
            order = orders.get(epoch, epoch + 1 if epoch + 1 < train_cfg.epochs else None)
            if trainer is not None:
                tr, va = trainer.train_epoch(order), trainer.evaluate(val_idx)
            elif static:
                tr = train_one_epoch_static(model, data, optimizer, order, step_cfg, device, t_run,
                                            progress and main, desc=f"epoch {epoch}")
                va = evaluate_static(model, data, val_idx, step_cfg, device, t_run)
            else:
                tr = train_one_epoch(model, data, optimizer, order, step_cfg, device, progress and main,
                                     desc=f"epoch {epoch}", ddp=ddp)
                va = evaluate(model, data, val_idx, step_cfg, device)
            # reduced values are equal on every rank; rank 0's score decides early stopping for all of them
            score = distributed.broadcast_object(va["loss"] if len(val_idx) else tr["loss"])
            improved = score < state["best_score"]
            state["epoch"] = epoch
            if improved:
                state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            has_val = len(val_idx) > 0  # None, not NaN, in the logs: NaN is not valid JSON
            history.append({"epoch": epoch, "train_loss": tr["loss"], "val_loss": va["loss"] if has_val else None,
                            "val_acc": va["acc"] if has_val else None,
                            "seconds": round(tr["seconds"], 3),
                            "triplets_per_s": round(tr["triplets"] / max(tr["seconds"], 1e-9), 1)})
            state["history"] = history
            rngs = distributed.gather_objects(rng_state())  # every rank's RNG, so --resume restores each of them
            if not main:  # rank 0 alone writes checkpoints and logs
                continue
            ckpt = {**meta, **state, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rngs[0]}
            if world > 1:
                ckpt.update(world_size=world, rng_ranks=rngs)
            # room for both files before either is replaced: a full disk keeps the previous ones (docs/errors.md)
            require_space(out, _checkpoint_bytes(out / "last.pt", model, optimizer) * (2 if improved else 1),
                          "checkpoint")
            if background:  # written while the next epoch trains: a copy the next steps cannot change
                ckpt = snapshot(ckpt)
            writer.submit(lambda ckpt=ckpt, best=improved: _write_epoch(ckpt, out, best),
                          None if on_epoch_end is None else (lambda row=history[-1]: on_epoch_end(row)))
    finally:
        orders.close()
        writer.close()  # the last epoch's files on disk (and its hook run) before fit returns
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32_before

    distributed.barrier()  # rank 0's last files are written when fit returns on any rank
    extra = {"world_size": world} if world > 1 else {}
    return {"out_dir": str(out), "device": str(device), **extra, "epochs_run": len(history),
            "best_epoch": state["best_epoch"], "best_score": state["best_score"],
            "stopped_early": state["bad_epochs"] >= train_cfg.patience and len(history) < train_cfg.epochs,
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "final_val_loss": history[-1]["val_loss"] if history else None, "data": stats, "history": history}
