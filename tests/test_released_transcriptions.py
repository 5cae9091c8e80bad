"""Each released-code switch against a small transcription of the released computation (issue 27, part 3).

Every `_released_*` function below restates, in a few plain lines, what the authors' released code computes
(its file is named in the docstring); each test runs it and the package's switch on the same small real inputs
and compares the results. docs/fidelity.md lists the switches.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cezsar.config import MiningConfig, ModelConfig
from cezsar.training.joint_embedder import JointEmbedder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(feat_dim=8, text_dim=6, d_model=16, n_heads=2, emb_dim=5, positional=False, max_len=16)


# --- model.py: initialisation -------------------------------------------------------------------
def _released_init(model: nn.Module) -> None:
    """model.py, JointEmbeddingModel.__init__: xavier_normal_ on every parameter with more than one dim."""
    for p in model.parameters():
        if p.dim() > 1:
            nn.init.xavier_normal_(p)


def test_xavier_init_is_the_released_xavier_normal():
    cfg = dict(SMALL, dropout=0.0, released_head=True, released_sem=True)
    torch.manual_seed(0)
    ours = JointEmbedder(ModelConfig(**cfg, xavier_init=True))
    torch.manual_seed(0)
    ref = JointEmbedder(ModelConfig(**cfg))  # torch's init drawn in the same order, then the released one
    _released_init(ref)
    for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    torch.manual_seed(0)
    uniform = JointEmbedder(ModelConfig(**cfg))
    for p in uniform.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    assert not torch.equal(ours.vem.proj.weight, uniform.vem.proj.weight)  # the other variant would differ


# --- model.py: the VEM head and the SEM ---------------------------------------------------------
class _ReleasedJoint(nn.Module):
    """model.py: VisualEmbedding (ReLU -> Linear -> Dropout -> encoder -> Dropout -> ReLU -> Linear -> mean over
    time), SentenceEmbedding (Dropout -> Linear), JointEmbeddingModel (an nn.LayerNorm(joint_emb_dim), affine,
    on each output). The released evaluation (zsardataset.py) calls the two embedders alone: no LayerNorm.
    The encoder layer is the package's own (its attention layout is the separate `released_attention` switch)."""

    def __init__(self, layer: nn.Module, feat: int, d: int, text: int, emb: int, p: float) -> None:
        super().__init__()
        self.visual_dim_reducing, self.layer = nn.Linear(feat, d), layer
        self.video_joint_embedding = nn.Linear(d, emb)
        self.sentence_joint_embedding = nn.Linear(text, emb)
        self.norm_vid, self.norm_sent = nn.LayerNorm(emb), nn.LayerNorm(emb)
        self.p = p

    def video(self, x: torch.Tensor, joint: bool) -> torch.Tensor:
        v = self.visual_dim_reducing(F.relu(x))
        v = F.dropout(v, self.p, self.training)
        v = self.layer(v, src_key_padding_mask=torch.zeros(x.shape[:2], dtype=torch.bool))
        v = F.dropout(v, self.p, self.training)
        v = self.video_joint_embedding(F.relu(v))
        v = torch.mean(v, 1)
        return self.norm_vid(v) if joint else v

    def text(self, s: torch.Tensor, joint: bool) -> torch.Tensor:
        t = self.sentence_joint_embedding(F.dropout(s, self.p, self.training))
        return self.norm_sent(t) if joint else t


def _twins(p: float) -> tuple[JointEmbedder, _ReleasedJoint]:
    torch.manual_seed(0)
    ours = JointEmbedder(ModelConfig(**SMALL, dropout=p, released_head=True, released_sem=True))
    ref = _ReleasedJoint(ours.vem.layers[0], 8, 16, 6, 5, p)
    with torch.no_grad():  # non-trivial LayerNorm weights: the affine part must be there and be used
        for ln in (ref.norm_vid, ref.norm_sent):
            ln.weight.uniform_(0.5, 2.0)
            ln.bias.uniform_(-1.0, 1.0)
    ours.vem.proj.load_state_dict(ref.visual_dim_reducing.state_dict())
    ours.vem.out.load_state_dict(ref.video_joint_embedding.state_dict())
    ours.vem.out_norm.load_state_dict(ref.norm_vid.state_dict())  # fails if our LayerNorm had no weight/bias
    ours.sem.net[1].load_state_dict(ref.sentence_joint_embedding.state_dict())
    ours.sem.net[2].load_state_dict(ref.norm_sent.state_dict())
    return ours, ref


