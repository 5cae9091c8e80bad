"""Each released-code switch changes behaviour the way the released code does (docs/fidelity.md)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cezsar.config import ModelConfig
from cezsar.model import JointEmbedder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(feat_dim=8, text_dim=6, d_model=16, n_heads=2, emb_dim=5, dropout=0.0, positional=False, max_len=16)


def _pair(**switches):
    """A paper model and a switched model with the same VEM weights (the switches add none)."""
    torch.manual_seed(0)
    paper = JointEmbedder(ModelConfig(**SMALL))
    torch.manual_seed(0)
    switched = JointEmbedder(ModelConfig(**SMALL, **switches))
    switched.vem.load_state_dict(paper.vem.state_dict())
    return paper, switched


def _x(b=2, t=5, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(b, t, 8)).astype(np.float32))


def test_released_padding_puts_16_zero_rows_into_attention_and_mean():
    paper, rel = _pair(released_padding=True)
    paper.eval(), rel.eval()
    x = _x()
    padded = torch.cat([x, torch.zeros(2, 11, 8)], 1)  # (2, 16, 8): zero rows, all of them "valid"
    with torch.no_grad():
        torch.testing.assert_close(rel.encode_video(x), paper.encode_video(padded))
        assert not torch.allclose(rel.encode_video(x), paper.encode_video(x), atol=1e-4)  # padding counts
        mask = torch.tensor([[True] * 3 + [False] * 2] * 2)
        torch.testing.assert_close(rel.encode_video(x, mask), rel.encode_video(x[:, :3]))  # masked rows -> zeros


def test_released_attention_mixes_the_batch_in_training_and_nothing_at_test():
    paper, rel = _pair(released_attention=True)
    x = _x(3)
    y = x.clone()
    y[1:] += 1.0  # other clips of the batch change
    with torch.no_grad():
        rel.train(), paper.train()  # dropout 0: deterministic
        assert not torch.allclose(rel.encode_video(x)[0], rel.encode_video(y)[0], atol=1e-5)
        torch.testing.assert_close(paper.encode_video(x)[0], paper.encode_video(y)[0])
        rel.eval()
        vem = rel.vem
        h = torch.relu(vem.proj(x))  # (3, T, d)
        alone = torch.stack([vem.layers[0](h[:, t:t + 1]) for t in range(h.shape[1])], 1).squeeze(2)  # step alone
        torch.testing.assert_close(rel.encode_video(x), torch.relu(vem.out(alone.mean(1))))
        torch.testing.assert_close(rel.encode_video(x)[0], rel.encode_video(y)[0])


def test_released_head_relu_before_the_fcs_no_output_relu_layernorm_in_training_only():
    paper, rel = _pair(released_head=True, released_sem=True)
    x, s = _x(), torch.randn(4, 6)
    vem = rel.vem
    with torch.no_grad():
        rel.eval()
        h = vem.layers[0](vem.proj(torch.relu(x))).mean(1)
        ref = vem.out(torch.relu(h))
        torch.testing.assert_close(rel.encode_video(x), ref)
        assert (ref < 0).any()  # no output ReLU
        torch.testing.assert_close(rel.encode_text(s), rel.sem.net[1](s))  # Linear only at test
        rel.train()
        torch.testing.assert_close(rel.encode_video(x), torch.nn.functional.layer_norm(ref, (5,)))
        torch.testing.assert_close(rel.encode_text(s), rel.sem.net(s))  # LayerNorm in training
    assert set(paper.vem.state_dict()) == set(rel.vem.state_dict())  # the head switch adds no weights


def test_released_head_packed_path_equals_padded_path():
    _, rel = _pair(released_head=True)
    rel.eval()
    x = _x(2, 6)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    with torch.no_grad():
        torch.testing.assert_close(rel.encode_video_packed(x[mask], mask), rel.encode_video(x, mask))
    _, pad = _pair(released_padding=True)
    with pytest.raises(NotImplementedError):
        pad.encode_video_packed(x[mask], mask)


def test_xavier_init_draws_wider_weights_than_torch_default():
    torch.manual_seed(0)
    default = JointEmbedder(ModelConfig(**SMALL))
    torch.manual_seed(0)
    xavier = JointEmbedder(ModelConfig(**SMALL, xavier_init=True))
    w_d, w_x = default.vem.proj.weight, xavier.vem.proj.weight  # (16, 8)
    assert w_d.abs().max() <= 1 / np.sqrt(8) + 1e-6  # torch: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert 1 / np.sqrt(8) < w_x.abs().max() <= np.sqrt(6 / (8 + 16)) + 1e-6  # Xavier: sqrt(6 / (in + out))
    torch.testing.assert_close(default.vem.proj.bias, xavier.vem.proj.bias)  # biases keep torch's init
