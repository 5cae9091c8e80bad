"""CLIP as frame encoder and baseline (cezsar.encoders.clip, cezsar.encoders.clip_tokenizer,
cezsar.evaluation.clip_baseline): the tokenizer's ids, the preprocessing against transformers' CLIPImageProcessor, the
frame-average 1-NN on a case with a known answer, and extraction without objects. The whole tiny-CLIP path on
SynthActions is tests/test_clip_path.py."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import regex
import torch

from cezsar.evaluation import clip_baseline, dataset_embedding, protocols
from cezsar.encoders.clip import CLIP_MEAN, CLIP_STD, clip_encoder, preprocess_frames
from cezsar.encoders.clip_tokenizer import N_MERGES, fetch_bpe, load_clip_tokenizer
from cezsar.formats.datasets import ClassDataset, Video
from cezsar.encoders.features import FeatureStore
from cezsar.encoders.objects import NO_LABELS
from cezsar.encoders.extraction import extract


# --- tokenizer --------------------------------------------------------------------------------------------
class _SimpleTokenizer:
    """CLIP's SimpleTokenizer.encode re-implemented on the merges file (the reference the built tokenizer is
    checked against; written from CLIP's definition, sharing no code with cezsar.encoders.clip_tokenizer)."""

    PAT = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                        regex.IGNORECASE)

    def __init__(self, bpe_gz: Path) -> None:
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        self.byte_encoder = {b: chr(c) for b, c in zip(bs, cs)}
        lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in lines]
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.ranks = dict(zip(merges, range(len(merges))))

    def _bpe(self, token: str) -> list[str]:
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            first, second = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if (first, second) not in self.ranks:
                break
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return list(word)

    def encode(self, text: str) -> list[int]:
        text = " ".join(text.split()).lower()
        ids = [self.encoder["<|startoftext|>"]]
        for token in self.PAT.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids += [self.encoder[t] for t in self._bpe(token)]
        return ids + [self.encoder["<|endoftext|>"]]


def test_the_built_tokenizer_gives_clips_ids():
    tok = load_clip_tokenizer()
    assert len(tok) == 49408 and N_MERGES == 48894
    assert tok.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"]) == [49406, 49407]
    # published ids (transformers' CLIP documentation example): "a photo of a cat" / "... dog"
    assert tok(["a photo of a cat", "a photo of a dog"]).input_ids == [[49406, 320, 1125, 539, 320, 2368, 49407],
                                                                         [49406, 320, 1125, 539, 320, 1929, 49407]]
    ref = _SimpleTokenizer(fetch_bpe())
    for text in ["Playing the violin", "a person doing a back-flip on a trampoline!", "apply eye makeup",
                 "He's juggling 3 balls", "café crème brûlée", "YoYo", "skateboarding   tricks\tin a park",
                 "an unbelievably uncharacteristic antidisestablishmentarianism"]:
        assert tok(text).input_ids == ref.encode(text), text


# --- preprocessing ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [224, 448, 32])  # a real CLIP's side, an upscale, the tiny model's side
def test_preprocessing_equals_clip_image_processor(size: int):
    from skimage.data import chelsea
    from transformers import CLIPImageProcessorPil  # the processor transformers uses without torchvision

    frame = chelsea()  # a real photograph, 300 x 451: landscape
    proc = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                 image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    for img in (frame, np.ascontiguousarray(frame.transpose(1, 0, 2))):  # and portrait
        ref = proc(images=[img], return_tensors="pt")["pixel_values"]  # (1, 3, S, S)
        ours = preprocess_frames(img[None], size, CLIP_MEAN, CLIP_STD)
        assert ours.shape == ref.shape == (1, 3, size, size)
        diff = (ours - ref).abs()
        # PIL resizes in uint8 (rounding), torch in float: within about one grey level
        assert diff.max().item() < 0.03 and diff.mean().item() < 0.006, (size, diff.max().item(), diff.mean().item())


def test_tiny_clip_loads_through_the_backbone_route(tiny_clip: Path):
    from cezsar.encoders.backbones import get_encoder

    enc = get_encoder(f"clip:{tiny_clip}")
    assert (enc.name, enc.dim, enc.label_space, enc.num_classes, enc.decode_size) == (f"clip:{tiny_clip}", 32,
                                                                                      NO_LABELS, 0, None)
    frames = np.random.default_rng(0).integers(0, 255, (3, 40, 60, 3), dtype=np.uint8)
    feats, logits = enc.encode(frames)
    assert feats.shape == (3, 32) and logits.shape == (3, 0) and np.isfinite(feats).all()
    # the image tower as transformers runs it, on our preprocessing: the same embeddings
    with torch.inference_mode():
        ref = enc.model.get_image_features(pixel_values=enc.preprocess(frames))
    ref = getattr(ref, "pooler_output", ref)
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-4, atol=1e-5)
    text = enc.encode_text(["a photo of a person juggling.", "x " * 200])  # the second cut to 77 tokens
    assert text.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="not by a weights file"):
        get_encoder(f"clip:{tiny_clip}", weights="x.npz")


