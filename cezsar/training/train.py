"""Contrastive training of the joint embedder (paper §3.3 and §4): `fit`, a whole run with per-epoch atomic
checkpoints (`cezsar.training.checkpoints`) that resume bit-for-bit on CPU.

Data arrives through the fast path of `cezsar.training.featurebank` (`cezsar.training.train_inputs.prepare`); each epoch
runs one of three steps that compute the same batches: the eager step (`cezsar.training.eager_step`), the static-shape
step (`cezsar.training.static_step`) or its CUDA graphs (`cezsar.training.graphed_step`), chosen by `FastPathConfig`
(docs/decisions.md §16).

Under `torchrun` (docs/decisions.md §13) the same `fit` runs DistributedDataParallel: every rank draws the
same epoch order, each global batch of `TrainConfig.batch` triplets is cut into one equal slice per rank,
gradients are averaged across ranks, and rank 0 alone writes checkpoints and logs.
"""
from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from cezsar.base import distributed
from cezsar.training.background import CheckpointWriter, OrderAhead, snapshot
from cezsar.training.checkpoints import (checkpoint_meta, read_resumable, require_checkpoint_room, restore_training,
                                         rng_state, write_epoch)
from cezsar.config import FastPathConfig, ModelConfig, TrainConfig
from cezsar.base.devices import resolve_device
from cezsar.training.eager_step import BatchLoss, evaluate, make_optimizer, train_one_epoch
from cezsar.training.featurebank import batch_group, epoch_order
from cezsar.training.graphed_step import GraphedTrainer
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.static_step import evaluate_static, run_length, train_one_epoch_static
from cezsar.training.train_inputs import prepare, visual_windows


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators: the same seed gives the same run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    next epoch trains (`cezsar.training.background`). `fast.step` picks the static or the eager step (docs/decisions.md
    §16), `fast.graph` the CUDA-graph path of the static one.
    """
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
        state = restore_training(read_resumable(last, meta, device), last, model, optimizer, state, world, rank, main)

    ddp = None
    if world > 1:  # created after a resume's load: DDP starts from rank 0's weights, the same on every rank
        ddp = DistributedDataParallel(BatchLoss(model, data, train_cfg.margin),
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
            require_checkpoint_room(out, ckpt["model"], improved)
            if background:  # written while the next epoch trains: a copy the next steps cannot change
                ckpt = snapshot(ckpt)
            writer.submit(lambda ckpt=ckpt, best=improved: write_epoch(ckpt, out, best),
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

