"""What machine and software made a run: the record results.json keeps and the "Computed on" lines show.

`record()` reads the Python version, the versions of the packages that move numbers (torch, numpy, transformers,
sentence-transformers, av, scikit-learn), the CPU model, torch's BLAS and thread count, the device, and whether
the installed packages are exactly a lock file's (locks/cpu.txt or locks/cuda.txt, README "A locked
environment"). `short()` is its one-line form; `differences()` lists what two records disagree on, which
`cezsar verify` names when a stage diverges (docs/interfaces.md).
"""
from __future__ import annotations

import hashlib
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from cezsar import config

if TYPE_CHECKING:  # the annotation only: torch is imported where a record is taken
    import torch

PACKAGES = ("torch", "numpy", "transformers", "sentence-transformers", "av", "scikit-learn")
LOCKS = ("locks/cpu.txt", "locks/cuda.txt")
# fields compared by `differences`, in the order a reader checks them (packages follow, one by one)
FIELDS = ("python", "cpu", "cpu_capability", "cpu_flags", "blas", "cpu_products", "threads", "device", "lock")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path) -> dict[str, str]:
    """The `name==version` pins of a pip-compile lock file (names normalised, comments and options skipped)."""
    pins: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            pins[_norm(name.split("[")[0])] = version.split(";")[0].strip()
    return pins


def _installed() -> dict[str, str]:
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out[_norm(name)] = dist.version
    return out


def _mismatches(pins: dict[str, str], have: dict[str, str]) -> list[tuple[str, str | None, str]]:
    """(name, installed version or None, pinned version) for each pin not installed at exactly its version string,
    by name."""
    return [(n, have.get(n), v) for n, v in sorted(pins.items()) if have.get(n) != v]


def builds_to_replace(lock: str | Path, installed: dict[str, str] | None = None) -> list[str]:
    """`name===version` for each pin of `lock` installed at another version string. pip takes `torch==2.13.0` as
    met by an installed 2.13.0+cpu (PEP 440 ignores the local label), so switching a set-up from locks/cpu.txt to
    locks/cuda.txt would keep the CPU build; `===` asks for exactly the lock's build (the set-up force-reinstalls
    these). Pins not installed at all are pip's own error, not listed here."""
    have = _installed() if installed is None else {_norm(k): v for k, v in installed.items()}
    return [f"{n}==={v}" for n, got, v in _mismatches(read_lock(lock), have) if got is not None]


def lock_status(root: Path | None = None) -> dict:
    """Which lock file the installed packages match: {"file", "sha256", "differs"} for the closest lock, where
    "differs" lists `name installed (lock version)` for every pin not installed at its version (empty: exact)."""
    root = root or config.PROJ_ROOT
    have = _installed()
    best: dict = {"file": None, "sha256": None, "differs": ["no lock file found"]}
    for rel in LOCKS:
        path = root / rel
        if not path.is_file():
            continue
        pins = read_lock(path)
        differs = [f"{n} {got or 'missing'} (lock {v})" for n, got, v in _mismatches(pins, have)]
        if best["file"] is None or len(differs) < len(best["differs"]):
            best = {"file": rel, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "differs": differs}
    return best


def _cpuinfo(field: str) -> str | None:
    """The first `field` line of /proc/cpuinfo (e.g. "model name", "flags"); None where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


# the vector instruction sets whose presence changes which float kernels MKL, oneDNN and ATen pick
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def _cpu_flags() -> list[str]:
    """The VECTOR_FLAGS this CPU has (from /proc/cpuinfo; empty where it cannot be read)."""
    have = set((_cpuinfo("flags") or "").split())
    return [f for f in VECTOR_FLAGS if f in have]


def _blas(config_text: str) -> str:
    """torch's BLAS as its build configuration names it (e.g. "mkl", "open"), with MKL-DNN when built in."""
    found = re.search(r"BLAS_INFO=([^,\s]+)", config_text)
    blas = found.group(1) if found else "unknown"
    return blas + (" + mkldnn" if "USE_MKLDNN=ON" in config_text or "USE_MKLDNN=1" in config_text else "")


def _device(device: str | None) -> str:
    import torch  # lazy: torch, only when the record is taken (the CLI's verify reads records without it)

    from cezsar.base.devices import resolve_device  # lazy: imports torch, as above

    try:
        dev = resolve_device(device or "auto")
    except RuntimeError:
        return f"{device} (unavailable)"
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)