# --- the frame-average baseline on a case with a known answer --------------------------------------------
class _Store:
    def __init__(self, stacks: dict[str, np.ndarray]) -> None:
        self.stacks, self.ids, self.dim, self.root = stacks, sorted(stacks), 3, "mem"

    def load(self, vid: str) -> np.ndarray:
        return self.stacks[vid]


class _Clip:
    """Text tower stand-in: a prompt's embedding is the axis named by the word in it."""
    dim, model_id, name = 3, "hand-made", "clip:hand-made"
    AXES = {"juggling": [1, 0, 0], "rowing": [0, 1, 0], "surfing": [0, 0, 1]}

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        self.seen += prompts
        return np.array([next(v for k, v in self.AXES.items() if k in p) for p in prompts], np.float32) * 5.0


def test_frame_average_1nn_on_a_hand_made_case():
    stacks = {
        "a": np.array([[2, 0.1, 0], [3, 0, 0.2]], np.float32),  # juggling
        # rowing in 2 of 3 seconds; the one surfing second has a huge norm: per-frame normalisation keeps it
        # one vote of three (an unnormalised mean would call this video surfing)
        "b": np.array([[0, 1, 0], [0, 1, 0.1], [0, 0, 40]], np.float32),
        "c": np.array([[0.1, 0, 1]], np.float32),  # surfing, one second
    }
    classes = ["juggling", "rowing", "surfing"]
    ds = ClassDataset("custom", classes, [Video("a", None, "juggling"), Video("b", None, "rowing"),
                                          Video("c", None, "surfing")], {}, {})
    desc = {"juggling": ["Someone juggling balls."], "rowing": ["People rowing a boat."],
            "surfing": ["A surfer surfing a wave."]}
    clip = _Clip()
    emb = dataset_embedding.embed_dataset(ds, _Store(stacks), desc, None, method="clip", clip=clip, prompts="names")
    assert clip.seen == ["a photo of a person juggling.", "a photo of a person rowing.", "a photo of a person surfing."]
    assert emb["scores"].argmax(1).tolist() == [0, 1, 2]
    unnormalised = np.stack([s.mean(0) for s in stacks.values()]) @ np.eye(3)
    assert unnormalised.argmax(1).tolist() == [0, 2, 2], "the case must tell the two averages apart"
    np.testing.assert_allclose(emb["videos"][1], clip_baseline.video_embedding(stacks["b"]))
    np.testing.assert_allclose(np.linalg.norm(emb["videos"], axis=1), 1.0, rtol=1e-5)
    res = protocols.run_evaluation(ds, _Store(stacks), desc, None, "0/all", method="clip", emb=emb, out_dir="/tmp")
    assert (res["variant"], res["top1_mean"], res["template"], res["clip_model"]) == (
        "CLIP-names", 1.0, clip_baseline.TEMPLATE, "hand-made")
    clip.seen.clear()
    emb = dataset_embedding.embed_dataset(ds, _Store(stacks), desc, None, method="clip", clip=clip,
                                          prompts="descriptions")
    assert clip.seen == [desc[c][0] for c in classes] and emb["settings"]["template"] is None
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        clip_baseline.prompts_for(classes, desc, "names", template="a photo")


# --- extraction without objects -------------------------------------------------------------------------
def test_clip_extraction_writes_no_objects_and_resumes(tiny_clip: Path, tmp_path: Path):
    import av

    from cezsar.config import ExtractConfig

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:  # 3 s of a wide (64 x 40) video: CLIP crops it, nothing squashes it
        s = out.add_stream("mpeg4", rate=2)
        s.width, s.height, s.pix_fmt = 64, 40, "yuv420p"
        for i in range(6):
            frame = np.full((40, 64, 3), 40 * i, np.uint8)
            for pk in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(pk)
        for pk in s.encode():
            out.mux(pk)
    enc = clip_encoder(f"clip:{tiny_clip}")
    out = tmp_path / "feats"
    rep = extract([Video("v1", path, "")], out, ExtractConfig(), encoder=enc, progress=False)
    assert rep["encoded"] == 1 and not (out / "objects").exists()
    meta = json.loads((out / "features.json").read_text())
    assert (meta["backbone"], meta["label_space"], meta["topk"], meta["dim"]) == (f"clip:{tiny_clip}", "none", 0, 32)
    store = FeatureStore(out)
    assert store.load("v1").shape == (3, 32) and not store.has_objects
    assert "no ImageNet head" in store.objects_off_reason
    again = extract([Video("v1", path, "")], out, ExtractConfig(), encoder=enc, progress=False)
    assert (again["reused"], again["encoded"]) == (1, 0)


