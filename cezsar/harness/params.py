"""Parameter sets (`params/*.yaml`): one file fully determines a run of the notebooks.

`params/embedded.yaml` names every key a parameter set may hold, with its default (the embedded run's
value); any other set (`params/paper.yaml`, a user's copy) changes some of them. A key that is not in the
defaults is an error naming the nearest known key, so a misspelt `epcohs: 3` never passes silently.

A notebook reads its set with `settings(params_file, globals())`. Its `parameters` cell holds `None` for every
key ("take it from the set"), so any value there was put there on purpose — by papermill (`-p name value`), by
hand, or by a widget — and overrides the set for that notebook, whatever it equals; the returned `Settings`
lists every override that changes a value, so it is visible in the output.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cezsar import config
from cezsar.config import EvalConfig, MiningConfig, ModelConfig, TrainConfig
from cezsar.errors import ParameterError
from cezsar.base.textio import read_text

DEFAULTS_FILE = config.PROJ_ROOT / "params" / "embedded.yaml"
# keys that papermill and run_all pass beside a set's own keys
RUNTIME_KEYS = {"params_file": "params/embedded.yaml", "run_dir": ""}


def resolve(path: str | Path) -> Path:
    """A parameter path: absolute as given, relative ones against the project root (not the notebook's cwd)."""
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() else config.PROJ_ROOT / p


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ParameterError(f"parameter file not found: {path}")
    text = read_text(path, "parameter file", ParameterError)  # a BOM, CRLF, UTF-16 with its mark: all read
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ParameterError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    except (ValueError, TypeError, RecursionError) as err:  # e.g. a timestamp-like value no date can hold
        raise ParameterError(f"{path}: not valid YAML ({type(err).__name__}: {' '.join(str(err).split())[:100]})"
                             ) from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping of name: value, got {type(data).__name__}")
    return data


# the allowed values of the numeric keys (low, high, high included), checked where a set is read
LIMITS: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, float("inf"), True), "patience": (0, float("inf"), True), "batch": (1, float("inf"), True),
    "seed": (0, 2**32 - 1, True), "synth_seed": (0, 2**32 - 1, True), "runs": (1, float("inf"), True),
    "n_negatives": (1, float("inf"), True), "object_positives": (0, float("inf"), True),
    "tau": (0, 2, True), "val_fraction": (0, 1, False), "dropout": (0, 1, False), "d_model": (2, float("inf"), True),
    "max_len": (1, float("inf"), True), "image_size": (32, float("inf"), True), "alpha": (0, float("inf"), True),
    "beta": (0, float("inf"), True), "std_ddof": (0, 1, True), "max_seconds": (0, float("inf"), True),
    "fidelity_seeds": (1, float("inf"), True), "fidelity_epochs": (1, float("inf"), True),
}
# keys with a fixed set of words
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("embedded", "paper"), "synth_size": ("default", "small"), "use_objects": ("auto", "on", "off"),
    "split": ("video", "triplet"), "draw": ("uniform", "released"), "window": ("paper", "released"),
}


def _check_value(name: str, value: Any, where: str) -> None:
    """`value` (already typed) within the allowed values of `name` (LIMITS, CHOICES); ParameterError otherwise."""
    if value is None:
        return
    if name == "tau_values":  # "0.7,0.8,0.9": each a tau
        for part in (p.strip() for p in str(value).split(",") if p.strip()):
            try:
                _check_value("tau", float(part), where)
            except ValueError:
                raise ParameterError(f"{where}: tau_values: {part!r} is not a tau (a number in [0, 2]); give them "
                                     "comma-separated, e.g. \"0.7,0.8,0.9\"") from None
    if name in CHOICES and value not in CHOICES[name]:
        raise ParameterError(f"{where}: {name}: {value!r} is not one of {', '.join(CHOICES[name])}")
    if name in LIMITS and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high, closed = LIMITS[name]
        ok = value == value and low <= value and (value <= high if closed else value < high)
        if not ok:
            top = "" if high == float("inf") else (f" and {'at most' if closed else 'below'} {high:g}")
            raise ParameterError(f"{where}: {name}: {value!r} must be at least {low:g}{top}")


def defaults() -> dict[str, Any]:
    """Every known key with its default: params/embedded.yaml plus the keys run_all passes."""
    return {**RUNTIME_KEYS, **_read_yaml(DEFAULTS_FILE)}


_KIND = {bool: "true or false", int: "a whole number", float: "a number"}


