"""The CUDA paths (issue 18): the packed VEM equals the padded VEM on a GPU in fp32 and under bf16 autocast,
training on a GPU lowers its loss, and frame features computed on a GPU equal the CPU's for the same frames.

Skipped where torch sees no CUDA device (CI); `benchmarks/gpu_check.sh` runs them on a GPU machine.
Tolerances, stated once here:
- fp32 on the GPU: cuBLAS and cuDNN reorder sums (and convolutions may use TF32), so outputs and gradients
  agree with the padded path to 1e-4 relative / 1e-5 absolute, not bit for bit;
- bf16 autocast: 8 mantissa bits, ~0.4 % per rounding; the packed and padded outputs agree to 3e-2 and every
  parameter's gradient points the same way as the fp32 gradient (cosine >= 0.99);
- CNN features: the GPU's convolutions run in TF32 by default (10 mantissa bits): features agree with the CPU's
  to 2 % of their scale, per frame cosine >= 0.999, and the top-1 class is the same for every frame whose top
  two logits are more than 1 % of the logit scale apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cezsar.config import ExtractConfig, ModelConfig, TrainConfig
from cezsar.training.joint_embedder import JointEmbedder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (issue 18: GPU machine only)")

CUDA = torch.device("cuda")


def ragged(lengths: list[int], t: int, feat_dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch (B, t, feat_dim) whose padding is NaN (never read) and its mask (B, t), on `device`."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(len(lengths), t, feat_dim, generator=gen)
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]  # (B, t)
    x[~mask] = float("nan")
    return x.to(device), mask.to(device)


def vem_grads(model: JointEmbedder, out: torch.Tensor, weights: torch.Tensor) -> list[torch.Tensor]:
    params = [p for n, p in model.named_parameters() if n.startswith("vem.")]
    return [g.float() for g in torch.autograd.grad((out.float() * weights).sum(), params)]


def real_model(device) -> JointEmbedder:
    torch.manual_seed(0)
    return JointEmbedder(ModelConfig()).to(device).eval()  # 1280-d features, d_model 512: training's model


def test_packed_equals_padded_on_cuda_fp32_outputs_and_gradients():
    model = real_model(CUDA)
    x, mask = ragged([15, 4, 9, 1, 12, 7], 15, model.cfg.feat_dim, CUDA)
    padded = model.encode_video(x, mask)  # (6, 128)
    packed = model.encode_video_packed(x[mask], mask)  # (6, 128) from the valid rows only
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-4)
    weights = torch.randn(*padded.shape, device=CUDA)
    for a, b in zip(vem_grads(model, packed, weights), vem_grads(model, padded, weights)):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # and the GPU agrees with the CPU reference of the same weights
    cpu = real_model("cpu")
    xc, mc = x.cpu(), mask.cpu()
    torch.testing.assert_close(packed.cpu(), cpu.encode_video(xc, mc), atol=1e-4, rtol=1e-3)


def test_packed_equals_padded_on_cuda_bf16_autocast():
    model = real_model(CUDA)
    x, mask = ragged([15, 4, 9, 1, 12, 7], 15, model.cfg.feat_dim, CUDA)
    weights = torch.randn(6, model.cfg.emb_dim, device=CUDA)
    ref = model.encode_video_packed(x[mask], mask)  # fp32 reference
    ref_g = vem_grads(model, ref, weights)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        padded = model.encode_video(x, mask)
        packed = model.encode_video_packed(x[mask], mask)
    assert packed.dtype == torch.bfloat16  # the branch under test really ran in bf16
    torch.testing.assert_close(packed.float(), padded.float(), atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(packed.float(), ref, atol=3e-2, rtol=3e-2)
    for a, b in zip(vem_grads(model, packed, weights), ref_g):
        assert torch.isfinite(a).all()
        cos = torch.nn.functional.cosine_similarity(a.reshape(1, -1), b.reshape(1, -1)).item()
        assert cos >= 0.99, cos


def test_training_on_cuda_lowers_the_loss(tmp_path: Path):
    from test_train import TINY, make_toy

    from cezsar.training.checkpoints import load_checkpoint
    from cezsar.training.train import fit

    trip, store, text = make_toy(tmp_path / "feats")
    res = fit(trip, store, text, TrainConfig(lr=1e-3, batch=32, epochs=6, device="cuda", autocast=True),
              ModelConfig(**{**TINY, "dropout": 0.1}), tmp_path / "run", progress=False)
    hist = res["history"]
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    model, meta = load_checkpoint(tmp_path / "run" / "best.pt", device="cpu")  # a GPU checkpoint loads on a CPU
    assert next(model.parameters()).device.type == "cpu" and meta["epoch"] == res["best_epoch"]


def _frames(n: int = 12) -> np.ndarray:
    """n distinct real-photograph frames (a panning crop), uint8 (n, 160, 160, 3)."""
    from skimage import data

    photo = data.chelsea()  # (300, 451, 3)
    return np.stack([photo[40:200, 10 * i:10 * i + 160] for i in range(n)]).astype(np.uint8)


def _agree(f_cpu: np.ndarray, f_gpu: np.ndarray, l_cpu: np.ndarray, l_gpu: np.ndarray) -> None:
    scale = float(np.abs(f_cpu).max())
    assert np.abs(f_gpu - f_cpu).max() <= 0.02 * scale
    cos = (f_cpu * f_gpu).sum(1) / (np.linalg.norm(f_cpu, axis=1) * np.linalg.norm(f_gpu, axis=1))
    assert cos.min() >= 0.999, cos.min()
    top2 = np.sort(l_cpu, axis=1)[:, -2:]  # (T, 2)
    clear = top2[:, 1] - top2[:, 0] > 0.01 * np.abs(l_cpu).max()  # a top-1 not tied within the rounding
    assert clear.any() and (l_cpu.argmax(1) == l_gpu.argmax(1))[clear].all()


def test_efficientnet_features_on_cuda_equal_cpu():
    from cezsar.encoders.backbones import get_encoder

    frames = _frames()
    f_cpu, l_cpu = get_encoder("efficientnet_lite0", device="cpu").encode(frames)
    f_gpu, l_gpu = get_encoder("efficientnet_lite0", device="cuda", precision="fp32").encode(frames)
    _agree(f_cpu, f_gpu, l_cpu, l_gpu)


def test_bit_features_on_cuda_equal_cpu():
    """BiT's ResNetV2 (weight-standardised convolutions, group norm; the real weights are not available
    offline, so random ones in a shortened R-x1 layout) on both devices with the same weights."""
    import copy

    from cezsar.encoders.backbones import FrameEncoder
    from cezsar.encoders.bit import ResNetV2

    torch.manual_seed(0)
    net = ResNetV2((1, 1, 1, 1), 1, 1000)

    def encoder(device: str) -> FrameEncoder:
        m = copy.deepcopy(net)
        return FrameEncoder("bit", m, m.features, m.head, m.dim, 1000, "imagenet1k", 160, (0.5,) * 3, (0.5,) * 3,
                            device, precision="fp32")

    frames = _frames(6)
    f_cpu, l_cpu = encoder("cpu").encode(frames)
    f_gpu, l_gpu = encoder("cuda").encode(frames)
    _agree(f_cpu, f_gpu, l_cpu, l_gpu)


def test_extract_on_cuda_with_parallel_decoders_equals_cpu(tmp_path: Path):
    """The whole extraction (decoding threads + CNN on the GPU + atomic writes) against a CPU run."""
    from test_features import make_corpus

    from cezsar.encoders.backbones import get_encoder
    from cezsar.commands.extract import collect_videos
    from cezsar.encoders.extraction import extract

    videos = collect_videos("folder", make_corpus(tmp_path / "corpus", bad=False))
    rc = extract(videos, tmp_path / "cpu", ExtractConfig(decoders=1), encoder=get_encoder(device="cpu"),
                 progress=False)
    rg = extract(videos, tmp_path / "gpu", ExtractConfig(decoders=4),
                 encoder=get_encoder(device="cuda", precision="fp32"), progress=False)
    assert rg["decoders"] == 4 and rc["frames"] == rg["frames"] > 0 and not rg["skipped"]
    for v in videos:
        a, b = np.load(tmp_path / "cpu" / f"{v.video_id}.npy"), np.load(tmp_path / "gpu" / f"{v.video_id}.npy")
        assert a.shape == b.shape
        oa = np.load(tmp_path / "cpu" / "objects" / f"{v.video_id}.npz")["indices"]
        ob = np.load(tmp_path / "gpu" / "objects" / f"{v.video_id}.npz")["indices"]
        scale = float(np.abs(a).max())
        assert np.abs(a - b).max() <= 0.02 * scale
        assert (oa[:, 0] == ob[:, 0]).mean() >= 0.9  # top-1 object; near-ties may swap under TF32


# --- the static step and its CUDA graphs (issue 28 parts 1-2) ------------------------------------
def _cuda_toy(tmp_path: Path, dropout: float = 0.0):
    """make_toy's triplets on the GPU (float32 bank), a TINY model config; TF32 off so fp32 means fp32."""
    from test_train import TINY, make_toy

    from cezsar.config import FastPathConfig
    from cezsar.training.train_inputs import prepare

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    trip, store, text = make_toy(tmp_path / "feats")
    cfg = ModelConfig(feat_dim=store.dim, text_dim=text.shape[1], **{**TINY, "dropout": dropout})
    data, _ = prepare(trip, store, text, cfg, FastPathConfig(bank_dtype="float32"), tmp_path / "cache", CUDA)
    return trip, cfg, data


