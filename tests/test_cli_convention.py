"""Issue 29: one command-line convention. Every command that computes takes --device and --progress, each flag
name has one spelling and one meaning across commands, and the examples that --help shows parse (the cheap ones
also run)."""
from __future__ import annotations

import argparse
import importlib
import json
import shlex
from pathlib import Path

import pytest

from cezsar.cli import COMMANDS, build_parser, main

COMPUTING = ("extract", "objects", "mine", "train", "evaluate", "classify")  # they load a model or run a network


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flags(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


@pytest.mark.parametrize("name", COMPUTING)
def test_every_computing_command_takes_device_and_progress(name):
    flags = _flags(_subparsers()[name])
    assert "--device" in flags and "--progress" in flags and "--no-progress" in flags, sorted(flags)


def test_each_flag_has_one_spelling():
    """--top-k not --topk, --params not --params-file: no two spellings of one idea anywhere."""
    every = {s for p in _subparsers().values() for s in _flags(p)}
    for old in ("--topk", "--params-file", "--params-name"):
        assert old not in every, old


def test_each_flag_name_means_one_thing_across_commands():
    """A flag name takes the same kind of value in every command that has it (e.g. --objects is always a folder,
    --split never a file in one command and a split rule in another)."""
    kinds: dict[str, set] = {}
    for name, p in _subparsers().items():
        for flag, a in _flags(p).items():
            if flag in ("-h", "--help"):
                continue
            kind = ("flag" if a.nargs == 0 else (getattr(a.type, "__name__", str(a.type)), a.metavar or "",
                                                  tuple(a.choices) if a.choices else ()))
            kinds.setdefault(flag, set()).add((kind[0] if isinstance(kind, tuple) else kind))
    mixed = {f: k for f, k in kinds.items() if len(k) > 1}
    assert not mixed, mixed
    p = _subparsers()
    assert _flags(p["classify"]).get("--objects") is None  # a count there is --n-objects
    assert _flags(p["mine"])["--split"].choices == ("video", "triplet")
    assert _flags(p["check-data"]).get("--split") is None and "--split-file" in _flags(p["check-data"])


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_examples_that_parse(name, capsys):
    mod = importlib.import_module(f"cezsar.commands.{name.replace('-', '_')}")
    assert mod.EXAMPLES, f"{name}: no --help examples"
    with pytest.raises(SystemExit):
        main([name, "--help"])
    shown = capsys.readouterr().out
    parser = build_parser()
    for line in mod.EXAMPLES:
        assert line in shown
        argv = shlex.split(line)
        assert argv[:2] == ["cezsar", name]
        parser.parse_args(argv[1:])  # a usage error raises here, naming the example's bad flag


def test_the_cheap_help_examples_run(tmp_path, monkeypatch, capsys):
    """synth and check-data as --help shows them, on a small SynthActions (the paths resolve under a project)."""
    monkeypatch.chdir(tmp_path)
    synth = importlib.import_module("cezsar.commands.synth").EXAMPLES[0]
    assert main(shlex.split(synth)[1:]) == 0
    check = importlib.import_module("cezsar.commands.check_data").EXAMPLES[0]
    capsys.readouterr()
    assert main(shlex.split(check)[1:] + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report and Path("data/raw/synthactions/activitynet/train.json").is_file()


def test_help_and_a_usage_error_load_no_array_library():
    """`cezsar --help` and a bad flag answer without numpy, yaml or torch: command modules import the library
    parts that load them inside `run` (a start-up regression, 0.055 s -> 0.19 s, came from moving them to the top)."""
    import subprocess
    import sys

    code = ("import sys, contextlib, io\n"
            "from cezsar.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    rc = main(['train', '--no-such-flag'])\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(rc, sorted(m for m in ('numpy', 'yaml', 'torch', 'av', 'PIL') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "2 []", out.stdout