# --- tables -----------------------------------------------------------------------------------------------
def test_tables_show_the_clip_rows_as_needing_weights_when_not_computed(tmp_path: Path):
    from cezsar.harness import report

    result = {"protocol": "0/all", "top1_mean": 0.5, "top1_std": None, "runs": [{}], "chance": 0.25}
    results = {"datasets": {k: {"methods": {"VE": {c: result for c in cols}}, "source": "here"}
                            for k, cols in (("ucf101", ("101", "50", "20")), ("kinetics400", ("400", "100", "25")))}}
    md = report.write_tables(results, tmp_path)
    for stem in ("table1", "table2"):
        lines = md[stem].splitlines()
        assert lines[-4].startswith("| CEZSAR (VE) | computed here |")  # the existing rows come first, unchanged
        for line, name in zip(lines[-3:], report.CLIP_ROW_NAMES.values()):
            assert line.startswith(f"| {name} | not computed |") and line.count("needs weights") == 3
            assert "set clip_model" in line
        assert (tmp_path / f"{stem}.csv").read_text().count("needs weights") == 9


def test_clip_features_take_objects_only_from_another_backbones_folder(tmp_path: Path, capsys):
    from cezsar.cli import main

    feats = tmp_path / "clip"
    feats.mkdir()
    (feats / "features.json").write_text(json.dumps({"backbone": "clip:m", "dim": 4, "label_space": "none",
                                                     "topk": 0, "image_size": 32}))
    np.save(feats / "v1.npy", np.ones((3, 4), np.float32))
    store = FeatureStore(feats)
    assert not store.has_objects and store.objects_off_reason.startswith("O off: clip:m features have no ImageNet")
    other = tmp_path / "objects_from_efficientnet"  # `cezsar objects` on another backbone's features of v1
    other.mkdir()
    (other / "objects.json").write_text(json.dumps({"label_space": "imagenet1k", "backbone": "efficientnet_lite0"}))
    np.savez(other / "v1.npz", indices=np.zeros((3, 5), np.int32), scores=np.zeros((3, 5), np.float16))
    store = FeatureStore(feats, other)
    assert store.has_objects and store.objects_off_reason is None and store.label_space == "imagenet1k"
    assert store.backbone == "clip:m" and store.objects("v1")[0].shape == (3, 5)
    # the commands that need an ImageNet head say why, as usage errors
    assert main(["objects", "--features", str(feats), "--out", str(tmp_path / "o")]) == 2
    assert "no ImageNet head" in capsys.readouterr().err
    assert main(["classify", str(feats / "v1.npy"), "--labels", "a, b", "--backbone", "clip:m"]) == 2
    assert "classify needs an ImageNet head" in capsys.readouterr().err
    assert main(["extract", "--dataset", "folder", "--root", str(tmp_path), "--out", str(tmp_path / "e"),
                 "--backbone", f"clip:{tmp_path / 'no-such-clip'}"]) == 2
    assert "cannot load this CLIP" in capsys.readouterr().err


def test_evaluate_results_of_the_clip_rows_go_to_their_table_columns():
    from cezsar.harness.report import add_clip_results

    def res(variant: str, protocol: str, backbone: str = "clip:m") -> dict:
        return {"dataset": "ucf101", "variant": variant, "protocol": protocol, "backbone": backbone, "top1_mean": 0.5,
                "top1_std": 0.1, "runs": [{}, {}], "chance": 0.125, "n_videos": 16, "n_dataset_videos": 16,
                "features": "f", "dataset_root": "r", "text_model": "t", "split_file": "s.json"}

    notebook = {"datasets": {"ucf101": {"source": "here", "methods": {"VE": {"101": res("VE", "0/all", "effnet"),
                                                                               "50": res("VE", "0/8", "effnet")}}}}}
    merged = add_clip_results(notebook, [res("CLIP-names", "0/8"), res("VE", "0/all")])
    methods = merged["datasets"]["ucf101"]["methods"]
    assert list(methods["CLIP-names"]) == ["50"] and list(methods["CLIP+VE"]) == ["101"]  # notebook 05's columns
    assert "VE" in methods and "CLIP-names" not in notebook["datasets"]["ucf101"]["methods"]  # input untouched
    alone = add_clip_results(None, [res("CLIP-descriptions", "0/20"), res("CLIP-descriptions", "0/all")])
    assert sorted(alone["datasets"]["ucf101"]["methods"]["CLIP-descriptions"]) == ["101", "20"]  # the paper's
    with pytest.raises(ValueError, match="only the CLIP rows"):
        add_clip_results(None, [res("VE", "0/all", "efficientnet_lite0")])
    with pytest.raises(ValueError, match="no column of Table 1"):
        add_clip_results(None, [res("CLIP-names", "split:ucf101_truezsl_splits")])