def _rel_close(a: torch.Tensor, b: torch.Tensor, rel: float, what: str) -> None:
    scale = float(b.detach().abs().max().clamp(min=1e-12))
    err = float((a.detach() - b.detach()).abs().max())
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel} x scale {scale:.3g}"


def test_static_step_on_cuda_equals_the_eager_step(tmp_path: Path):
    from cezsar.training.featurebank import epoch_order
    from cezsar.training.static_step import epoch_tables, run_length, weighted_loss
    from cezsar.training.eager_step import batch_loss

    _, cfg, data = _cuda_toy(tmp_path)
    order = epoch_order(data.win.cpu().numpy(), np.arange(len(data.win)), 0, 0, 8)
    tab = epoch_tables(data, order, 32, run_length(data))
    torch.manual_seed(0)
    model = JointEmbedder(cfg).to(CUDA).train()
    params = list(model.parameters())
    for i in (0, tab.steps - 1):  # a full batch and the ragged tail
        b = torch.as_tensor(order[i * 32:(i + 1) * 32], device=CUDA)
        eager = batch_loss(model, data, b, 1.0)[0].mean()
        static = weighted_loss(model, data, tab.at(torch.tensor(i, device=CUDA)), 1.0)[0]
        _rel_close(static, eager, 1e-5, f"loss {i}")
        for p, a, c in zip(params, torch.autograd.grad(static, params), torch.autograd.grad(eager, params)):
            _rel_close(a, c, 1e-4, f"grad {tuple(p.shape)} {i}")