def test_released_head_and_sem_equal_the_released_modules_at_test_and_in_training():
    ours, ref = _twins(0.3)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(3, 7, 8)).astype(np.float32))
    s = torch.randn(4, 6)
    with torch.no_grad():
        ours.eval(), ref.eval()  # the released test path: no dropout, no LayerNorm
        torch.testing.assert_close(ours.encode_video(x), ref.video(x, joint=False))
        torch.testing.assert_close(ours.encode_text(s), ref.text(s, joint=False))
        mask = torch.ones(3, 7, dtype=torch.bool)
        torch.testing.assert_close(ours.encode_video_packed(x.reshape(-1, 8), mask), ref.video(x, joint=False))
        ours.train(), ref.train()  # training: both dropouts where the released code has them, LayerNorm on
        for seed in range(3):
            torch.manual_seed(seed)
            got = ours.encode_video(x)
            torch.manual_seed(seed)
            torch.testing.assert_close(got, ref.video(x, joint=True))
            torch.manual_seed(seed)
            got = ours.encode_text(s)
            torch.manual_seed(seed)
            torch.testing.assert_close(got, ref.text(s, joint=True))
    # the order matters: ReLU per time step, then the mean (the old ReLU-after-the-mean head differs)
    with torch.no_grad():
        ours.eval()
        h = ours.vem.layers[0](ours.vem.proj(F.relu(x)))
        assert not torch.allclose(ours.encode_video(x), ours.vem.out(F.relu(h.mean(1))), atol=1e-4)


# --- training.py / acnetdataset.py: the visual input --------------------------------------------
def _released_rows(start: float, end: float, n_rows: int, input_len: int = 16) -> list[int]:
    """acnetdataset.py: features[int(start):int(end), :] of the segment's timestamps, then [0:input_len]."""
    return list(range(n_rows))[int(start):int(end)][:input_len]


def test_released_window_takes_the_rows_the_released_loader_sliced():
    from cezsar.training.featurebank import window_index
    from cezsar.training.train_inputs import visual_windows

    bounds = np.array([[3.7, 25.2], [0.4, 9.9], [12.0, 14.5], [5.99, 6.5], [30.2, 60.0], [7.5, 23.999]])
    n_rows = 40
    trip = types.SimpleNamespace(segment=np.arange(len(bounds)), start=np.zeros(len(bounds), np.float32),
                                 end=np.ones(len(bounds), np.float32))
    rel = visual_windows(trip, "released", bounds)
    offsets = np.array([0, n_rows])
    rows, mask, win, _ = window_index(np.zeros(len(bounds), np.int64), rel.start, rel.end, offsets, 16)
    for i, (a, b) in enumerate(bounds):
        assert rows[win[i]][mask[win[i]]].tolist() == _released_rows(a, b, n_rows), (a, b)


# --- hardsampling.py: the negatives -------------------------------------------------------------
def _corpus(monkeypatch):
    from test_fidelity_switches import _corpus_with_objects

    captions, emb_fn, store, _ = _corpus_with_objects(monkeypatch)
    return captions, emb_fn, store


def _unit(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=-1, keepdims=True)


def _windows(ts) -> dict:
    """(segment, window start) -> the window's positive sentence ids, from a set where every positive has
    negatives (tau 2: every other sentence is admissible)."""
    out: dict = {}
    for seg, st, p in zip(ts.segment, ts.start, ts.pos):
        out.setdefault((int(seg), float(st)), set()).add(int(p))
    return out


def _reference_far(ts_all, emb: np.ndarray, captions, rule: str, tau: float) -> dict:
    """The paper's words on top of the rule: per (window, positive), candidates that pass the rule against the
    positive (released: cos > 1 - tau; "different": cos <= 1 - tau), are none of the window's positives, and
    are far (cos <= 1 - tau, paper §3.4's "not similar") from each other positive of the window."""
    out = {}
    seg_caption = {i: s.sentence for i, s in enumerate(captions.segments)}
    for (seg, st), pos in _windows(ts_all).items():
        for p in pos:
            ok = set()
            for c in range(len(ts_all.sentences)):
                cos = float(emb[p] @ emb[c])
                own = cos > 1 - tau if rule == "released" else cos <= 1 - tau
                others = all(float(emb[q] @ emb[c]) <= 1 - tau for q in pos if q != p)
                if own and others and c not in pos and ts_all.sentences[c] != seg_caption[seg]:
                    ok.add(c)
            out[(seg, st, p)] = ok
    return out


