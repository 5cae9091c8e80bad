"""Progress bars that read well wherever a stage runs: a terminal, JupyterLab, or a papermill log.

`CEZSAR_PROGRESS` picks the form (run_all.sh sets `log`):
- `auto` (default): a widget bar inside a Jupyter kernel, a text bar in a terminal;
- `log`: one plain line at most every `CEZSAR_PROGRESS_INTERVAL` seconds (default 20) and one at the end, so
  an executed notebook and its log read as a record instead of a wall of carriage returns;
- `off`: nothing.
"""
from __future__ import annotations

import os
import sys
from typing import Any


class _Lines:
    """A text stream that turns tqdm's carriage-return redraws into separate lines."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _in_kernel() -> bool:
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_mode() -> str:
    """`log`, `off`, `widget` or `text` for this process (module doc)."""
    mode = os.environ.get("CEZSAR_PROGRESS", "auto").strip().lower()
    if mode in ("log", "off"):
        return mode
    return "widget" if _in_kernel() else "text"


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, leave: bool = True,
                 **kwargs: Any):
    """A tqdm bar in the form `progress_mode()` picks; disabled when `enabled` is False."""
    mode = progress_mode() if enabled else "off"
    if mode == "widget":
        from tqdm.auto import tqdm  # lazy: tqdm.auto loads ipywidgets, needed only in JupyterLab

        return tqdm(total=total, desc=desc, unit=unit, leave=leave, **kwargs)
    from tqdm import tqdm  # lazy: the same name as tqdm.auto's above, which only the widget mode may load

    if mode == "log":
        interval = float(os.environ.get("CEZSAR_PROGRESS_INTERVAL", "20"))
        return tqdm(total=total, desc=desc, unit=unit, leave=True, file=_Lines(sys.stdout), ascii=True,
                    mininterval=interval, maxinterval=interval, dynamic_ncols=False, ncols=100, **kwargs)
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=mode == "off", **kwargs)