def test_graphed_epoch_equals_the_eager_epoch_on_cuda(tmp_path: Path):
    """A whole epoch (300 triplets, 10 steps: unroll 4 -> two 4-step replays and two 1-step replays, the ragged
    tail of 12 last):
    the same epoch loss, the same last-step gradients and weights as the eager step with the same capturable
    AdamW; and the warm-up did not train."""
    import copy

    from cezsar.training.featurebank import epoch_order
    from cezsar.training.graphed_step import GraphedTrainer
    from cezsar.training.static_step import run_length
    from cezsar.training.eager_step import make_optimizer, train_one_epoch

    trip, cfg, data = _cuda_toy(tmp_path)
    tcfg = TrainConfig(lr=1e-3, batch=32, autocast=False)
    train_idx = np.flatnonzero(~np.asarray(trip.val))
    order = epoch_order(data.win.cpu().numpy(), train_idx, 0, 0, 8)
    torch.manual_seed(0)
    eager = JointEmbedder(cfg).to(CUDA)
    graphed, start = copy.deepcopy(eager), copy.deepcopy(eager)
    opt_e, opt_g = make_optimizer(eager, tcfg, capturable=True), make_optimizer(graphed, tcfg, capturable=True)
    trainer = GraphedTrainer(graphed, data, opt_g, tcfg, run_length(data), unroll=4)
    r0 = trainer.train_epoch(order, limit_steps=0)  # captures (warm-up included), replays nothing
    assert r0["steps"] == 0
    for p, q in zip(graphed.parameters(), start.parameters()):
        assert torch.equal(p, q)  # the warm-up's steps were undone
    re = train_one_epoch(eager, data, opt_e, order, tcfg, CUDA)
    rg = trainer.train_epoch(order)
    assert len(order) == 300 and re["steps"] == rg["steps"] == 10 and re["triplets"] == rg["triplets"] == 300
    assert abs(re["loss"] - rg["loss"]) <= 1e-5 * re["loss"]
    # weights: AdamW turns the rounding noise of the attention key bias's zero gradient into lr-sized steps,
    # so that slice is left out; everything else agrees to rounding
    for (name, p), q in zip(graphed.named_parameters(), eager.parameters()):
        if name.endswith("in_proj_bias"):
            d = p.shape[0] // 3
            p, q = torch.cat([p[:d], p[2 * d:]]), torch.cat([q[:d], q[2 * d:]])
        _rel_close(p, q, 1e-3, f"weights {name}")
    # the ragged tail's gradients: the graph's .grad buffers against what the eager epoch's last step left
    for (name, p), q in zip(graphed.named_parameters(), eager.parameters()):
        if not name.endswith("in_proj_bias"):
            _rel_close(p.grad, q.grad, 1e-3, f"last-step grad {name}")
    # a second epoch: new tables copied into the captured buffers (or a re-capture when a cap grows)
    order1 = epoch_order(data.win.cpu().numpy(), train_idx, 0, 1, 8)
    re1, rg1 = train_one_epoch(eager, data, opt_e, order1, tcfg, CUDA), trainer.train_epoch(order1)
    assert abs(re1["loss"] - rg1["loss"]) <= 1e-4 * re1["loss"] and re1["loss"] != re["loss"]


