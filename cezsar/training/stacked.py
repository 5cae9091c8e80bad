"""Several training seeds in one process (docs/decisions.md, 'Training seeds'): K joint embedders as stacked weights.

Every trained number of the tables is a mean over training seeds, so each τ trains K models that differ only
in their seed (initialisation, batch order, dropout draws). Here they train together: their parameters are
stacked along a new first axis (`torch.func.stack_module_state`), and one step runs Eqs. 1-7 for all K models
with batched matrix products (each model on its own batch, its own weights), so the per-operation overhead of
a small CPU step is paid once instead of K times. The models stay independent: the loss is the sum of the K
models' batch means, so each model's gradient is exactly its own; one fused AdamW over the stacked tensors is
element-wise K AdamWs (tests/test_stacked.py checks losses and gradients against K separate `train.fit`-style
runs); a model that stops early leaves the stack.

The stacked models and their step are `cezsar.training.stacked_model`. Each seed writes `fit`'s files (last.pt, best.pt,
log.json, log.csv; `checkpoints.write_epoch`) to its own folder, in `fit`'s checkpoint format, so every reader of
`fit`'s checkpoints reads them, and `fit(resume=True)` could continue one alone. The released-code model variants
(`released_*`) and the released validation (`TrainConfig.released_validation`) fall back to one `fit` per seed.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cezsar.errors import CheckpointError
from cezsar.config import FastPathConfig, ModelConfig, TrainConfig
from cezsar.base.devices import resolve_device
from cezsar.training.featurebank import TripletTensors, batch_group, epoch_order
from cezsar.training.checkpoints import (RESUME_FIX, checkpoint_meta, read_resumable, require_checkpoint_room,
                                         rng_state, set_rng_state, write_epoch)
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.loss import autocast
from cezsar.training.stacked_model import StackedEmbedders, stackable, stacked_batch_loss
from cezsar.training.train import fit, seed_everything
from cezsar.training.train_inputs import prepare, visual_windows


def seed_dir(out: Path, seed: int) -> Path:
    """Where training seed `seed` of a run writes its files: `<out>/seed<seed>/`."""
    return Path(out) / f"seed{seed}"


# --- per-seed state and the stacked optimiser -------------------------------------------------------------
def stack_optimizer(net: StackedEmbedders, cfg: TrainConfig, states: list[dict | None]) -> torch.optim.AdamW:
    """One fused AdamW over the stacked tensors (element-wise K AdamWs); `states` are the K models' own
    `optimizer.state_dict()`s (fit's format) or all None for a fresh start. The K models must have taken the
    same number of steps (the caller groups them by epoch)."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                            fused=True)
    if all(s is None for s in states):
        return opt
    if any(s is None for s in states):
        raise ValueError("stack_optimizer: mix of fresh and resumed optimiser states")
    merged = copy.deepcopy(states[0])
    for i, _ in enumerate(net.names):
        per = [s["state"][i] for s in states]
        steps = {float(p["step"]) for p in per}
        if len(steps) != 1:
            raise ValueError(f"stack_optimizer: the models took different numbers of steps {sorted(steps)}")
        merged["state"][i] = {"step": per[0]["step"].clone(),
                              "exp_avg": torch.stack([p["exp_avg"] for p in per]),
                              "exp_avg_sq": torch.stack([p["exp_avg_sq"] for p in per])}
    opt.load_state_dict(merged)
    return opt


def unstack_optimizer(opt: torch.optim.AdamW, net: StackedEmbedders, k: int) -> dict:
    """Model k's part of the stacked AdamW, as its own `optimizer.state_dict()` (fit's format)."""
    full = opt.state_dict()
    out = {"param_groups": copy.deepcopy(full["param_groups"]), "state": {}}
    for i, _ in enumerate(net.names):
        st = full["state"].get(i)
        if st is not None:
            out["state"][i] = {"step": st["step"].clone(), "exp_avg": st["exp_avg"][k].clone(),
                               "exp_avg_sq": st["exp_avg_sq"][k].clone()}
    return out


@dataclasses.dataclass
class _Seed:
    """One training seed's own run: its folder, weights, optimiser state and early-stopping state."""

    seed: int
    out: Path
    weights: dict
    opt_state: dict | None
    state: dict
    rng: dict | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    def done(self, cfg: TrainConfig) -> bool:
        return self.state["epoch"] + 1 >= cfg.epochs or self.state["bad_epochs"] >= cfg.patience


def _stacked_epoch(net: StackedEmbedders, data: TripletTensors, opt: torch.optim.Optimizer, orders: list[np.ndarray],
                   cfg: TrainConfig, device: torch.device) -> list[float]:
    """One epoch of the stacked models, model k on its own order; returns each model's mean training loss."""
    net.training = True
    order_t = [torch.as_tensor(o, dtype=torch.int64).to(device) for o in orders]
    steps = (len(orders[0]) + cfg.batch - 1) // cfg.batch
    total = torch.zeros(len(orders), dtype=torch.float64, device=device)
    for i in range(steps):
        batches = [o[i * cfg.batch:(i + 1) * cfg.batch] for o in order_t]
        with autocast(device, cfg.autocast):
            loss, _ = stacked_batch_loss(net, [data], batches, cfg.margin)  # (K, B)
        opt.zero_grad(set_to_none=True)
        loss.mean(dim=1).sum().backward()  # each model's gradient is that of its own batch mean
        opt.step()
        total += loss.detach().sum(dim=1).double()
    return (total / len(orders[0])).tolist()


@torch.no_grad()
def _stacked_evaluate(net: StackedEmbedders, data: TripletTensors, idx: np.ndarray, cfg: TrainConfig,
                      device: torch.device) -> list[dict]:
    """`eager_step.evaluate` for K models on the same validation triplets: [{"loss", "acc"}] per model."""
    net.training = False
    k = net.k
    if len(idx) == 0:
        return [{"loss": float("nan"), "acc": float("nan")} for _ in range(k)]
    win = data.win.cpu().numpy()
    order = torch.as_tensor(idx[np.argsort(win[idx], kind="stable")], dtype=torch.int64).to(device)
    total, correct = torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.int64)
    for i in range(0, len(order), cfg.batch):
        b = order[i:i + cfg.batch]
        with autocast(device, cfg.autocast):
            loss, ok = stacked_batch_loss(net, [data], [b] * k, cfg.margin)
        total += loss.double().sum(dim=1).cpu()
        correct += ok.sum(dim=1).cpu()
    return [{"loss": float(total[j]) / len(idx), "acc": int(correct[j]) / len(idx)} for j in range(k)]


