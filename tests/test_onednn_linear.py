"""fp32 training products through oneDNN (issues 26-27, `cezsar.training.onednn_linear`): the same function and
gradients as torch's own product, for one model and for stacked models; torch's own product, bit for bit, where
autograd is off (validation, evaluation)."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch.nn import functional as F

from cezsar.config import ModelConfig
from cezsar.training import onednn_linear
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.onednn_linear import linear, onednn_applies
from cezsar.training.stacked_model import StackedEmbedders

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")]

CFG = dict(feat_dim=48, text_dim=24, d_model=32, n_heads=2, emb_dim=16, dropout=0.0)


@pytest.fixture(autouse=True)
def onednn_chosen(monkeypatch):
    """The oneDNN path chosen whatever this CPU is (on a CPU without AVX-512 training keeps torch's product), so
    these tests check it on every machine."""
    monkeypatch.setattr(onednn_linear, "_use_onednn", True)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp(min=1e-12))


@contextmanager
def torch_products():
    """The oneDNN path off: every product `onednn_linear` would take is torch's own (MKL on a CPU); torch's other
    uses of oneDNN stay as they are."""
    before = onednn_linear._use_onednn
    onednn_linear._use_onednn = False
    try:
        yield
    finally:
        onednn_linear._use_onednn = before


@pytest.fixture
def counted(monkeypatch):
    """How many products took the oneDNN path."""
    calls = []
    apply = onednn_linear._OneDnnLinear.apply
    monkeypatch.setattr(onednn_linear._OneDnnLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    return calls


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [7, 700])
def test_linear_equals_torch_product_and_gradients(counted, bias, rows):
    """3-d input of 7 and 700 rows: output and the gradients of input, weight and bias within 1e-5 relative of
    `F.linear`'s."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 1, 96, generator=g, requires_grad=True)
    w = torch.randn(80, 96, generator=g, requires_grad=True)
    b = torch.randn(80, generator=g, requires_grad=True) if bias else None
    up = torch.randn(rows, 1, 80, generator=g)
    leaves = [t for t in (x, w, b) if t is not None]
    ref = F.linear(x, w, b)
    ref_grads = torch.autograd.grad(ref, leaves, up)
    out = linear(x, w, b)
    grads = torch.autograd.grad(out, leaves, up)
    assert counted, "a training product should take the oneDNN path"
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-5
    for got, want in zip(grads, ref_grads):
        assert got.shape == want.shape and _rel(got, want) < 1e-5


def test_path_is_taken_only_for_fp32_training_products():
    x = torch.randn(16, 8)
    assert onednn_applies(x)
    assert not onednn_applies(x.double())
    assert not onednn_applies(x[:0])
    with torch.no_grad():  # validation and evaluation
        assert not onednn_applies(x)
    with torch_products():
        assert not onednn_applies(x)


def test_products_are_chosen_by_the_cpus_vector_capability(monkeypatch):
    """oneDNN where torch runs AVX-512 kernels (about twice MKL's fp32 rate on the AMD EPYC of the committed run),
    torch's own product on AVX2 (MKL faster there: benchmarks/RESULTS.md); CEZSAR_CPU_PRODUCTS overrides; a
    misspelt value is an error naming the variable."""
    from cezsar.base.devices import choose_cpu_products as choose

    assert choose("", "AVX512") == "onednn" and choose("auto", "AVX512") == "onednn"
    assert choose("", "AVX2") == "torch" and choose("", "DEFAULT") == "torch"
    assert choose("onednn", "AVX2") == "onednn" and choose("torch", "AVX512") == "torch"
    assert choose(" OneDNN ", "AVX2") == "onednn"
    with pytest.raises(ValueError, match="CEZSAR_CPU_PRODUCTS='mkl'"):
        choose("mkl", "AVX512")
    monkeypatch.setattr(onednn_linear, "_use_onednn", False)
    assert not onednn_applies(torch.randn(4, 4))


def test_evaluation_is_torch_product_bit_for_bit(counted):
    """Autograd off (validation, zero-shot evaluation): the model embeds exactly as with torch's own product."""
    torch.manual_seed(0)
    model = JointEmbedder(ModelConfig(**CFG)).eval()
    x, s = torch.randn(5, 9, CFG["feat_dim"]), torch.randn(4, CFG["text_dim"])
    with torch.no_grad():
        got = model.encode_video(x), model.encode_text(s)
    assert not counted
    with torch.no_grad(), torch_products():
        want = model.encode_video(x), model.encode_text(s)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


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


@pytest.mark.parametrize("windows", [16, 64])
def test_packed_step_equals_torch_products(counted, windows):
    """A grouped-size step (16 windows, ~150 rows) and an i.i.d.-size one (64 windows, ~600 rows): loss and every
    gradient within 1e-5 relative of the same step with torch's own products."""
    cfg = ModelConfig(**CFG)
    loss, grads = _packed_step(cfg, windows)
    assert counted
    with torch_products():
        ref_loss, ref_grads = _packed_step(cfg, windows)
    assert _rel(loss, ref_loss) < 1e-5
    for name, want in ref_grads.items():
        assert _rel(grads[name], want) < 1e-5, name


def test_stacked_models_take_one_product_each():
    """Stacked seeds (K = 3) on 600 rows each: each model's own oneDNN product equals the batched product, output
    and the gradients of input, weights and biases within 1e-5 relative."""
    cfg = ModelConfig(**CFG)
    models = []
    for s in range(3):
        torch.manual_seed(s)
        models.append(JointEmbedder(cfg))
    net = StackedEmbedders(models)
    x = torch.randn(3, 600, cfg.feat_dim, generator=torch.Generator().manual_seed(5), requires_grad=True)
    up = torch.randn(3, 600, cfg.d_model, generator=torch.Generator().manual_seed(6))
    w, b = net.params["vem.proj.weight"], net.params["vem.proj.bias"]
    out = net._linear(x, "vem.proj")  # (K, 600, d_model)
    assert out.grad_fn.name() == "_OneDnnStackedLinearBackward"
    grads = torch.autograd.grad(out, [x, w, b], up)
    with torch_products():
        ref = net._linear(x, "vem.proj")
    ref_grads = torch.autograd.grad(ref, [x, w, b], up)
    assert _rel(out, ref) < 1e-5
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) < 1e-5
