"""CLIP's BPE tokenizer, built offline from the merges file that the `open-clip-torch` wheel ships
(docs/decisions.md §14).

No model hub is reachable here, but PyPI is. The wheel is fetched with `pip download --no-deps` into the package
cache (never installed: its dependencies would pull torchvision), its `open_clip/bpe_simple_vocab_16e6.txt.gz`
is read, and CLIP's vocabulary is built from it the way CLIP defines it: the 256 byte-to-unicode symbols, the same
with `</w>`, the first 48,894 merges joined, then `<|startoftext|>` and `<|endoftext|>` (49,408 tokens). The
result is a folder that `transformers.CLIPTokenizer.from_pretrained` reads (vocab.json, merges.txt and the
tokenizer's own saved files).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from cezsar.config import cache_dir
from cezsar.errors import ResourceMissing

OPEN_CLIP_VERSION = "3.3.0"  # the wheel the merges file is read from (any version ships the same file)
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# the merges file's hash, the same file as OpenAI's CLIP repository: a different file is refused, not used
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
N_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges: 512 + 48,894 + 2 = 49,408 tokens
VOCAB_SIZE = 49408
SOT, EOT = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's map from the 256 byte values to printable unicode symbols (the BPE's base alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def read_merges(bpe_gz: str | Path) -> list[tuple[str, str]]:
    """The first `N_MERGES` merges of CLIP's bpe_simple_vocab_16e6.txt.gz (its first line is a header)."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:N_MERGES + 1]]
    bad = [m for m in merges if len(m) != 2]
    if len(merges) != N_MERGES or bad:
        raise ValueError(f"{bpe_gz}: not CLIP's merges file ({len(merges)} merges, {len(bad)} malformed)")
    return merges  # type: ignore[return-value]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's token -> id: byte symbols, byte symbols + `</w>`, merged pairs in rank order, then SOT and EOT."""
    base = list(bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m) for m in merges] + [SOT, EOT]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"CLIP vocabulary: {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab


def tokenizer_dir() -> Path:
    """Where the built tokenizer lives: `<cache>/models/clip-tokenizer`."""
    return cache_dir() / "models" / "clip-tokenizer"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_bpe(wheels: Path | None = None) -> Path:
    """The merges file, extracted from the `open-clip-torch` wheel (downloaded once, without its dependencies,
    into `<cache>/wheels`); ResourceMissing with the fix when PyPI cannot be reached."""
    wheels = wheels or cache_dir() / "wheels"
    out = wheels / "bpe_simple_vocab_16e6.txt.gz"
    if out.is_file() and _sha256(out) == BPE_SHA256:
        return out
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"open_clip_torch-{OPEN_CLIP_VERSION}-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-q", "-d", str(wheels), f"open-clip-torch=={OPEN_CLIP_VERSION}"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob(f"open_clip_torch-{OPEN_CLIP_VERSION}-*.whl"))
        if run.returncode != 0 or not found:
            tail = " ".join((run.stderr or run.stdout).split())[-300:]
            raise ResourceMissing(f"CLIP tokenizer: could not fetch the open-clip-torch wheel from PyPI ({tail}). "
                                  f"Fix: {' '.join(cmd[2:])} (with network), then cezsar setup --clip")
    with zipfile.ZipFile(found[0]) as zf:
        data = zf.read(BPE_MEMBER)
    if hashlib.sha256(data).hexdigest() != BPE_SHA256:
        raise ResourceMissing(f"{found[0]}: {BPE_MEMBER} is not CLIP's merges file (sha256 differs); delete the "
                              "wheel and run cezsar setup --clip again")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def prepare_clip_tokenizer(out: Path | None = None, bpe_gz: Path | None = None) -> Path:
    """Build (once) the folder of CLIP's tokenizer for `transformers.CLIPTokenizer.from_pretrained`."""
    out = out or tokenizer_dir()
    if (out / "vocab.json").is_file() and (out / "tokenizer_config.json").is_file():
        return out
    from transformers import CLIPTokenizer  # lazy: transformers takes seconds to import; `cezsar setup` needs it once

    merges = read_merges(bpe_gz or fetch_bpe())
    vocab = build_vocab(merges)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".clip-tokenizer.", dir=out.parent))
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                    encoding="utf-8")
    # read back through the files (the route every transformers version takes), then saved in its own format
    tok = CLIPTokenizer.from_pretrained(str(tmp), model_max_length=77)
    tok.save_pretrained(str(tmp))  # tokenizer.json + tokenizer_config.json beside vocab.json and merges.txt
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def load_clip_tokenizer(folder: str | Path | None = None):
    """`transformers.CLIPTokenizer` from a folder (default: the one built here, prepared on first use)."""
    from transformers import CLIPTokenizer  # lazy: transformers takes seconds to import, and only CLIP needs it

    return CLIPTokenizer.from_pretrained(str(folder or prepare_clip_tokenizer()))
