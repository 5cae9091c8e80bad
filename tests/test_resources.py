"""The offline resources, each loaded and run for real (no mocks here)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cezsar.encoders import resources


def test_minilm_ranks_a_paraphrase_far_above_an_unrelated_sentence():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resources.text_model_path("minilm"), device="cpu")
    a, b, c = model.encode(["a man is riding a horse", "a person rides a horse", "a chef slices tomatoes"],
                           normalize_embeddings=True)
    assert a.shape == (384,)
    assert float(a @ b) > float(a @ c) + 0.4


def test_wordnet_offset_lookup_gives_zebra():
    resources.ensure_wordnet()
    from nltk.corpus import wordnet

    syn = wordnet.synset_from_pos_and_offset("n", 2391049)
    assert syn.name() == "zebra.n.01"
    assert "striped" in syn.definition() and "equine" in syn.definition()
    assert wordnet.get_version() == "3.0"


def test_prepared_wordnet_has_lf_line_endings_and_is_not_group_writable():
    dest = resources.prepare_wordnet()
    noun = dest / "data.noun"
    assert b"\r\n" not in noun.read_bytes()[:200_000]
    assert not (noun.stat().st_mode & 0o020)


def _topk(logits: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-logits)[:k])


def test_efficientnet_recognises_real_photographs():
    from skimage import data

    from cezsar.encoders.backbones import get_encoder

    enc = get_encoder("efficientnet_lite0")
    cat_feats, cat_logits = enc.encode(_square(data.chelsea())[None])  # (1, H, W, 3): the encoder resizes
    _, cup_logits = enc.encode(_square(data.coffee())[None])
    assert cat_feats.shape == (1, 1280) and cat_logits.shape == (1, 1000)
    assert _topk(cat_logits[0], 1)[0] in range(281, 286)  # ImageNet 281-285: tabby ... Egyptian cat
    assert {967, 968} & set(_topk(cup_logits[0], 3))  # espresso, cup


def _square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    return np.ascontiguousarray(img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s])


@pytest.mark.slow
def test_doctor_json_reports_every_required_resource_ok():
    out = subprocess.run([sys.executable, "-m", "cezsar", "doctor", "--json"], capture_output=True, text=True,
                         timeout=600)
    report = json.loads(out.stdout)
    assert set(report) >= {"resources", "torch", "cuda"}
    required = {k: v for k, v in report["resources"].items() if v["required"]}
    assert set(required) == {"pyav", "minilm", "efficientnet_lite0", "wordnet"}
    assert all(v["ok"] for v in required.values()), required
    assert out.returncode == 0
    assert report["torch"].startswith("2.13.0")


def test_doctor_names_each_fix_once(monkeypatch):
    """A missing resource's own message already ends with its fix command; any other failure gets the table's."""
    from cezsar.commands import doctor
    from cezsar.errors import ResourceMissing

    def missing():
        raise ResourceMissing("parts not installed. Fix: pip install thing")

    def broken():
        raise ValueError("bad file")

    monkeypatch.setattr(doctor, "CHECKS", {"a": (missing, True, "pip install thing"), "b": (broken, False, "redo it")})
    res = doctor.doctor()["resources"]
    assert res["a"]["detail"] == "ResourceMissing: parts not installed. Fix: pip install thing"
    assert res["b"]["detail"] == "ValueError: bad file -- fix: redo it"
    # the real mpnet check, absent unless its extra is installed, says its fix once either way
    monkeypatch.undo()
    detail = doctor.doctor(include=("mpnet",))["resources"]["mpnet"]["detail"]
    assert detail.lower().count("fix:") <= 1