def test_graphed_validation_equals_evaluate_on_cuda(tmp_path: Path):
    from cezsar.training.graphed_step import GraphedTrainer
    from cezsar.training.static_step import run_length
    from cezsar.training.eager_step import evaluate, make_optimizer

    trip, cfg, data = _cuda_toy(tmp_path, dropout=0.2)
    tcfg = TrainConfig(batch=32, autocast=False)
    val = np.flatnonzero(np.asarray(trip.val))
    torch.manual_seed(0)
    model = JointEmbedder(cfg).to(CUDA)
    trainer = GraphedTrainer(model, data, make_optimizer(model, tcfg, capturable=True), tcfg, run_length(data))
    ref = evaluate(model, data, val, tcfg, CUDA)
    for _ in range(2):  # captured once, replayed twice
        got = trainer.evaluate(val)
        assert abs(got["loss"] - ref["loss"]) <= 1e-5 * ref["loss"] and got["acc"] == ref["acc"]


@pytest.mark.parametrize("tf32", [False, True])
def test_fit_with_cuda_graphs_lowers_the_loss(tmp_path: Path, tf32: bool):
    from test_train import TINY, make_toy

    from cezsar.config import FastPathConfig
    from cezsar.training.train import fit

    trip, store, text = make_toy(tmp_path / "feats")
    res = fit(trip, store, text, TrainConfig(lr=1e-3, batch=32, epochs=6, device="cuda"),
              ModelConfig(**{**TINY, "dropout": 0.1}), tmp_path / "run", progress=False,
              fast=FastPathConfig(step="static", graph=True, unroll=4, tf32=tf32))
    hist = res["history"]
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()


# --- issue 28 parts 4-5: the extraction and objects paths that stay on the GPU ---------------------------------
# Tolerances: fp32 paths as above. bf16 (the GPU default for extraction): 8 mantissa bits per convolution, the
# group/batch norms and the head in fp32; features agree with the fp32 GPU run to 5 % of their scale with per-frame
# cosine >= 0.99, and the top-1 object is the same for >= 80 % of frames (random-weight nets have close logits).