@pytest.mark.parametrize("rule", ["released", "different"])
def test_far_from_all_means_far_from_the_windows_other_positives_under_each_rule(monkeypatch, rule):
    from cezsar.triplet_mining.mine import mine

    captions, emb_fn, store = _corpus(monkeypatch)
    tau = 0.9 if rule == "released" else 0.3
    cfg = MiningConfig(n_negatives=10_000, tau=tau, rule=rule, val_fraction=0.0, object_positives=2)
    ts_all = mine(captions, emb_fn, store, MiningConfig(**{**cfg.__dict__, "tau": 2.0, "rule": "released"}))
    far = mine(captions, emb_fn, store, MiningConfig(**{**cfg.__dict__, "far_from_all": True}))
    near = mine(captions, emb_fn, store, cfg)
    assert far.sentences == ts_all.sentences
    emb = _unit(emb_fn(ts_all.sentences))
    ref = _reference_far(ts_all, emb, captions, rule, tau)
    got: dict = {}
    for seg, st, p, n in zip(far.segment, far.start, far.pos, far.neg):
        got.setdefault((int(seg), float(st), int(p)), set()).add(int(n))
    assert got and got == {k: v for k, v in ref.items() if v}  # every unit: exactly the reference set
    assert len(far) < len(near)  # the switch removes negatives the rule alone admits


def _released_draw_probabilities(ts_all, emb: np.ndarray, p: int, tau: float) -> dict:
    """hardsampling.py, hardmining: the list of entries is the positives, one per (window, positive sentence)
    (pairing_data: 3 windows per segment; filtering_positive_descriptions: the caption and its 2 object
    sentences each); for a positive it draws random entries until one has 0 < cosine distance < tau. The
    accepted entries are equally likely, so a sentence's probability is its share of the accepted entries."""
    accepted: dict[int, int] = {}
    for e in ts_all.pos:  # one triplet per (window, positive) in ts_all: the entries themselves
        dist = 1.0 - float(emb[p] @ emb[e])
        if e != p and 0.0 < dist < tau:
            accepted[int(e)] = accepted.get(int(e), 0) + 1
    total = sum(accepted.values())
    return {e: k / total for e, k in accepted.items()}


def test_released_draw_weights_are_the_released_list_of_positive_entries(monkeypatch):
    from cezsar.triplet_mining.mine import mine

    captions, emb_fn, store = _corpus(monkeypatch)
    cfg = MiningConfig(n_negatives=4000, tau=0.8, val_fraction=0.0, draw="released", object_positives=2)
    ts_all = mine(captions, emb_fn, store, MiningConfig(n_negatives=1, tau=2.0, val_fraction=0.0, object_positives=2))
    assert len(ts_all) == ts_all.summary["positives"]  # one triplet per (window, positive): the entry list
    rel = mine(captions, emb_fn, store, cfg)
    emb = _unit(emb_fn(ts_all.sentences))
    caption_units = [(int(s), float(st), int(p)) for s, st, p in zip(rel.segment, rel.start, rel.pos)
                     if rel.sentences[p] == captions.segments[int(s)].sentence]
    key = caption_units[0]
    drawn = rel.neg[(rel.segment == key[0]) & (rel.start == np.float32(key[1])) & (rel.pos == key[2])]
    assert len(drawn) == cfg.n_negatives
    want = _released_draw_probabilities(ts_all, emb, key[2], 0.8)
    seen = np.bincount(drawn, minlength=len(rel.sentences)) / len(drawn)
    assert set(np.flatnonzero(seen)) <= set(want)  # nothing outside the released pool
    tv = 0.5 * sum(abs(seen[e] - want.get(e, 0.0)) for e in range(len(rel.sentences)))
    assert tv < 0.05, tv  # sampling noise at 4000 draws is about 0.02


# --- objects.py / zsardataset.py / hardsampling.py: the object texts ----------------------------
def _get_word_net_definition(words: list[str]) -> str:
    """hardsampling.py / objects.py / dataset.py: every sense of every word, "definition . " each."""
    from nltk.corpus import wordnet

    out = ""
    for word in words:
        for item in wordnet.synsets(word):
            out += f"{item.definition()} . "
    return out


def _released_line(wnid: str) -> str:
    """A line of the released imagenet21k_wordnet_lemmas.txt: the synset's lemma names joined by ", " (checked
    equal for all 21,843 classes against the released file when this test was written)."""
    from nltk.corpus import wordnet

    return ", ".join(wordnet.synset_from_pos_and_offset("n", int(wnid[1:])).lemma_names())


def _released_eval_text(lines: list[str]) -> str:
    """objects.py (description = name with spaces + definitions) and zsardataset.py load_logit_data +
    encode_video (name + " " + description per object, joined, split on ".", pieces cut to 300 words, joined)."""
    descs = [o.replace("_", " ") + " " + _get_word_net_definition(o.replace(" ", "").split(",")) for o in lines]
    sent = " ".join(o + " " + d for o, d in zip(lines, descs))
    return " ".join(" ".join(piece.split(" ")[0:300]) for piece in sent.split("."))


def _released_pieces(line: str) -> set[str]:
    """hardsampling.py: description = line + " " + definitions; the name and the description, lower-cased,
    split on "."; pieces of more than 5 words cut to 20; a set."""
    desc = line + " " + _get_word_net_definition(line.replace(" ", "").split(","))
    out = set()
    for text in (line.lower(), desc.lower()):
        for s in text.split("."):
            words = s.strip().split(" ")
            if len(words) > 5:
                out.add(" ".join(words[0:20]))
    return out


