"""The joint embedder (paper §3.2): padding, batch independence, positional encoding, shapes at real dims, the
packed fast path, and the paper modules or the released variants a config names."""
from __future__ import annotations

import pytest
import torch

from cezsar.config import ModelConfig
from cezsar.training.joint_embedder import JointEmbedder
from cezsar.training.model import SentenceEmbedder, VisualEmbedder
from cezsar.training.packed_vem import dropout_cpu
from cezsar.training.released_model import ReleasedSentenceEmbedder, ReleasedVisualEmbedder

TINY = dict(feat_dim=24, text_dim=10, d_model=32, n_heads=2, emb_dim=16, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: see conftest


def tiny(**kw) -> JointEmbedder:
    torch.manual_seed(0)
    return JointEmbedder(ModelConfig(**{**TINY, **kw}))


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_never_changes_the_output(train_mode):
    model = tiny().train(train_mode)  # eval takes torch's fused fast path, train the reference path
    x = torch.randn(3, 6, 24)
    with torch.no_grad():
        bare = model.encode_video(x)  # (3, 16) no padding at all
        for extra, fill in [(1, 0.0), (9, 7.5), (4, float("nan"))]:
            padded = torch.cat([x, torch.full((3, extra, 24), fill)], dim=1)  # (3, 6 + extra, 24)
            mask = torch.zeros(3, 6 + extra, dtype=torch.bool)
            mask[:, :6] = True
            out = model.encode_video(padded, mask)
            assert torch.isfinite(out).all()
            torch.testing.assert_close(out, bare, atol=1e-5, rtol=1e-5)


def test_ragged_batch_matches_each_clip_alone():
    model = tiny().eval()
    lengths = [2, 7, 5]
    clips = [torch.randn(n, 24) for n in lengths]
    x = torch.zeros(3, 7, 24)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    for i, c in enumerate(clips):
        x[i, : len(c)] = c
        mask[i, : len(c)] = True
    with torch.no_grad():
        batch = model.encode_video(x, mask)
        for i, c in enumerate(clips):
            torch.testing.assert_close(batch[i], model.encode_video(c[None])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("train_mode", [False, True])
def test_a_clip_does_not_depend_on_the_rest_of_its_batch(train_mode):
    """Regression test for the released code's attention over the batch axis (batch_first unset)."""
    model = tiny().train(train_mode)
    x = torch.randn(4, 5, 24)
    with torch.no_grad():
        first = model.encode_video(x)[0]
        other = x.clone()
        other[1:] = torch.randn(3, 5, 24) * 3
        torch.testing.assert_close(model.encode_video(other)[0], first, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.encode_video(x[:1])[0], first, atol=1e-5, rtol=1e-5)


def test_positional_encoding_makes_order_matter():
    x = torch.randn(2, 8, 24)
    with torch.no_grad():
        with_pe = tiny(positional=True).eval()
        diff = (with_pe.encode_video(x) - with_pe.encode_video(x.flip(1))).abs().max()
        assert diff > 1e-3  # reversing the frames changes the embedding
        # without PE, attention + mean are permutation invariant: the released variant ignores order
        no_pe = tiny(positional=False).eval()
        torch.testing.assert_close(no_pe.encode_video(x.flip(1)), no_pe.encode_video(x), atol=1e-5, rtol=1e-5)


def test_long_clip_beyond_the_position_table():
    model = tiny().eval()
    with torch.no_grad():
        out = model.encode_video(torch.randn(1, 300, 24))  # evaluation may feed a whole clip
    assert out.shape == (1, 16) and torch.isfinite(out).all()


def test_sem_variants_and_shape_errors():
    model = tiny()
    s = torch.randn(5, 10)
    out = model.encode_text(s)
    assert out.shape == (5, 16) and (out >= 0).all()  # Eq. 6 ends in a ReLU
    released = tiny(released_sem=True).eval()
    r = released.encode_text(s)
    torch.testing.assert_close(r.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)  # LayerNorm output
    with pytest.raises(ValueError, match="text_dim|sentence"):
        model.encode_text(torch.randn(5, 11))
    with pytest.raises(ValueError, match="features"):
        model.encode_video(torch.randn(2, 3, 23))


def test_real_dims_forward_backward():
    torch.manual_seed(0)
    cfg = ModelConfig()  # 1280-d features, 384-d text, d_model 512, 2 heads, 128-d joint space
    model = JointEmbedder(cfg)
    x = torch.randn(4, cfg.max_len, cfg.feat_dim)
    mask = torch.ones(4, cfg.max_len, dtype=torch.bool)
    mask[1, 9:] = False
    v = model.encode_video(x, mask)
    s = model.encode_text(torch.randn(4, cfg.text_dim))
    assert v.shape == (4, 128) and s.shape == (4, 128)
    (v.sum() + s.sum()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(x[1:2, :9]), model.encode_video(x, mask)[1:2], atol=1e-5, rtol=1e-5)


# --- the packed ("varlen") VEM of the training fast path ---------------------------------------------
def ragged(lengths: list[int], t: int, feat_dim: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch (B, t, feat_dim) whose padding is NaN (it must never be read) and its mask (B, t)."""
    x = torch.randn(len(lengths), t, feat_dim)
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]  # (B, t)
    x[~mask] = float("nan")
    return x, mask


@pytest.mark.parametrize("positional,norm_first", [(True, False), (False, False), (True, True)])
def test_packed_forward_matches_padded_forward_and_its_gradients(positional, norm_first):
    model = tiny(positional=positional, n_layers=2).eval()  # eval: dropout off, the two paths are one function
    for layer in model.vem.layers:
        layer.norm_first = norm_first  # not a ModelConfig knob; the packed path must still follow the layer
    x, mask = ragged([3, 9, 1, 6, 9], 10)  # a trailing all-padding column, as a trimmed batch may not have
    padded = model.encode_video(x, mask)  # (5, 16)
    packed = model.encode_video_packed(x[mask], mask)  # (5, 16) from the 28 valid rows only
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
    index = mask.reshape(-1).nonzero().squeeze(1)  # (28,) what the fast path precomputes
    torch.testing.assert_close(model.encode_video_packed(x[mask], mask, index), packed, atol=0, rtol=0)
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if n.startswith("vem.")])
    weights = torch.randn(5, 16)  # a loss whose gradient differs per clip and per output unit
    g_padded = torch.autograd.grad((padded * weights).sum(), params)
    g_packed = torch.autograd.grad((packed * weights).sum(), params)
    for name, a, b in zip(names, g_packed, g_padded):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_packed_forward_at_real_dims_matches_padded_forward():
    torch.manual_seed(0)
    cfg = ModelConfig()  # 1280-d features, d_model 512, 2 heads: the benchmark's and training's model
    model = JointEmbedder(cfg).eval()
    x, mask = ragged([15, 4, 9, 1], cfg.max_len, cfg.feat_dim)
    with torch.no_grad():  # the padded side takes torch's fused inference kernel here
        torch.testing.assert_close(model.encode_video_packed(x[mask], mask), model.encode_video(x, mask),
                                   atol=1e-5, rtol=1e-5)


def test_packed_training_forward_is_seeded_and_drops_out():
    model = tiny(dropout=0.1).train()
    x, mask = ragged([4, 7, 2], 7)
    rows = x[mask]  # (13, 24)

    def run(seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(seed)
        out = model.encode_video_packed(rows, mask)  # (3, 16)
        return out, torch.autograd.grad(out.square().sum(), list(model.vem.parameters()))

    (a, ga), (b, gb) = run(5), run(5)
    assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(ga, gb))  # same seed, same masks
    assert not torch.equal(run(6)[0], a)  # another seed, other masks
    with torch.no_grad():
        assert not torch.allclose(model.eval().encode_video_packed(rows, mask), a)  # dropout was on


def test_cpu_dropout_keeps_one_minus_p_and_scales_like_f_dropout():
    x = torch.randn(400, 1001)  # an odd element count: the last 64-bit word is used half
    torch.manual_seed(0)
    y = dropout_cpu(x, 0.1, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.003  # 400,400 draws: ~6 standard deviations
    scale = torch.ones(()).div_(0.9)  # F.dropout's noise: a float32 1 / (1 - p), then one product
    torch.testing.assert_close(y[kept], x[kept] * scale, atol=0, rtol=0)
    torch.manual_seed(0)
    assert torch.equal(dropout_cpu(x, 0.1, training=True), y)
    assert dropout_cpu(x, 0.1, training=False) is x and dropout_cpu(x, 0.0, training=True) is x


# --- the paper's modules or the released variants, chosen from the config (cezsar.training.released_model) ------------
LAYER_KEYS = ["self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
              "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
              "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]
PAPER_VEM = ["vem.proj.weight", "vem.proj.bias", *[f"vem.layers.0.{k}" for k in LAYER_KEYS], "vem.out.weight",
             "vem.out.bias"]


@pytest.mark.parametrize("switches,vem_extra,sem_keys", [
    ({}, [], ["sem.net.0.weight", "sem.net.0.bias"]),
    (dict(positional=False), [], ["sem.net.0.weight", "sem.net.0.bias"]),
    (dict(released_padding=True, max_len=16), [], ["sem.net.0.weight", "sem.net.0.bias"]),
    (dict(released_attention=True), [], ["sem.net.0.weight", "sem.net.0.bias"]),
    (dict(released_head=True), ["vem.out_norm.weight", "vem.out_norm.bias"], ["sem.net.0.weight", "sem.net.0.bias"]),
    (dict(released_sem=True), [], ["sem.net.1.weight", "sem.net.1.bias", "sem.net.2.weight", "sem.net.2.bias"]),
    (dict(xavier_init=True), [], ["sem.net.0.weight", "sem.net.0.bias"]),
])
def test_each_variant_keeps_the_checkpoint_keys_and_reloads_to_the_same_embeddings(switches, vem_extra, sem_keys):
    """A checkpoint names its tensors as it always did (the paper's keys, plus only the released layers' own),
    and its weights loaded into a freshly drawn model of the same config give the same embeddings."""
    saved = tiny(**switches).eval()
    assert list(saved.state_dict()) == PAPER_VEM + vem_extra + sem_keys
    torch.manual_seed(1)  # other initial weights, replaced by the loaded ones
    fresh = JointEmbedder(ModelConfig(**{**TINY, **switches})).eval()
    fresh.load_state_dict(saved.state_dict())
    x, mask = ragged([5, 2, 7], 7)
    s = torch.randn(4, 10)
    with torch.no_grad():
        assert torch.equal(fresh.encode_video(x, mask), saved.encode_video(x, mask))
        assert torch.equal(fresh.encode_text(s), saved.encode_text(s))


@pytest.mark.parametrize("switches,vem_released,sem_released", [
    ({}, False, False), (dict(positional=False), True, False), (dict(released_padding=True), True, False),
    (dict(released_attention=True), True, False), (dict(released_head=True), True, False),
    (dict(released_sem=True), False, True), (dict(xavier_init=True), False, False),
])
def test_the_paper_modules_unless_a_released_switch_changes_them(switches, vem_released, sem_released):
    """Without a released switch the joint embedder is made of cezsar.training.model's modules exactly; a switch that
    changes the VEM or the SEM swaps in that module's released variant, and only that one."""
    model = tiny(**switches)
    assert type(model.vem) is (ReleasedVisualEmbedder if vem_released else VisualEmbedder)
    assert type(model.sem) is (ReleasedSentenceEmbedder if sem_released else SentenceEmbedder)
