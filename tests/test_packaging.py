"""The two README commands and the declared dependencies stay consistent."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_has_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {r.strip() for r in project["dependencies"]} | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pip = {p for p in pip if not p.startswith("-e")}
    assert {_name(p) for p in pip} == {_name(d) for d in declared}
    # pins must agree exactly (torch above all: unpinned it pulls a multi-GB CUDA build)
    assert {p for p in pip if "==" in p} == {d.split("  ")[0] for d in declared if "==" in d}
    assert "torch==2.13.0" in pip


def test_console_script_and_module_entry_point_agree():
    out = subprocess.run([sys.executable, "-m", "cezsar", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for cmd in ("doctor", "setup", "synth", "check-data", "extract", "mine", "train", "evaluate", "tables", "classify"):
        assert cmd in out.stdout, f"subcommand {cmd} missing from `cezsar --help`"


def test_ci_entry_point_calls_run_tests_and_fails_on_no_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./run_tests.sh" in ci
    assert 'rc" -eq 5' in (ROOT / "run_tests.sh").read_text()


def test_the_public_api_resolves_lazily():
    import subprocess
    import sys

    code = ("import sys, cezsar; assert 'torch' not in sys.modules, 'import cezsar loaded torch'; "
            "names = [n for n in cezsar.__all__ if n != '__version__']; "
            "assert all(callable(getattr(cezsar, n)) for n in names); print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 13


def test_readme_paper_to_code_table_names_real_objects():
    """Every name in the README's "Paper → code" table exists (issue 20: a newcomer finds each equation)."""
    import importlib

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Paper → code", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"`(cezsar\.[A-Za-z_.]+)`", table)
    assert len(names) >= 15
    for name in names:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable module prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[i:]:
            assert hasattr(obj, attr), name
            obj = getattr(obj, attr)