def kernel_family(device: torch.device) -> str:
    """What decides which float kernels training runs on `device`: the CPU's vector capability torch picked (e.g.
    "cpu AVX512", "cpu AVX2"), or the GPU's name. Two machines of one family give the same trained weights for a
    seed; across families training parts from the first epoch (benchmarks/RESULTS.md, the second and third machines)."""
    import torch  # lazy: torch, only when asked (the CLI's verify reads records without it)

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} {torch.backends.cpu.get_cpu_capability()}"


# the fields of a record that decide a CPU training's bits (`training_kernels`)
TRAINING_KERNELS = ("device", "cpu_capability", "cpu_products")


def training_kernels(rec: dict | None) -> tuple:
    """`kernel_family` read from a record, with the product library CPU training used: the GPU (its device line names
    it), else the CPU's vector capability and `cpu_products`. () for a missing record. Two runs with the same
    kernels train the same bits (`cezsar.harness.references` picks a reference by them)."""
    if not rec:
        return ()
    if str(rec.get("device", "")).startswith("cuda"):
        return (rec["device"],)
    return tuple(rec.get(k) for k in TRAINING_KERNELS)


def record(device: str | None = None) -> dict:
    """This process's environment (results.json "environment"): python, packages, cpu, blas, the product CPU training
    uses (`devices.cpu_products`), threads, device, lock."""
    import torch  # lazy: torch, only when the record is taken (the CLI's verify reads records without it)

    from cezsar.base.devices import cpu_products  # lazy: imports torch, as above

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    lock = lock_status()
    # two CPUs sold under one model name can differ in vector units; torch then runs other kernels, whose
    # float sums round differently (benchmarks/RESULTS.md, "The embedded run on a second machine")
    return {"python": platform.python_version(), "packages": versions, "cpu": _cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_flags": _cpu_flags(),
            "blas": _blas(torch.__config__.show()), "cpu_products": cpu_products(),
            "threads": torch.get_num_threads(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "device": _device(device), "platform": platform.platform(),
            "lock": {"file": lock["file"], "sha256": lock["sha256"], "exact": not lock["differs"],
                     "differs": lock["differs"]}}


def short(rec: dict | None) -> str:
    """One line for a "Computed on" cell: Python, torch, numpy, CPU (BLAS, threads), device and the lock; the other
    packages are the lock's when it is exact, else their count of differences says so."""
    if not rec:
        return "environment not recorded"
    pk = rec.get("packages", {})
    lock = rec.get("lock") or {}
    if lock.get("file"):
        n = len(lock.get("differs", []))
        state = "exact" if lock.get("exact") else f"{n} package{' differs' if n == 1 else 's differ'}"
        lock_text = f"lock {Path(lock['file']).name} ({state})"
    else:
        lock_text = "no lock"
    return (f"Python {rec.get('python')}, torch {pk.get('torch')}, numpy {pk.get('numpy')}; {rec.get('cpu')} "
            f"({rec.get('blas')}, {rec.get('threads')} threads); {rec.get('device')}; {lock_text}")


def differences(ours: dict | None, theirs: dict | None) -> list[str]:
    """What two records disagree on, one `field: ours vs theirs` line each (packages by name); lock files are
    compared by their hash. An absent record is one line saying so."""
    if not ours or not theirs:
        return ["no environment recorded on " + ("this side" if not ours else "the reference side")]
    out = []
    pa, pb = ours.get("packages", {}), theirs.get("packages", {})
    for name in sorted(set(pa) | set(pb)):
        if pa.get(name) != pb.get(name):
            out.append(f"{name}: {pa.get(name)} vs {pb.get(name)}")
    for key in FIELDS:
        a, b = ours.get(key), theirs.get(key)
        if key == "lock":
            a = (a or {}).get("sha256"), (a or {}).get("exact")
            b = (b or {}).get("sha256"), (b or {}).get("exact")
            if a != b:
                out.append(f"lock: {_lock_text(ours)} vs {_lock_text(theirs)}")
        elif a != b:
            out.append(f"{key}: {a} vs {b}")
    return out


def _lock_text(rec: dict) -> str:
    lock = rec.get("lock") or {}
    if not lock.get("file"):
        return "no lock"
    return f"{lock['file']} {str(lock.get('sha256'))[:12]} ({'exact' if lock.get('exact') else 'not exact'})"
