"""K joint embedders as stacked weights (docs/decisions.md, 'Training seeds'): Eqs. 1-7 for K models of one
`ModelConfig` in one pass, for `cezsar.training.stacked.fit_stacked`.

The parameters are stacked along a new first axis (`torch.func.stack_module_state`); one step runs the K models
with batched matrix products, each model on its own batch with its own weights, so the per-operation overhead of a
small CPU step is paid once instead of K times. The VEM runs packed (the valid rows of each window, as
`cezsar.training.packed_vem`), padded only to the longest model's row count. The released-code variants (`released_*`)
are not stacked (`stackable`).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.func import stack_module_state
from torch.nn import functional as F

from cezsar.config import ModelConfig
from cezsar.training.featurebank import TripletTensors
from cezsar.training.loss import triplet_loss
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.onednn_linear import onednn_applies, stacked_linear
from cezsar.training.packed_vem import dropout_cpu


def stackable(cfg: ModelConfig) -> bool:
    """Whether `StackedEmbedders` computes this model (the paper's; the released variants are not stacked)."""
    return not (cfg.released_sem or cfg.released_padding or cfg.released_attention or cfg.released_head)



class _StackedLinear(torch.autograd.Function):
    """y = x W^T + b for K models at once: x (K, N, in), W (K, out, in), b (K, out) -> (K, N, out).

    The backward writes the weight's gradient in W's own (K, out, in) layout (g^T x); autograd's rule for
    `baddbmm(b, x, W.transpose(1, 2))` computes it transposed and then copies it whole, which on a CPU cost as much
    as the products themselves."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))  # (K, N, out)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        g = g.contiguous()
        gx = torch.bmm(g, w) if ctx.needs_input_grad[0] else None  # (K, N, in)
        gw = torch.bmm(g.transpose(1, 2), x)  # (K, out, in) in the weight's layout
        return gx, gw, g.sum(dim=1)  # (K, out)


class StackedEmbedders:
    """K `JointEmbedder`s of one `ModelConfig` as stacked parameters (name -> (K, *shape) leaf tensors)."""

    def __init__(self, models: list[JointEmbedder]) -> None:
        if not models or not stackable(models[0].cfg):
            raise ValueError("stacked training needs at least one model of the paper's variant (no released_*)")
        self.cfg = models[0].cfg
        self.names = [n for n, _ in models[0].named_parameters()]
        params, _ = stack_module_state(models)  # name -> (K, *shape), requires_grad leaves
        self.params = {n: params[n] for n in self.names}
        self.k = len(models)
        layer = models[0].vem.layers[0]
        self.eps = layer.norm1.eps
        self.pe = models[0].vem.pe  # a fixed table, no weights
        self.training = True

    def parameters(self) -> list[Tensor]:
        return [self.params[n] for n in self.names]

    def state_dict(self, k: int) -> dict[str, Tensor]:
        """Model k's weights in `JointEmbedder.state_dict` form."""
        return {n: self.params[n][k].detach().clone() for n in self.names}

    # --- the batched Eqs. 1-6 ----------------------------------------------------------------------------
    def _linear(self, x: Tensor, name: str, weight: str = ".weight", bias: str = ".bias") -> Tensor:
        """x (K, N, in) through each model's own Linear `name`: (K, N, out). Where fp32 products go through oneDNN
        (`onednn_linear.onednn_applies`), one inner product per model: on a CPU that is faster than MKL's batched
        product."""
        w, b = self.params[name + weight], self.params[name + bias]  # (K, out, in), (K, out)
        if onednn_applies(x):
            return stacked_linear(x, w, b)  # (K, N, out)
        return _StackedLinear.apply(x, w, b)

    def _norm(self, x: Tensor, name: str) -> Tensor:
        """LayerNorm with each model's own affine weights: (K, N, d)."""
        y = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.params[name + ".bias"].unsqueeze(1), y, self.params[name + ".weight"].unsqueeze(1))

    def _dropout(self, x: Tensor, p: float) -> Tensor:
        """Inverted dropout; every element its own draw, so each model gets its own mask (the packed path's
        cheaper CPU generator, `packed_vem.dropout_cpu`)."""
        return dropout_cpu(x, p, self.training)

    def encode_video(self, x: Tensor, valid: Tensor, grid_pos: Tensor, column: Tensor, mask: Tensor) -> Tensor:
        """Eqs. 1-5 for K models on packed rows.

        x (K, N, feat_dim): model k's valid window rows, padded to N (rows past its own count are ignored);
        valid (M,) flat positions in (K N) of the M real rows; grid_pos (M,) their flat positions in the
        (K, U, T) window grid; column (M,) their time step; mask (K, U, T) bool valid steps (a padding window has
        its first step valid, so its attention is defined; nothing reads it). Returns (K, U, d_emb)."""
        k, n, _ = x.shape
        _, u, t = mask.shape
        cfg = self.cfg
        h = torch.relu(self._linear(x, "vem.proj"))  # (K, N, d)  Eq. 1
        d = h.shape[-1]
        if self.pe is not None:
            pe = self.pe.at(column, t)  # (M, d)
            h = h.reshape(k * n, d).index_add(0, valid, pe.to(h.dtype)).view(k, n, d)
        keys = mask.reshape(k * u, 1, 1, t)  # (K U, 1, 1, T) True = a valid key
        heads = cfg.n_heads
        p = cfg.dropout if self.training else 0.0
        for i in range(cfg.n_layers):
            pre = f"vem.layers.{i}."
            qkv = self._linear(h, pre + "self_attn.in_proj", "_weight", "_bias")  # (K, N, 3d)
            grid = qkv.new_zeros(k * u * t, 3 * d).index_copy_(0, grid_pos, qkv.reshape(k * n, 3 * d)[valid])
            q, kk, v = grid.view(k * u, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (K U, H, T, dh)
            o = F.scaled_dot_product_attention(q, kk, v, attn_mask=keys, dropout_p=p)  # (K U, H, T, dh)  Eq. 2
            o = o.transpose(1, 2).reshape(k * u * t, d)[grid_pos]  # (M, d)
            o = o.new_zeros(k * n, d).index_copy_(0, valid, o).view(k, n, d)  # (K, N, d)
            a = self._linear(o, pre + "self_attn.out_proj")  # (K, N, d)  W^0 of Eq. 3
            h = self._norm(h + self._dropout(a, p), pre + "norm1")
            f = self._linear(self._dropout(torch.relu(self._linear(h, pre + "linear1")), p), pre + "linear2")
            h = self._norm(h + self._dropout(f, p), pre + "norm2")  # (K, N, d)  Eq. 4
        grid = h.new_zeros(k * u * t, d).index_copy_(0, grid_pos, h.reshape(k * n, d)[valid]).view(k, u, t, d)
        count = mask.sum(dim=2, keepdim=True).clamp(min=1).to(h.dtype)  # (K, U, 1)
        pooled = grid.sum(dim=2) / count  # (K, U, d) mean over valid steps
        return torch.relu(self._linear(pooled, "vem.out"))  # (K, U, d_emb)  Eq. 5

    def encode_text(self, s: Tensor) -> Tensor:
        """Eq. 6 for K models: s (K, S, text_dim) -> (K, S, d_emb)."""
        return torch.relu(self._linear(s, "sem.net.0"))


def _pad_stack(parts: list[Tensor], length: int, fill=0) -> Tensor:
    """(K, length, *rest) from K tensors of (n_k, *rest), padded with `fill`."""
    out = parts[0].new_full((len(parts), length, *parts[0].shape[1:]), fill)
    for i, p in enumerate(parts):
        out[i, :len(p)] = p
    return out


def stacked_batch_loss(net: StackedEmbedders, data: list[TripletTensors], batches: list[Tensor], margin: float
                       ) -> tuple[Tensor, Tensor]:
    """Eq. 7 for K models, model k on triplets `batches[k]` of `data[k]` (one data set may serve all).

    Each model shares its batch's distinct windows and sentences as `eager_step.batch_loss` does. Returns
    (loss (K, B), d_pos < d_neg (K, B)); the batches have one length B."""
    k = len(batches)
    if len(data) == 1:
        data = data * k
    wins, texts = [d._windows(b) for d, b in zip(data, batches)], [d.text_batch(b) for d, b in zip(data, batches)]
    u = max(len(w[0]) for w in wins)
    t = max(w[1].shape[1] for w in wins)
    xs, masks, grid_pos, valid, column = [], [], [], [], []
    n = max(int(w[1].sum()) for w in wins)
    for i, (d, (uw, m, _)) in enumerate(zip(data, wins)):
        full = torch.zeros(u, t, dtype=torch.bool, device=m.device)
        full[:len(uw), :m.shape[1]] = m
        full[len(uw):, 0] = True  # padding windows: one valid step, so their attention is defined
        idx = m.reshape(-1).nonzero().squeeze(1)  # (n_i,) in model i's own (U_i, t_i) layout
        rows = d.rows[uw, :m.shape[1]].reshape(-1)[idx]  # (n_i,) bank rows
        xs.append(d.bank[rows].float())  # (n_i, D)
        r, c = idx // m.shape[1], idx % m.shape[1]
        grid_pos.append(i * u * t + r * t + c)
        valid.append(i * n + torch.arange(len(idx), device=idx.device))
        column.append(c)
        masks.append(full)
    x = _pad_stack(xs, n)  # (K, N, D)
    mask = torch.stack(masks)  # (K, U, T)
    ve = net.encode_video(x, torch.cat(valid), torch.cat(grid_pos), torch.cat(column), mask).float()  # (K, U, E)
    s = _pad_stack([tx[0] for tx in texts], max(len(tx[0]) for tx in texts))  # (K, S, text_dim)
    se = net.encode_text(s).float()  # (K, S, E)
    inv_v = torch.stack([w[2] for w in wins])  # (K, B)
    inv_p, inv_n = torch.stack([tx[1] for tx in texts]), torch.stack([tx[2] for tx in texts])  # (K, B) each
    take = lambda e, i: torch.gather(e, 1, i.unsqueeze(-1).expand(-1, -1, e.shape[-1]))  # (K, B, E)
    v, sp, sn = take(ve, inv_v), take(se, inv_p), take(se, inv_n)
    loss = triplet_loss(v, sp, sn, margin)  # (K, B)
    with torch.no_grad():
        correct = torch.linalg.vector_norm(v - sp, dim=-1) < torch.linalg.vector_norm(v - sn, dim=-1)
    return loss, correct
