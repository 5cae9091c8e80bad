"""The two README commands and the declared dependencies stay consistent."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(path: Path) -> dict[str, str]:
    from cezsar.base.environment import read_lock

    return read_lock(path)


def test_environment_yml_installs_the_lock_which_pins_every_declared_package():
    """Issue 26: environment.yml, the lock files and pyproject.toml agree: the lock pins every declared package
    (and the declared pins exactly), environment.yml installs that lock, on the lock's Python."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {r.split("#")[0].strip() for r in project["dependencies"]} | set(project["optional-dependencies"]["dev"])
    cpu, cuda = _pins(ROOT / "locks" / "cpu.txt"), _pins(ROOT / "locks" / "cuda.txt")
    assert {_name(d) for d in declared} <= set(cpu)
    for d in declared:
        if "==" in d:  # a declared pin is the lock's (torch's CPU build carries a local label: 2.13.0+cpu)
            name, version = d.split("==")
            assert cpu[_name(name)].split("+")[0] == version, d
    assert cpu["torch"] == "2.13.0+cpu" and cuda["torch"] == "2.13.0"
    # the CUDA lock differs only in torch and torch's own CUDA packages
    other = {n for n in set(cpu) | set(cuda) if cpu.get(n) != cuda.get(n)} - {"torch"}
    assert other and all(n.startswith(("nvidia-", "cuda-", "triton")) for n in other), other
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-r locks/cpu.txt" in pip and "-e ." in pip
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert f"Python {python.split('=')[1]}" in (ROOT / "locks" / "cpu.txt").read_text().split("\n", 3)[1]


def test_setup_installs_from_the_lock_and_reinstalls_when_it_changes():
    setup = (ROOT / "scripts" / "setup_env.sh").read_text()
    assert '-r "$_lock"' in setup and "--no-deps" in setup
    assert 'cat "$_root/pyproject.toml" "$_lock" | sha256sum' in setup  # the re-install stamp covers the lock
    assert "CUSTOM_COMPILE_COMMAND" in (ROOT / "scripts" / "lock.sh").read_text()
    assert "./scripts/lock.sh" in (ROOT / "locks" / "cpu.txt").read_text()  # the lock names its refresh command