def test_released_object_texts_use_every_sense_of_every_lemma_of_the_synset():
    from cezsar.encoders.objects import (all_sense_texts, definition_fragments, imagenet_wnids, released_object_text,
                                released_positive_texts)
    from cezsar.encoders.resources import ensure_wordnet

    ensure_wordnet()
    wnids = imagenet_wnids("imagenet1k")
    lines = {i: _released_line(w) for i, w in enumerate(wnids)}
    several = [i for i, ln in lines.items() if ln.count(",") >= 2][:5]  # classes with three or more lemmas
    assert len(several) == 5
    texts, sources = all_sense_texts("imagenet1k"), released_positive_texts("imagenet1k")
    assert released_object_text(several[:3], texts) == _released_eval_text([lines[i] for i in several[:3]])
    for i in several:
        assert set(definition_fragments(sources[i])) == _released_pieces(lines[i]), lines[i]
    first_only = _get_word_net_definition([lines[several[0]].split(", ")[0]])
    assert _get_word_net_definition(lines[several[0]].replace(" ", "").split(",")) != first_only


# --- dataset.py: the class descriptions ---------------------------------------------------------
def _released_sentences(lines: list[str], min_len: int = 3, max_len: int = 300) -> list[str]:
    """dataset.py, load_class_sentences with zsar.py's min_len=3, max_len=300 (one given sentence per line, so
    nltk's sent_tokenize, which needs the punkt data, is left out): lower, strip, contractions.fix, at least
    min_len words, preprocess_sentence, cut to max_len words."""
    import re
    import unicodedata

    import contractions

    def preprocess_sentence(w: str) -> str:
        w = "".join(c for c in unicodedata.normalize("NFD", w.lower().strip()) if unicodedata.category(c) != "Mn")
        w = re.sub(r"([?.!,¿])", r" \1 ", w)
        w = re.sub(r'[" "]+', " ", w)
        w = re.sub(r"[^a-zA-Z?.!,¿]+", " ", w)
        return w.strip()

    out = []
    for line in lines:
        i = contractions.fix(line.lower().strip())
        if len(i.split(" ")) >= min_len:
            out.append(" ".join(preprocess_sentence(i).split(" ")[:max_len]))
    return out


def test_released_descriptions_clean_as_the_released_load_class_sentences():
    from cezsar.config import PROJ_ROOT
    from cezsar.formats.datasets import read_descriptions
    from cezsar.evaluation.dataset_embedding import clean_description, pick_released_descriptions

    desc = read_descriptions(PROJ_ROOT / "data" / "descriptions" / "kinetics400.json")
    lines = [s for sents in desc.values() for s in sents]
    lines += ["Café-au-lait: it's the person's “best” drink; don't spill it!", "Two words.",
              "Rock 'n' roll, 1950s?"]
    ours = [clean_description(x) for x in lines if x != "Two words."]  # the released code drops < 3 words
    assert ours == _released_sentences(lines)
    assert any("build a she would" in x for x in ours)  # the contractions package's reading of "shed", as released
    names = ["building shed", "braiding hair"]
    enc = lambda s: np.stack([np.random.default_rng(len(x)).normal(size=8) for x in s])  # noqa: E731
    picked = pick_released_descriptions(names, {c: desc[c] for c in names}, enc)
    assert all(p in _released_sentences(desc[c]) for p, c in zip(picked, names))


# --- hardsampling.py: where an object window starts ---------------------------------------------
def _released_start_support(start: float, end: float, input_len: int = 10) -> list[int]:
    """hardsampling.py, pairing_data: start, end = int(ts[0]), int(ts[1]) (swapped if reversed); if
    end - input_len > start, start = random.randint(start, end - input_len) (each value equally likely)."""
    a, b = int(start), int(end)
    if a > b:
        a, b = b, a
    return list(range(a, b - input_len + 1)) if b - input_len > a else [a]


def test_released_object_windows_start_at_a_whole_second_drawn_as_released():
    from cezsar.triplet_mining.rules import released_starts

    segs = np.array([[3.7, 25.2], [3.9, 14.1], [2.5, 8.0], [40.0, 51.0], [12.6, 9.2]])
    got = released_starts(segs[:, 0], segs[:, 1], 20_000, 10.0, np.random.default_rng(0))  # (S, 20000)
    for (a, b), row in zip(segs, got):
        support = _released_start_support(a, b)
        values, counts = np.unique(row, return_counts=True)
        assert values.tolist() == support, (a, b)
        assert np.abs(counts / len(row) - 1 / len(support)).max() < 0.015  # uniform (noise ~0.003)