def _coerce(name: str, value: Any, like: Any, where: str) -> Any:
    """`value` as the type of the default `like` (YAML reads `1` as int where a float is meant); `null` only where
    the default is null."""
    if like is None:
        return value
    if value is None:
        raise ParameterError(f"{where}: {name}: null is not allowed; give {_KIND.get(type(like), 'a text value')} "
                             f"(default {like!r})")
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
    elif isinstance(like, (int, float)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(like, float):
                return float(value)
            if value == value and abs(value) != float("inf") and float(value).is_integer():
                return int(value)
    elif isinstance(like, str):
        return value if isinstance(value, str) else str(value)
    else:
        return value
    raise ParameterError(f"{where}: {name}: {value!r} is not {_KIND.get(type(like), 'a text value')} (default "
                         f"{like!r})")


def load(params_file: str | Path) -> dict[str, Any]:
    """A parameter file over the defaults: every known key, typed like its default; unknown keys are errors."""
    path = resolve(params_file)
    known = defaults()
    data = _read_yaml(path)
    unknown = [k for k in data if k not in known]
    if unknown:
        hints = []
        for k in unknown:
            near = difflib.get_close_matches(str(k), list(known), n=1, cutoff=0.6)
            hints.append(f"{k!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        raise ParameterError(f"{path}: unknown key(s) {', '.join(hints)}; the known keys are those of "
                             f"params/embedded.yaml")
    out = dict(known)
    out.update({k: _coerce(k, v, known[k], str(path)) for k, v in data.items()})
    for k in data:
        _check_value(k, out[k], str(path))
    out["params_file"] = str(params_file)
    return out


@dataclass
class Settings:
    """The values of one notebook run: the parameter set, then the notebook's overrides (listed)."""

    values: dict[str, Any]
    source: str  # the parameter file
    overrides: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (set's value, used value)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r} in {self.__dict__.get('source')}") from None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def _repr_markdown_(self) -> str:
        if not self.overrides:
            return f"Parameters: `{self.source}`, no overrides."
        rows = "\n".join(f"| `{k}` | {a!r} | **{b!r}** |" for k, (a, b) in self.overrides.items())
        return (f"Parameters: `{self.source}`, with these overrides from this notebook:\n\n"
                f"| parameter | in the set | used here |\n|---|---|---|\n{rows}")

    def __repr__(self) -> str:
        over = ", ".join(f"{k}={b!r} (set: {a!r})" for k, (a, b) in self.overrides.items()) or "none"
        return f"Settings({self.source}; overrides: {over})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)


def settings(params_file: str | Path, namespace: dict[str, Any] | None = None) -> Settings:
    """The parameter set `params_file`, overridden by the notebook's own values.

    `namespace` is the notebook's `globals()`: for each known key found there, `None` means "not set here" and
    the set's value is used; any other value overrides the set, even one equal to a default (so `tau = 0.8`
    in a notebook wins over a set's `tau: 0.7`). A key whose wanted value is null itself is set in the set.
    """
    base = load(params_file)
    known = defaults()
    values = dict(base)
    overrides: dict[str, tuple[Any, Any]] = {}
    for name, default in known.items():
        if name in RUNTIME_KEYS or namespace is None or namespace.get(name) is None:
            continue
        mine = _coerce(name, namespace[name], default if default is not None else base[name],
                       "notebook parameters")
        _check_value(name, mine, "notebook parameters")
        values[name] = mine
        if mine != base[name]:
            overrides[name] = (base[name], mine)
    if namespace is not None and namespace.get("run_dir"):
        values["run_dir"] = str(namespace["run_dir"])
    return Settings(values, str(params_file), overrides)


# flat parameter keys -> (stage config, field); keys not listed (paths, seeds of other stages…) are read directly
CONFIG_KEYS: dict[str, tuple[str, str]] = {
    "tau": ("mine", "tau"), "n_negatives": ("mine", "n_negatives"), "object_positives": ("mine", "object_positives"),
    "object_negatives": ("mine", "object_negatives"), "split": ("mine", "split"),
    "val_fraction": ("mine", "val_fraction"), "draw": ("mine", "draw"),
    "mine_released_objects": ("mine", "released_objects"), "far_from_all": ("mine", "far_from_all"),
    "object_tau": ("mine", "object_tau"),
    "positional": ("model", "positional"), "released_sem": ("model", "released_sem"),
    "released_padding": ("model", "released_padding"), "released_attention": ("model", "released_attention"),
    "released_head": ("model", "released_head"), "xavier_init": ("model", "xavier_init"),
    "d_model": ("model", "d_model"), "dropout": ("model", "dropout"), "max_len": ("model", "max_len"),
    "epochs": ("train", "epochs"), "patience": ("train", "patience"), "batch": ("train", "batch"),
    "window": ("train", "window"), "autocast": ("train", "autocast"), "device": ("train", "device"),
    "batch_makeup": ("train", "batch_makeup"),
    "released_validation": ("train", "released_validation"),
    "alpha": ("eval", "alpha"), "beta": ("eval", "beta"), "normalize_terms": ("eval", "normalize_terms"),
    "eval_released_objects": ("eval", "released_objects"),
    "released_descriptions": ("eval", "released_descriptions"), "max_seconds": ("eval", "max_seconds"),
    "std_ddof": ("eval", "std_ddof"),
}


def stage_configs(values: dict[str, Any]) -> dict[str, Any]:
    """The MiningConfig, ModelConfig, TrainConfig and EvalConfig ("mine", "model", "train", "eval") of flat
    parameter values (`CONFIG_KEYS`; other keys are ignored, absent ones keep the dataclass defaults)."""

    classes = {"mine": MiningConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}
    fields: dict[str, dict] = {k: {} for k in classes}
    for key, value in values.items():
        if key in CONFIG_KEYS:
            stage, name = CONFIG_KEYS[key]
            fields[stage][name] = value
    return {k: cls(**fields[k]) for k, cls in classes.items()}


def dumps(values: dict[str, Any]) -> str:
    """Values as one JSON line (for results files and logs)."""
    return json.dumps(values, sort_keys=True, default=str)