def test_encode_topk_on_cuda_equals_the_float64_path():
    """Top-k + log-sum-exp on the GPU (5 indices and scores copied back per frame, async, behind an event) equal
    the float64 softmax of the same GPU logits."""
    from cezsar.encoders.backbones import get_encoder
    from cezsar.encoders.objects import topk_from_logits

    enc = get_encoder("efficientnet_lite0", device="cuda", precision="fp32", batch=8)
    frames = _frames(8)
    f, idx, sc, event = enc.encode_topk(frames, 5)
    assert event is not None and f.device.type == "cpu" and f.is_pinned()
    event.synchronize()
    f_ref, logits = enc.encode(frames)
    want_idx, want_sc = topk_from_logits(logits, 5)
    np.testing.assert_array_equal(idx.numpy(), want_idx)
    np.testing.assert_allclose(sc.numpy(), want_sc.astype(np.float32), atol=1e-3)
    np.testing.assert_allclose(f.numpy(), f_ref, rtol=1e-4, atol=1e-5)


def test_bf16_extraction_on_cuda_close_to_fp32(tmp_path: Path):
    """The default GPU extraction (bf16 channels_last, fixed-size batches across videos) against fp32 on the GPU."""
    from test_features import make_corpus

    from cezsar.encoders.backbones import get_encoder
    from cezsar.commands.extract import collect_videos
    from cezsar.encoders.extraction import extract

    videos = collect_videos("folder", make_corpus(tmp_path / "corpus", bad=False))
    r32 = extract(videos, tmp_path / "fp32", ExtractConfig(batch=4),
                  encoder=get_encoder(device="cuda", precision="fp32", batch=4), progress=False)
    enc = get_encoder(device="cuda", batch=4)
    assert enc.precision == "bf16"
    r16 = extract(videos, tmp_path / "bf16", ExtractConfig(batch=4), encoder=enc, progress=False)
    assert r16["frames"] == r32["frames"] > 0 and not r16["skipped"]
    top1 = []
    for v in videos:
        a, b = np.load(tmp_path / "fp32" / f"{v.video_id}.npy"), np.load(tmp_path / "bf16" / f"{v.video_id}.npy")
        assert a.shape == b.shape and np.abs(a - b).max() <= 0.05 * float(np.abs(a).max())
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cos.min() >= 0.99
        top1.append(np.load(tmp_path / "fp32" / "objects" / f"{v.video_id}.npz")["indices"][:, 0]
                    == np.load(tmp_path / "bf16" / "objects" / f"{v.video_id}.npz")["indices"][:, 0])
    assert np.concatenate(top1).mean() >= 0.8


def test_objects_from_bank_on_cuda_equal_cpu():
    """The bank's objects on the GPU in chunks (64k rows by default; a small chunk here crosses boundaries)."""
    from cezsar.encoders.feature_objects import objects_from_bank

    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(3000, 256, generator=gen).abs().half()  # (N, D) fp16 as the training bank
    w, b = torch.randn(21843, 256, generator=gen) * 0.05, torch.randn(21843, generator=gen) * 0.1
    ic, sc = objects_from_bank(bank, w, b, 5, chunk_rows=700)
    ig, sg = objects_from_bank(bank.cuda(), w.cuda(), b.cuda(), 5, chunk_rows=700)
    assert (ig.cpu() == ic).all(1).float().mean() >= 0.999  # a near-tie may swap under another summation order
    torch.testing.assert_close(sg.cpu().float(), sc.float(), atol=1e-3, rtol=0)


def test_folded_bit_on_cuda_equals_unfolded():
    import copy

    from cezsar.encoders.bit import ResNetV2, fold_standardisation

    torch.manual_seed(0)
    net = ResNetV2((1, 1, 1, 1), 1, 1000).eval().cuda()
    folded = fold_standardisation(copy.deepcopy(net))
    x = torch.rand(4, 3, 96, 96, device=CUDA) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-4)


def test_sbert_fp16_on_cuda_close_to_cpu(tmp_path: Path):
    """SBERT at batch 512 in fp16 on the GPU against fp32 on the CPU, each with its own cache."""
    from cezsar.encoders.text import SentenceEncoder

    try:
        cpu = SentenceEncoder("minilm", cache_dir=tmp_path / "c")
    except Exception as err:  # the offline model is not on every GPU machine
        pytest.skip(f"no SBERT model here: {err}")
    gpu = SentenceEncoder("minilm", cache_dir=tmp_path / "g", device="cuda")
    assert gpu.batch >= 512 and gpu.model_id.endswith("-fp16") and gpu.model_id != cpu.model_id
    sents = [f"a person is doing thing number {i} in a room" for i in range(600)]
    a, b = cpu.encode(sents), gpu.encode(sents)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.999
