"""The notebooks' retuning panel: ipywidgets bound to the parameter variables of a notebook.

Moving a control rebinds the variable of the same name in the notebook's namespace and remembers the value
(in `runs/.controls/<parameter set>.json`), so the next "Run All" — which runs the `parameters` cell again —
still uses it, until the panel's reset button is pressed. `cezsar.harness.params.settings` then lists the value as an
override of the parameter set. Headless runs (run_all.sh sets `CEZSAR_HEADLESS=1`) ignore remembered values:
there the parameter set rules, and nothing blocks waiting for a click.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cezsar import config
from cezsar.base.atomic import write_json
from cezsar.harness.params import defaults as known_defaults, load


def controls_file(params_file: str) -> Path:
    """Where the remembered control values of a parameter set live."""
    runs = Path(os.environ.get("CEZSAR_RUNS_DIR") or config.RUNS_DIR)
    return runs / ".controls" / f"{Path(str(params_file)).stem}.json"


def remembered(params_file: str | None) -> dict[str, Any]:
    """The remembered control values of a parameter set ({} when headless or none)."""
    if not params_file or os.environ.get("CEZSAR_HEADLESS"):
        return {}
    path = controls_file(params_file)
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}  # a torn file only loses remembered values; the parameter set still applies
    return data if isinstance(data, dict) else {}


def _remember(params_file: str, values: dict[str, Any]) -> None:
    write_json(controls_file(params_file), values)


def _control(name: str, value: Any):
    import ipywidgets as w  # lazy: only JupyterLab shows the panel; a headless run never loads it

    style = {"description_width": "initial"}
    if isinstance(value, bool):
        return w.Checkbox(value=value, description=name, style=style)
    if isinstance(value, int):
        return w.IntText(value=value, description=name, style=style)
    if isinstance(value, float):
        step = 0.05 if 0.0 <= value <= 1.0 else 0.1
        lo, hi = (0.0, 1.0) if 0.0 <= value <= 1.0 else (min(0.0, value * 4), max(1.0, value * 4))
        return w.FloatSlider(value=value, min=lo, max=hi, step=step, description=name, style=style,
                             continuous_update=False)
    return w.Text(value=str(value), description=name, style=style)


def tuner(namespace: dict, names: list[str], params_file: str | None = None,
          title: str = "Retune, then run the cells below (or Run All)"):
    """A VBox with one control per parameter in `names`, writing back into `namespace` (pass `globals()`).

    With `params_file`, values moved on a control are remembered for that parameter set and applied to
    `namespace` right away on the next run of this cell (module doc); the reset button forgets them.
    """
    import ipywidgets as w  # lazy: only JupyterLab shows the panel; a headless run never loads it

    for name in names:
        if name not in namespace:
            raise KeyError(f"tuner: no parameter named {name!r} in this notebook")
    defaults = {n: namespace[n] for n in names}  # the notebook's own values (None: the parameter set's)
    in_set = load(params_file) if params_file else known_defaults()
    shown = {n: in_set.get(n) if defaults[n] is None else defaults[n] for n in names}  # what a control starts at
    kept = {k: v for k, v in remembered(params_file).items() if k in names}
    for name, value in kept.items():
        like = shown[name]
        namespace[name] = value if like is None else type(like)(value)
        shown[name] = namespace[name]
    controls = {}
    resetting = [False]  # a reset moves the controls too: those moves must not be remembered

    def changed(name: str, value: Any) -> None:
        namespace[name] = value
        if params_file and not resetting[0]:
            _remember(params_file, {**remembered(params_file), name: value})

    for name in names:
        c = _control(name, shown[name])
        c.observe(lambda change, n=name: changed(n, change["new"]), names="value")
        controls[name] = c
    reset = w.Button(description="reset to the parameter set", layout=w.Layout(width="auto"))

    def on_reset(_button) -> None:
        resetting[0] = True
        try:
            for name, c in controls.items():
                c.value = defaults[name] if defaults[name] is not None else in_set.get(name)
                namespace[name] = defaults[name]
        finally:
            resetting[0] = False
        if params_file:
            _remember(params_file, {k: v for k, v in remembered(params_file).items() if k not in names})

    reset.on_click(on_reset)
    note = f" (remembered: {', '.join(f'{k}={v!r}' for k, v in kept.items())})" if kept else ""
    return w.VBox([w.HTML(f"<b>{title}</b>{note}")] + list(controls.values()) + [reset])
