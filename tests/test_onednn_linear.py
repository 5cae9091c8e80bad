"""fp32 training products through oneDNN (issue 27 part 2, `cezsar.training.onednn_linear`): the same function and
gradients as torch's own product on large batches, and torch's own product, bit for bit, everywhere else
(small batches such as the embedded set's grouped ones, validation and evaluation)."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch.nn import functional as F

from cezsar.config import ModelConfig
from cezsar.training import onednn_linear
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.onednn_linear import MIN_ROWS, linear, onednn_applies
from cezsar.training.stacked_model import StackedEmbedders

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")]

CFG = dict(feat_dim=48, text_dim=24, d_model=32, n_heads=2, emb_dim=16, dropout=0.0)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp(min=1e-12))


@contextmanager
def torch_products():
    """oneDNN off: every product is torch's own (MKL on a CPU)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


@pytest.fixture
def counted(monkeypatch):
    """How many products took the oneDNN path."""
    calls = []
    apply = onednn_linear._OneDnnLinear.apply
    monkeypatch.setattr(onednn_linear._OneDnnLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    return calls


@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_torch_product_and_gradients(counted, bias):
    """700 rows (not a multiple of the row bucket, so the zero padding is exercised), 3-d input: output and the
    gradients of input, weight and bias within 1e-5 relative of `F.linear`'s."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 100, 96, generator=g, requires_grad=True)  # 700 rows
    w = torch.randn(80, 96, generator=g, requires_grad=True)
    b = torch.randn(80, generator=g, requires_grad=True) if bias else None
    up = torch.randn(7, 100, 80, generator=g)
    leaves = [t for t in (x, w, b) if t is not None]
    ref = F.linear(x, w, b)
    ref_grads = torch.autograd.grad(ref, leaves, up)
    out = linear(x, w, b)
    grads = torch.autograd.grad(out, leaves, up)
    assert counted, "700 rows in training should take the oneDNN path"
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-5
    for got, want in zip(grads, ref_grads):
        assert got.shape == want.shape and _rel(got, want) < 1e-5


def test_path_is_taken_only_for_large_fp32_training_products():
    big = torch.randn(MIN_ROWS, 8)
    assert onednn_applies(big)
    assert not onednn_applies(big[:MIN_ROWS - 1])  # a grouped batch's few rows: MKL is as fast
    assert not onednn_applies(big.double())
    with torch.no_grad():  # validation and evaluation
        assert not onednn_applies(big)
    with torch_products():
        assert not onednn_applies(big)


def _packed_step(cfg: ModelConfig, windows: int, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One packed VEM + SEM forward and backward (the eager training step's products) on `windows` windows of
    4-15 rows: (loss, every parameter's gradient)."""
    torch.manual_seed(seed)
    model = JointEmbedder(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    lengths = torch.randint(4, cfg.max_len + 1, (windows,), generator=g)
    mask = torch.arange(cfg.max_len)[None, :] < lengths[:, None]  # (U, T)
    x = torch.randn(int(lengths.sum()), cfg.feat_dim, generator=g)  # (N, feat_dim) packed valid rows
    s = torch.randn(windows, cfg.text_dim, generator=g)
    ve = model.encode_video_packed(x, mask)  # (U, d_emb)
    se = model.encode_text(s)  # (U, d_emb)
    loss = torch.linalg.vector_norm(ve - se, dim=-1).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_large_packed_step_equals_torch_products(counted):
    """A step of ~64 windows (~600 rows, the size of an i.i.d. batch's): loss and every gradient within 1e-5
    relative of the same step with torch's own products."""
    cfg = ModelConfig(**CFG)
    loss, grads = _packed_step(cfg, 64)
    assert counted
    with torch_products():
        ref_loss, ref_grads = _packed_step(cfg, 64)
    assert _rel(loss, ref_loss) < 1e-5
    for name, want in ref_grads.items():
        assert _rel(grads[name], want) < 1e-5, name


def test_small_packed_step_is_torch_products_bit_for_bit(counted):
    """A grouped-size step (16 windows, fewer than MIN_ROWS rows) never reaches oneDNN: identical bits."""
    cfg = ModelConfig(**CFG)
    loss, grads = _packed_step(cfg, 16)
    assert not counted
    with torch_products():
        ref_loss, ref_grads = _packed_step(cfg, 16)
    assert torch.equal(loss, ref_loss)
    assert all(torch.equal(grads[n], ref_grads[n]) for n in ref_grads)


def test_stacked_models_take_one_product_each(counted):
    """Stacked seeds (K = 3) on 600 rows each: each model's own oneDNN product equals the batched product, output
    and gradients within 1e-5 relative."""
    cfg = ModelConfig(**CFG)
    models = []
    for s in range(3):
        torch.manual_seed(s)
        models.append(JointEmbedder(cfg))
    net = StackedEmbedders(models)
    x = torch.randn(3, 600, cfg.feat_dim, generator=torch.Generator().manual_seed(5))
    up = torch.randn(3, 600, cfg.d_model, generator=torch.Generator().manual_seed(6))
    w, b = net.params["vem.proj.weight"], net.params["vem.proj.bias"]
    out = net._linear(x, "vem.proj")  # (K, 600, d_model)
    grads = torch.autograd.grad(out, [w, b], up)
    assert len(counted) == 3
    with torch_products():
        ref = net._linear(x, "vem.proj")
    ref_grads = torch.autograd.grad(ref, [w, b], up)
    assert _rel(out, ref) < 1e-5
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) < 1e-5