def trains_stacked(model_cfg: ModelConfig, train_cfg: TrainConfig) -> bool:
    """Whether `fit_stacked` stacks the seeds of this configuration: the paper's model (`stackable`) with the
    validation loss in eval mode; the released model variants and the released validation (train mode) train one
    `fit` per seed."""
    return stackable(model_cfg) and not train_cfg.released_validation


def fit_stacked(triplets, store, text_emb: np.ndarray, seeds: list[int], train_cfg: TrainConfig | None = None,
                model_cfg: ModelConfig | None = None, out_dir: str | os.PathLike = ".", resume: bool = False, *,
                fast: FastPathConfig | None = None, text_model: str | None = None, text_model_name: str | None = None,
                params: str | None = None, segment_bounds: np.ndarray | None = None,
                on_epoch_end: Callable[[int, dict], None] | None = None) -> list[dict]:
    """`train.fit` for every training seed in `seeds` at once (module doc): seed s trains as `fit` with
    `train_cfg.seed = s` would (its initialisation, its batch order, its early stopping) and writes fit's files
    to `<out_dir>/seed<s>/`. `resume=True` continues each seed from its own last.pt. Returns fit's summary
    per seed, in the order of `seeds`; `on_epoch_end(seed, row)` after each seed's epoch."""
    train_cfg = train_cfg or TrainConfig()
    fast = fast or FastPathConfig()
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"training seeds must be distinct and at least one: {seeds}")
    model_cfg = dataclasses.replace(model_cfg or ModelConfig(), feat_dim=int(store.dim), text_dim=int(text_emb.shape[1]))
    out = Path(out_dir)
    if not trains_stacked(model_cfg, train_cfg):  # one fit per seed
        return [fit(triplets, store, text_emb, dataclasses.replace(train_cfg, seed=s), model_cfg, seed_dir(out, s),
                    resume, fast=fast, text_model=text_model, text_model_name=text_model_name, params=params,
                    progress=False, segment_bounds=segment_bounds,
                    on_epoch_end=None if on_epoch_end is None else (lambda row, s=s: on_epoch_end(s, row)))
                for s in seeds]
    triplets = visual_windows(triplets, train_cfg.window, segment_bounds)
    device = resolve_device(train_cfg.device)
    text_model = text_model or getattr(triplets, "text_model", None)
    out.mkdir(parents=True, exist_ok=True)
    data, stats = prepare(triplets, store, text_emb, model_cfg, fast, Path(fast.cache_dir or out / "cache"), device)
    val_mask = np.asarray(triplets.val, dtype=bool)
    train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    if len(train_idx) == 0:
        raise ValueError("triplets: every triplet is in the validation split")
    win = data.win.cpu().numpy()
    runs: list[_Seed] = []
    for s in seeds:
        cfg_s = dataclasses.replace(train_cfg, seed=s)
        seed_everything(s)  # the same initialisation as fit(seed=s)
        model = JointEmbedder(model_cfg)
        meta = checkpoint_meta(model_cfg, cfg_s, fast, text_model, text_model_name, triplets, store, params)
        run = _Seed(s, seed_dir(out, s), model.state_dict(), None,
                    {"epoch": -1, "best_score": float("inf"), "best_epoch": -1, "bad_epochs": 0, "history": []},
                    meta=meta)
        last = run.out / "last.pt"
        if resume and last.is_file():
            _load_seed(run, last, meta, device)
        run.out.mkdir(parents=True, exist_ok=True)
        runs.append(run)
    base = JointEmbedder(model_cfg)  # holds the shapes; its weights are replaced below
    net, opt, members = None, None, None
    while True:
        todo = [r for r in runs if not r.done(train_cfg)]
        if not todo:
            break
        epoch = min(r.state["epoch"] for r in todo) + 1
        group = [r for r in todo if r.state["epoch"] + 1 == epoch]  # seeds resumed from one epoch train together
        if [r.seed for r in group] != members:  # the first epoch, or a seed stopped: stack the group's own states
            models = []
            for r in group:
                m = copy.deepcopy(base)
                m.load_state_dict(r.weights)
                models.append(m.to(device))
            net = StackedEmbedders(models)
            opt = stack_optimizer(net, train_cfg, [r.opt_state for r in group])
            members = [r.seed for r in group]
        # else the same seeds go on in the same stacked weights and optimiser: restacking would copy the same values
        if group[0].rng is not None:
            set_rng_state(group[0].rng)  # the dropout draws continue where the group's last epoch left them
        elif epoch == 0:
            seed_everything(group[0].seed)
        orders = [epoch_order(win, train_idx, r.seed, epoch, batch_group(train_cfg.batch_makeup, fast.group)) for r in group]
        t0 = time.perf_counter()
        tr = _stacked_epoch(net, data, opt, orders, train_cfg, device)
        seconds = time.perf_counter() - t0
        va = _stacked_evaluate(net, data, val_idx, train_cfg, device)
        rng = rng_state()
        for j, r in enumerate(group):
            score = va[j]["loss"] if len(val_idx) else tr[j]
            improved = score < r.state["best_score"]
            r.state["epoch"] = epoch
            if improved:
                r.state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
            else:
                r.state["bad_epochs"] += 1
            has_val = len(val_idx) > 0
            r.state["history"] = r.state["history"] + [{
                "epoch": epoch, "train_loss": tr[j], "val_loss": va[j]["loss"] if has_val else None,
                "val_acc": va[j]["acc"] if has_val else None, "seconds": round(seconds / len(group), 3),
                "triplets_per_s": round(len(train_idx) * len(group) / max(seconds, 1e-9), 1)}]
            r.weights, r.opt_state, r.rng = net.state_dict(j), unstack_optimizer(opt, net, j), rng
            ckpt = {**r.meta, **r.state, "model": r.weights, "optimizer": r.opt_state, "rng": rng}
            require_checkpoint_room(r.out, r.weights, improved)
            write_epoch(ckpt, r.out, improved)
            if on_epoch_end is not None:
                on_epoch_end(r.seed, r.state["history"][-1])
    return [_summary(r, train_cfg, device, stats) for r in runs]


def _load_seed(run: _Seed, last: Path, meta: dict, device: torch.device) -> None:
    """Continue a seed from its last.pt (fit's checks: same model, dims and triplets)."""
    ckpt = read_resumable(last, meta, device)
    fix = RESUME_FIX
    try:
        run.weights, run.opt_state, run.rng = ckpt["model"], ckpt["optimizer"], ckpt["rng"]
        run.state = {k: ckpt[k] for k in run.state}
    except KeyError as err:
        raise CheckpointError(f"{last}: no {err} in the checkpoint; {fix}") from err


def _summary(r: _Seed, cfg: TrainConfig, device: torch.device, stats: dict) -> dict:
    """`fit`'s return value for one seed."""
    h = r.state["history"]
    return {"seed": r.seed, "out_dir": str(r.out), "device": str(device), "epochs_run": len(h),
            "best_epoch": r.state["best_epoch"], "best_score": r.state["best_score"],
            "stopped_early": r.state["bad_epochs"] >= cfg.patience and len(h) < cfg.epochs,
            "final_train_loss": h[-1]["train_loss"] if h else None,
            "final_val_loss": h[-1]["val_loss"] if h else None, "data": stats, "history": h}
