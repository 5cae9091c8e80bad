"""Shared fixtures: where the real reference annotations live (skip when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# Under pytest-xdist (./run_tests.sh runs one worker per core) each worker and the processes its tests start get
# an equal share of the cores: OpenMP threads that outnumber the cores spin-wait on cores another worker holds.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_share))

from paper_fixture import REFERENCE as REFERENCE_DATA  # noqa: E402  (one place says where the reference data is)


# The files whose module fixtures run a whole pipeline go first: with one worker per core (--dist loadfile) the
# longest groups start at once instead of leaving one worker alone with them at the end.
_LONG_FIRST = ("test_paper_fixture.py", "test_notebooks.py")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """`../shared/reference-data` or $CEZSAR_REFERENCE_DATA (real annotation files); tests that need it skip when it
    is absent."""
    if not REFERENCE_DATA.is_dir():
        pytest.skip(f"reference data not present at {REFERENCE_DATA}")
    return REFERENCE_DATA


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits on a shared machine (and keeps CPU results stable)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A folder holding a tiny random CLIP (tests/tiny_clip.py) with CLIP's real tokenizer, built offline from
    the open-clip-torch wheel on PyPI (`cezsar setup` prepares it; here it is prepared if it is not yet)."""
    from tiny_clip import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """SynthActions at size "small", seed 0 (real rendered and encoded video), made once per session. Read only:
    a test that changes a file in it works on a copy (shutil.copytree)."""
    from cezsar.formats.synthetic import generate

    root = tmp_path_factory.mktemp("synth-small") / "raw"
    generate(root, seed=0, size="small", workers=1)
    return root