def test_console_script_and_module_entry_point_agree():
    out = subprocess.run([sys.executable, "-m", "cezsar", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for cmd in ("doctor", "setup", "synth", "check-data", "extract", "mine", "train", "evaluate", "tables", "classify",
                "verify"):
        assert cmd in out.stdout, f"subcommand {cmd} missing from `cezsar --help`"


@pytest.mark.parametrize("tests_rc, ci_rc", [(0, 0), (1, 1), (5, 1)])
def test_ci_entry_point_runs_the_readmes_test_command_and_fails_when_no_test_ran(tmp_path, tests_rc, ci_rc):
    """.ci/run runs ./run_tests.sh from the project root and passes its exit code on, except pytest's 5 (no tests
    collected), which is a failure; shown on a copy whose run_tests.sh is a stand-in that records its call."""
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_text((ROOT / ".ci" / "run").read_text())
    stand_in = tmp_path / "run_tests.sh"
    stand_in.write_text(f"#!/usr/bin/env bash\necho \"$PWD $*\" > called\nexit {tests_rc}\n")
    stand_in.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    out = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], cwd="/", capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == ci_rc, out.stdout + out.stderr
    assert (tmp_path / "called").read_text().split() == [str(tmp_path), "-q"]


def test_run_tests_treats_no_collected_tests_as_a_failure():
    assert 'rc" -eq 5' in (ROOT / "run_tests.sh").read_text()  # exit 5 (nothing collected) becomes 1


def test_the_public_api_resolves_lazily():
    import subprocess
    import sys

    code = ("import sys, cezsar; assert 'torch' not in sys.modules, 'import cezsar loaded torch'; "
            "names = [n for n in cezsar.__all__ if n != '__version__']; "
            "assert all(callable(getattr(cezsar, n)) for n in names); print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import cezsar

    assert int(out.stdout) == len(cezsar._API)  # every name of the public API resolved to a callable


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


def test_the_readmes_results_are_generated_from_the_committed_figures():
    """Issue 26: no number or comparison in the README's results block is typed by hand: the block is exactly what
    scripts/readme_results.py makes of figures/ (tables, paired comparisons, Fig. 3's hard classes, the τ ablation)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_results.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_readmes_fidelity_block_keeps_only_what_the_intervals_support(tmp_path):
    """Issue 27: the README states a fidelity cost only where its paired interval excludes 0, and counts the rest."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "fidelity.md").write_text(
        "| variant | x |\n|---|---|\n| a | 1 |\n\nEach variant against its reference:\n\n"
        "- a vs paper (UCF-form): -3.0 points (95 % CI -5.0 … -1.0, paired over 5 seeds): a is lower.\n"
        "- a vs paper (Kinetics-form): -1.0 points (95 % CI -4.0 … +2.0, paired over 5 seeds): not distinguishable "
        "with 5 seeds.\n- b vs obj2 (UCF-form): +0.5 points (95 % CI -1.0 … +2.0, paired over 5 seeds): not "
        "distinguishable with 5 seeds.\n\nNot measured here: c (why).\n")
    block = mod.fidelity_block(tmp_path)
    assert "- a vs paper (UCF-form): -3.0 points" in block and "not distinguishable with 5" not in block
    assert "The other 2 of its 3 comparisons are not distinguishable" in block


def test_setup_finds_every_dependency_without_importing_it(tmp_path):
    """scripts/setup_env.sh's dependency check (run by every ./run_all.sh and ./run_tests.sh) passes for this
    environment and fails for an interpreter that lacks torch (the system python3 here, or a bare venv), and it
    does not import the packages it checks: a `torch` that raises on import still counts as installed."""
    check = re.search(r"^_deps_ok\(\) \{.*?^\}", (ROOT / "scripts" / "setup_env.sh").read_text(), re.S | re.M)[0]

    def deps_ok(python: str, extra_path: str = "") -> bool:
        env = {**os.environ, "PYTHONPATH": extra_path}
        return subprocess.run(["bash", "-c", f"{check}\n_deps_ok {python}"], env=env).returncode == 0

    assert deps_ok(sys.executable)
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    assert not deps_ok(str(bare / "bin" / "python"))
    fake = tmp_path / "fake"  # a torch that would fail loudly if the check imported it
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise SystemExit('imported')\n")
    assert deps_ok(sys.executable, str(fake))


def test_citation_file_agrees_with_the_package_the_readme_and_the_license():
    """CITATION.cff is valid CFF 1.2.0 in shape, names the paper the README cites (title, authors, arXiv id in its
    BibTeX) and the package's own version and license (pyproject.toml, LICENSE)."""
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["cff-version"] == "1.2.0" and cff["message"] and cff["authors"]
    assert str(cff["version"]) == project["version"] and cff["license"] == project["license"]["text"]
    assert (ROOT / "LICENSE").read_text().startswith(f"{cff['license']} License")
    paper = cff["preferred-citation"]
    readme = (ROOT / "README.md").read_text()
    bib = re.search(r"```bibtex\n(.*?)```", readme, re.S).group(1)
    title = re.search(r"title\s*=\s*\{(.*)\},", bib).group(1).replace("{", "").replace("}", "")
    assert title == paper["title"]
    assert title.lower() in readme.split("```bibtex")[0].replace("**", "").lower()  # the README's opening names it
    authors = re.search(r"author\s*=\s*\{(.*)\},", bib).group(1).split(" and ")
    assert authors == [f"{a['family-names']}, {a['given-names']}" for a in paper["authors"]]
    arxiv = next(i["value"] for i in paper["identifiers"]).removeprefix("arXiv:")
    assert arxiv in bib and arxiv in paper["url"] and str(paper["year"]) in bib


def test_the_set_up_replaces_a_build_that_only_the_local_label_tells_apart(tmp_path):
    """A venv set up from locks/cpu.txt holds torch 2.13.0+cpu, which pip takes as meeting locks/cuda.txt's
    torch==2.13.0. The set-up then force-reinstalls `torch===2.13.0`: the spec `===` matches the lock's build only."""
    from packaging.specifiers import SpecifierSet

    from cezsar.base.environment import builds_to_replace

    lock = tmp_path / "cuda.txt"
    lock.write_text("torch==2.13.0\n    # via cezsar\nnumpy==2.4.6\nnot-installed==1.0\n")
    installed = {"torch": "2.13.0+cpu", "NumPy": "2.4.6", "other": "1"}
    assert SpecifierSet("==2.13.0").contains("2.13.0+cpu")  # why pip alone keeps the CPU build
    assert builds_to_replace(lock, installed) == ["torch===2.13.0"]
    assert not SpecifierSet("===2.13.0").contains("2.13.0+cpu") and SpecifierSet("===2.13.0").contains("2.13.0")
    lock.write_text("torch==2.13.0+cpu\nnumpy==2.4.6\n")  # and back: the CPU lock over a CUDA build
    assert builds_to_replace(lock, {"torch": "2.13.0", "numpy": "2.4.6"}) == ["torch===2.13.0+cpu"]
    assert builds_to_replace(lock, {"torch": "2.13.0+cpu", "numpy": "2.4.6"}) == []
    setup = (ROOT / "scripts" / "setup_env.sh").read_text()
    assert "builds_to_replace" in setup and "--force-reinstall --no-deps $_replace" in setup
