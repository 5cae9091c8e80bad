"""The package's layers (docs/layout.md, issue 29): the import-linter contracts of pyproject.toml hold, and, read
from the source itself (function-level imports included): no import cycle, no import from a higher layer, no
import inside a function without a `# lazy:` comment saying why, no import of another module's private
name, no module over 400 lines."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cezsar"
MAX_LINES = 400  # DEVELOPERS.md: one concept per file, 50-400 lines


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[ast.stmt, str, bool]]:
    """(statement, imported cezsar module, inside a function) for every import statement of one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            out.append((node, target, id(node) in inner))
    return out


def unmarked(name: str, path: Path, known: set[str]) -> list[int]:
    """Lines of the in-function imports without a `# lazy:` comment: on the statement, on the line above it, or
    above the group of imports it belongs to."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, marked_until = [], -1
    for node in sorted({id(n): n for n, _, inner in imports(name, path, known) if inner}.values(),
                       key=lambda n: n.lineno):
        own = lines[node.lineno - 1:node.end_lineno]
        above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
        if any("# lazy:" in x for x in own) or above.startswith("# lazy:") or marked_until == node.lineno - 1:
            marked_until = node.end_lineno
        else:
            out.append(node.lineno)
    return out


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """The import graph between cezsar modules, and every in-function import that lacks its `# lazy:` comment."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    bare = []
    for name, path in mods.items():
        for _, target, _ in imports(name, path, set(mods)):
            if target in mods and target != name:
                edges[name].add(target)
        lines = path.read_text(encoding="utf-8").splitlines()
        bare += [f"{path.relative_to(ROOT)}:{i}: {lines[i - 1].strip()}" for i in unmarked(name, path, set(mods))]
    return edges, bare


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def layer_of() -> dict[str, tuple[int, str]]:
    """Top-level name under cezsar -> (its layer's rank, 0 = top; its name) from pyproject.toml's contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return {name.strip(): (rank, name.strip()) for rank, layer in enumerate(contract["layers"])
            for name in layer.split("|")}


def test_the_import_linter_contracts_hold():
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra (pip install -e .[dev])")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "layers KEPT" in out.stdout and "no cycles KEPT" in out.stdout, out.stdout[-2000:]


def test_no_import_cycle():
    edges, _ = graph()
    assert sum(len(v) for v in edges.values()) > 300  # the graph was read (every module imports some others)
    assert cycles(edges) == []


def test_no_module_imports_from_a_higher_layer():
    edges, _ = graph()
    layers = layer_of()
    place = {m: layers.get(m.split(".")[1]) for m in edges if m.count(".") >= 1}
    upward = [f"{a} -> {b}" for a, targets in edges.items() for b in targets
              if place.get(a) and place.get(b) and (place[b][0] < place[a][0]
                                                    or (place[b][0] == place[a][0] and place[b][1] != place[a][1]))]
    assert all(place.get(f"cezsar.{name}") for name in layers), "a layer in pyproject.toml names no module"
    assert upward == []


def test_every_function_level_import_says_why_it_is_lazy():
    _, unmarked = graph()
    assert unmarked == []


def private_imports(path: Path) -> list[str]:
    """`module.name` for every underscore name (not dunder) one module imports from another cezsar module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cezsar"):
            out += [f"{node.module}.{a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_no_module_imports_another_modules_private_name():
    """What one module uses of another is that module's public interface (issue 29): no `from cezsar.x import _y`."""
    found = {str(p.relative_to(ROOT)): names for p in modules().values() if (names := private_imports(p))}
    assert found == {}


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checks_see_a_violation(tmp_path):
    """The detectors themselves: a two-module cycle is found, and an unmarked in-function import is reported."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    src = tmp_path / "m.py"
    src.write_text("def f():\n    import json\n\n\ndef g():\n    # lazy: why\n    import json\n    import os\n")
    assert [(n.lineno, inner) for n, _, inner in imports("m", src, set())] == [(2, True), (7, True), (8, True)]
    assert unmarked("m", src, set()) == [2]  # g's group is covered by its comment, f's import is not
    src.write_text("from cezsar.errors import ExitCode, _hidden, __all__\nfrom os import _exit\n")
    assert private_imports(src) == ["cezsar.errors._hidden"]
