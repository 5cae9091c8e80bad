"""Each released-code switch changes behaviour the way the released code does (docs/fidelity.md)."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from cezsar.config import ModelConfig
from cezsar.training.joint_embedder import JointEmbedder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(feat_dim=8, text_dim=6, d_model=16, n_heads=2, emb_dim=5, dropout=0.0, positional=False, max_len=16)


def _pair(**switches):
    """A paper model and a switched model with the same VEM weights (only the released head adds any)."""
    torch.manual_seed(0)
    paper = JointEmbedder(ModelConfig(**SMALL))
    torch.manual_seed(0)
    switched = JointEmbedder(ModelConfig(**SMALL, **switches))
    missing, unexpected = switched.vem.load_state_dict(paper.vem.state_dict(), strict=False)
    assert set(missing) <= {"out_norm.weight", "out_norm.bias"} and not unexpected  # released head's LayerNorm
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
        h = vem.layers[0](vem.proj(torch.relu(x)))
        ref = vem.out(torch.relu(h).mean(1))  # ReLU per time step, then the mean (issue 27)
        torch.testing.assert_close(rel.encode_video(x), ref)
        assert (ref < 0).any()  # no output ReLU
        torch.testing.assert_close(rel.encode_text(s), rel.sem.net[1](s))  # Linear only at test
        rel.train()  # dropout 0: deterministic; the LayerNorm is affine, at its initial weight 1 and bias 0
        torch.testing.assert_close(rel.encode_video(x), torch.nn.functional.layer_norm(ref, (5,)))
        torch.testing.assert_close(rel.encode_text(s), rel.sem.net(s))  # LayerNorm in training
    # the head switch adds only the released LayerNorm's weight and bias
    assert set(rel.vem.state_dict()) - set(paper.vem.state_dict()) == {"out_norm.weight", "out_norm.bias"}


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


def test_xavier_init_changes_the_weights_and_keeps_torchs_biases():
    torch.manual_seed(0)
    default = JointEmbedder(ModelConfig(**SMALL))
    torch.manual_seed(0)
    xavier = JointEmbedder(ModelConfig(**SMALL, xavier_init=True))
    w_d, w_x = default.vem.proj.weight, xavier.vem.proj.weight  # (16, 8)
    assert w_d.abs().max() <= 1 / np.sqrt(8) + 1e-6  # torch: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert not torch.equal(w_d, w_x)  # Xavier-normal (tests/test_released_transcriptions.py: the released init)
    torch.testing.assert_close(default.vem.proj.bias, xavier.vem.proj.bias)  # biases keep torch's init


# --- mining --------------------------------------------------------------------------------------
def _corpus_with_objects(monkeypatch, texts=None):
    """test_mining's clustered captions plus a fake object module: every window's objects are classes 0..2."""
    from test_mining import make_corpus

    from cezsar.triplet_mining import mine as mining

    captions, emb_fn = make_corpus(n_videos=10, seed=6)
    labels = [f"object {i}: a thing" for i in range(8)]
    texts = texts or labels
    vecs = {t: np.random.default_rng(i).normal(size=16) for i, t in enumerate(labels)}
    seen = []

    def window_objects(indices, scores, start, end, k):
        seen.append((start, end))
        return [int(i) for i in indices[int(start), :k]]

    monkeypatch.setattr(mining, "object_sentences", lambda space: labels)
    monkeypatch.setattr(mining, "window_objects", window_objects)
    monkeypatch.setattr(mining, "released_positive_texts", lambda space: texts)

    class Store:
        label_space = "imagenet1k"

        def objects(self, vid):
            idx = np.tile(np.arange(8, dtype=np.int32)[None, :3], (200, 1))
            return idx, np.ones_like(idx, dtype=np.float16)

    rng = np.random.default_rng(9)

    def both(sents):
        return np.stack([vecs[x] if x in vecs else (emb_fn([x])[0] if x.startswith("topic") else
                         vecs.setdefault(x, rng.normal(size=16))) for x in sents])

    return captions, both, Store(), seen


def test_triplet_level_split_is_leaky_and_video_split_is_not():
    from test_mining import make_corpus

    from cezsar.config import MiningConfig
    from cezsar.triplet_mining.mine import mine

    captions, emb_fn = make_corpus()
    for split, leaky in (("video", False), ("triplet", True)):
        ts = mine(captions, emb_fn, None, MiningConfig(split=split, val_fraction=0.3))
        both_sides = set(ts.video[ts.val]) & set(ts.video[~ts.val])
        assert bool(both_sides) == leaky
    assert abs(ts.val.mean() - 0.3) < 0.05


def test_released_draw_repeats_negatives_in_proportion_to_their_entries():
    from cezsar.config import MiningConfig
    from cezsar.formats.captions import Captions, Segment
    from cezsar.triplet_mining.mine import mine

    # one anchor; candidates "heavy" (captions 6 segments) and "light" (1 segment), both similar to the anchor
    segs = [Segment("a", 0, 5, "anchor")] + [Segment(f"h{i}", 0, 5, "heavy") for i in range(6)] + \
        [Segment("l", 0, 5, "light")]
    vec = {"anchor": [1.0, 0.0], "heavy": [0.9, 0.1], "light": [0.9, -0.1]}
    emb = lambda s: np.array([vec[x] for x in s], np.float32)  # noqa: E731
    caps = Captions(segs, {}, {}, {})
    cfg = MiningConfig(n_negatives=700, windows_per_segment=1, val_fraction=0.0)
    uniform = mine(caps, emb, None, cfg)
    first = uniform.pos == 0
    assert sorted(uniform.sentences[i] for i in uniform.neg[first]) == ["heavy", "light"]  # distinct, 2 admissible
    rel = mine(caps, emb, None, MiningConfig(**{**cfg.__dict__, "draw": "released"}))
    drawn = [rel.sentences[i] for i in rel.neg[rel.pos == 0]]
    assert len(drawn) == cfg.n_negatives and set(drawn) == {"heavy", "light"}  # with replacement
    assert 5.0 < drawn.count("heavy") / drawn.count("light") < 7.2  # weights 6 : 1


def test_far_from_all_and_object_tau_follow_the_papers_words(monkeypatch):
    from cezsar.config import MiningConfig
    from cezsar.triplet_mining.mine import mine

    captions, emb_fn, store, _ = _corpus_with_objects(monkeypatch)
    cfg = MiningConfig(n_negatives=3, tau=0.9, object_negatives=False, object_positives=2)
    base = mine(captions, emb_fn, store, cfg)
    far = mine(captions, emb_fn, store, MiningConfig(**{**cfg.__dict__, "far_from_all": True}))

    def unit(e):
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    def violations(ts):
        emb = unit(emb_fn(ts.sentences))
        pos_of = {}
        for seg, st, p in zip(ts.segment, ts.start, ts.pos):
            pos_of.setdefault((int(seg), float(st)), set()).add(int(p))
        bad = 0  # released rule + far_from_all (issue 27): similar to its own positive, far from the others
        for seg, st, p, n in zip(ts.segment, ts.start, ts.pos, ts.neg):
            window = pos_of[(int(seg), float(st))]
            bad += (emb[n] @ emb[p] <= 1 - 0.9 or n in window
                    or any(emb[n] @ emb[q] > 1 - 0.9 for q in window if q != p))
        return bad

    assert violations(base) > 0 and violations(far) == 0
    tight = mine(captions, emb_fn, store, MiningConfig(n_negatives=3, tau=0.5, object_tau=True, object_positives=2))
    loose = mine(captions, emb_fn, store, MiningConfig(n_negatives=3, tau=0.5, object_positives=2))
    emb = unit(emb_fn(tight.sentences))
    cap = {int(s): emb[i] for s, i in zip(tight.segment, tight.pos) if tight.sentences[i].startswith("topic")}
    obj = [(int(s), i) for s, i in zip(tight.segment, tight.pos) if tight.sentences[i].startswith("object")]
    assert all(emb[i] @ cap[s] > 0.5 for s, i in obj)  # every object positive passes the rule
    assert tight.summary["object_positives"] < loose.summary["object_positives"]


def test_released_object_positives_are_definition_fragments_of_the_10_s_from_int_start(monkeypatch):
    from cezsar.config import MiningConfig
    from cezsar.triplet_mining.mine import mine
    from cezsar.encoders.objects import definition_fragments

    texts = [f"thing {i}: a b c d e f g h. short one. " + " ".join(f"w{j}" for j in range(30)) for i in range(8)]
    assert definition_fragments(texts[0]) == ["thing 0: a b c d e f g h", " ".join(f"w{j}" for j in range(20))]
    captions, emb_fn, store, seen = _corpus_with_objects(monkeypatch, texts)
    ts = mine(captions, emb_fn, store, MiningConfig(n_negatives=2, released_objects=True, object_positives=2))
    frags = {f for t in texts[:3] for f in definition_fragments(t)}
    objs = {ts.sentences[p] for p in ts.pos if not ts.sentences[p].startswith("topic")}
    assert objs and objs <= frags
    assert all(float(s).is_integer() and e - s == 10.0 for s, e in seen)


# --- evaluation ----------------------------------------------------------------------------------
def test_std_ddof_0_is_the_population_std():
    from cezsar.evaluation.protocols import summarize

    runs = [{"top1": 0.5, "top5": 1.0}, {"top1": 0.7, "top5": 0.9}]
    assert summarize(runs)["top1_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    rel = summarize(runs, ddof=0)
    assert rel["top1_std"] == pytest.approx(0.1) and rel["std_ddof"] == 0


def test_released_descriptions_are_cleaned_and_closest_to_the_class_name():
    from cezsar.evaluation.dataset_embedding import clean_description, pick_released_descriptions

    # . , ! ? kept, spaced; other non-letters one space; "it's" expanded (issue 27: the released cleaning)
    assert clean_description("Apply Eye-Makeup: it's \"eyes\" (etc.)!") == "apply eye makeup it is eyes etc . !"
    vec = {"jump": [1.0, 0.0], "swim": [0.0, 1.0], "people swim in water .": [0.1, 1.0],
           "a jump , into the air !": [1.0, 0.2], "something else entirely .": [0.7, 0.7]}
    enc = lambda s: np.array([vec[x] for x in s], np.float32)  # noqa: E731
    got = pick_released_descriptions(["jump", "swim"], {"jump": ["Something else entirely.", "A jump, into the air!",
                                                                 "Too short."],
                                                        "swim": ["People swim in water."]}, enc)
    assert got == ["a jump , into the air !", "people swim in water ."]  # "Too short." (2 words) never encoded
    with pytest.raises(ValueError, match="'swim'"):
        pick_released_descriptions(["jump", "swim"], {"jump": ["A jump, into the air!"], "swim": ["Swimming."]}, enc)


def test_released_object_text_mean_over_16_padded_rows_and_one_joined_text():
    from cezsar.encoders.objects import released_object_text, released_video_objects, window_objects

    idx = np.array([[4, 1, 2]] * 20, np.int32)
    idx[16:] = [[9, 8, 7]]  # rows after the first 16 never count
    sc = np.tile(np.array([[0.5, 0.3, 0.1]], np.float16), (20, 1))
    assert released_video_objects(idx, sc, k=3) == [4, 1, 2]
    assert window_objects(idx, sc, 0, 20, k=3) == [4, 1, 9]  # here: the whole clip, summed
    texts = [f"t{i}" for i in range(10)]
    assert released_object_text([4, 1, 2], texts) == "t4 t1 t2"


# --- extraction ----------------------------------------------------------------------------------
def test_released_preprocessing_is_bgr_resize_and_centre_crop():
    from cezsar.encoders.backbones import FrameEncoder

    ident = torch.nn.Identity()
    kw = dict(dim=3, num_classes=3, label_space="imagenet1k", image_size=224, mean=(0.0,) * 3, std=(1.0,) * 3)
    paper = FrameEncoder("id", ident, ident, ident, **kw)
    rel = FrameEncoder("id", ident, ident, ident, **kw, preprocess="released")
    frames = np.zeros((1, 256, 512, 3), np.uint8)  # a wide frame: red left half, blue right half
    frames[0, :, :256, 0] = 255
    frames[0, :, 256:, 2] = 255
    frames[0, :, :16, 1] = 255  # a green strip at the left edge: a centre crop drops it
    p, r = paper.preprocess(frames)[0], rel.preprocess(frames)[0]  # (3, 224, 224)
    assert p.shape == r.shape == (3, 224, 224)
    assert p[1, :, :4].mean() > 0.5 and r[1].max() < 1e-3  # paper keeps the edge, released crops it away
    # resized to 256 x 512 (unchanged), cropped to the centre 224 columns 144..367: left half red, right blue
    assert r[2, :, :100].mean() > 0.99 and r[0, :, :100].max() < 1e-3  # red pixels arrive in channel 2 (BGR)
    assert r[0, :, 124:].mean() > 0.99
    with pytest.raises(ValueError, match="preprocessing"):
        FrameEncoder("id", ident, ident, ident, **kw, preprocess="bgr")


# --- the command line ----------------------------------------------------------------------------
def test_every_switch_has_a_flag_and_defaults_to_the_paper():
    from cezsar.cli import build_parser
    from cezsar.config import EvalConfig, MiningConfig, TrainConfig

    p = build_parser()
    base = ["--triplets", "t", "--features", "f", "--out", "o"]
    tr = p.parse_args(["train", *base])
    assert (tr.window, tr.released_padding, tr.released_attention, tr.released_head, tr.xavier_init, tr.fp32) == \
        ("paper", False, False, False, False, False)
    tr = p.parse_args(["train", *base, "--window", "released", "--captions", "c", "--released-padding",
                       "--released-attention", "--released-head", "--xavier-init", "--fp32", "--d-model", "1024",
                       "--dropout", "0.2", "--max-len", "16", "--released-validation"])
    assert tr.window == "released" and tr.fp32 and tr.d_model == 1024 and tr.max_len == 16 and tr.released_validation
    ev = p.parse_args(["evaluate", "--dataset", "ucf101", "--root", "r", "--features", "f", "--out", "o",
                       "--released-objects", "--released-descriptions", "--std-ddof", "0", "--released-sum"])
    assert ev.released_objects and ev.released_descriptions and ev.std_ddof == 0
    mi = p.parse_args(["mine", "--captions", "c", "--out", "o", "--split", "triplet", "--draw", "released",
                       "--released-objects", "--far-from-all", "--object-tau"])
    assert (mi.split, mi.draw, mi.released_objects, mi.far_from_all, mi.object_tau) == \
        ("triplet", "released", True, True, True)
    assert (MiningConfig().split, MiningConfig().draw, TrainConfig().window, TrainConfig().autocast,
            EvalConfig().std_ddof, EvalConfig().normalize_terms) == ("video", "uniform", "paper", True, 1, True)


# --- the parameter set ---------------------------------------------------------------------------
def test_released_yaml_turns_every_switch_on_and_matches_the_measured_variant():
    import yaml

    from cezsar.config import PROJ_ROOT, ExtractConfig
    from cezsar.harness.fidelity import RELEASED
    from cezsar.harness.params import CONFIG_KEYS as PARAM_KEYS, stage_configs as configs

    values = yaml.safe_load((PROJ_ROOT / "params" / "released.yaml").read_text())
    embedded = yaml.safe_load((PROJ_ROOT / "params" / "embedded.yaml").read_text())
    assert {k: values[k] for k in RELEASED} == RELEASED  # the measured "released" row is this file
    cfg = configs(values)
    assert cfg["model"].released_padding and cfg["model"].released_attention and cfg["model"].released_head
    assert cfg["mine"].released_objects and cfg["eval"].released_objects and not cfg["eval"].normalize_terms
    assert cfg["train"].window == "released" and not cfg["train"].autocast and cfg["eval"].std_ddof == 0
    assert ExtractConfig(released_preprocess=values["released_preprocess"]).released_preprocess
    paper = configs(embedded)  # the paper configuration sets none of them
    assert not paper["model"].released_padding and paper["train"].window == "paper" and paper["eval"].std_ddof == 1
    assert set(RELEASED) <= set(PARAM_KEYS)


def test_embed_dataset_released_objects_encodes_one_joined_text_per_video(monkeypatch):
    import cezsar.evaluation.dataset_embedding
    from cezsar.formats.datasets import ClassDataset, Video

    texts = [f"thing {i}: sense a. sense b" for i in range(10)]
    monkeypatch.setattr(cezsar.evaluation.dataset_embedding, "all_sense_texts", lambda label_space: texts)
    seen = []

    class Enc:
        dim = 6

        def encode(self, sentences):
            seen.extend(sentences)
            return np.stack([np.random.default_rng(sum(map(ord, s))).normal(size=6) for s in sentences]).astype(np.float32)

    class Store:
        ids, label_space = ["v0", "v1"], "imagenet1k"

        def load(self, vid):
            return np.ones((4, 8), np.float32)

        def objects(self, vid):
            idx = np.array([[5, 2, 7, 1]] * 4, np.int32) if vid == "v0" else np.array([[3, 4, 6, 9]] * 4, np.int32)
            return idx, np.tile(np.array([[0.4, 0.3, 0.2, 0.1]], np.float16), (4, 1))

    torch.manual_seed(0)
    model = JointEmbedder(ModelConfig(**{**SMALL, "positional": True})).eval()
    ds = ClassDataset("ucf101", ["a", "b"], [Video("v0", None, "a"), Video("v1", None, "b")], {}, {})
    emb = cezsar.evaluation.dataset_embedding.embed_dataset(ds, Store(), {"a": ["do a"], "b": ["do b"]}, Enc(),
                                                            model=model, released_objects=True)
    # top-3, joined, split on "." and joined again by spaces (the released ZSARDataset's text)
    assert "thing 5: sense a  sense b thing 2: sense a  sense b thing 7: sense a  sense b" in seen
    assert "thing 3: sense a  sense b thing 4: sense a  sense b thing 6: sense a  sense b" in seen
    assert emb["videos"].shape == (2, 5)


# --- validation (issue 27 part 4) ----------------------------------------------------------------
def test_released_validation_runs_in_train_mode_with_dropout_on(tmp_path):
    """training.py never called model.eval(): its validation loss had dropout on (and the LayerNorms)."""
    from test_train import TINY, make_toy

    from cezsar.config import FastPathConfig, TrainConfig
    from cezsar.training.train_inputs import prepare
    from cezsar.training.eager_step import evaluate

    trip, store, text = make_toy(tmp_path / "feats")
    cfg = ModelConfig(**{**TINY, "dropout": 0.5}, feat_dim=store.dim, text_dim=text.shape[1])
    data, _ = prepare(trip, store, text, cfg, FastPathConfig(), tmp_path / "cache", torch.device("cpu"))
    idx = np.arange(len(trip.video))
    torch.manual_seed(0)
    model = JointEmbedder(cfg)
    runs = {}
    for released in (False, True):
        losses = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            cfg_t = TrainConfig(released_validation=released)
            losses.append(evaluate(model, data, idx, cfg_t, torch.device("cpu"))["loss"])
        runs[released] = (losses, model.training)
    assert runs[False][0][0] == runs[False][0][1] and runs[False][1] is False  # eval mode: deterministic
    assert runs[True][0][0] != runs[True][0][1] and runs[True][1] is True  # train mode: dropout masks differ
