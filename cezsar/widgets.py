"""The notebooks' retuning panel: ipywidgets bound to the parameter variables of a notebook.

Moving a control rebinds the variable of the same name in the notebook's namespace; re-running the cells
below then uses it. Under papermill nobody moves a control, so the injected `parameters` values rule and
nothing blocks (no `interact_manual` waits for a click).
"""
from __future__ import annotations

from typing import Any


def _control(name: str, value: Any):
    import ipywidgets as w

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


def tuner(namespace: dict, names: list[str], title: str = "Retune, then re-run the cells below"):
    """A VBox with one control per parameter in `names`, writing back into `namespace` (pass `globals()`)."""
    import ipywidgets as w

    controls = []
    for name in names:
        if name not in namespace:
            raise KeyError(f"tuner: no parameter named {name!r} in this notebook")
        c = _control(name, namespace[name])
        c.observe(lambda change, n=name: namespace.__setitem__(n, change["new"]), names="value")
        controls.append(c)
    return w.VBox([w.HTML(f"<b>{title}</b>")] + controls)
