"""One HTML page per run: the executed notebooks of `runs/<set>/` joined into a single self-contained report.

`python -m cezsar.harness.run_page runs/embedded` (run_all.sh does it at the end) writes `runs/embedded/report.html`:
every notebook in order under its own heading, with its outputs — tables, figures (embedded as base64 PNG, so
the page opens anywhere without Jupyter) and printed logs; widget panels, which need a live kernel, are left out.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from cezsar.base.atomic import write_text
from cezsar.base.environment import short
from cezsar.harness.digests import verdict_text


def _static(output) -> bool:
    """Keep outputs a static page can show (drop live-widget views, which render as nothing)."""
    data = output.get("data", {})
    return not (data and set(data) <= {"application/vnd.jupyter.widget-view+json", "text/plain"}
                and "application/vnd.jupyter.widget-view+json" in data)


def _verdict(run_dir: Path) -> str:
    """The last section: `cezsar verify`'s verdict on this run against the committed digests (verify.json)."""

    head = "<a id='verify'></a>\n\n---\n\n## Verification against the committed digests\n\n"
    path = run_dir / "verify.json"
    if not path.is_file():
        return head + "Not verified: run `cezsar verify " + run_dir.name + "` (docs/interfaces.md, \"verify\")."
    verdict = json.loads(path.read_text())
    env = ""
    results = run_dir / "results.json"
    if results.is_file():
        env = f"Computed on: {short(json.loads(results.read_text()).get('environment'))}\n\n"
    return head + env + "```\n" + verdict_text(verdict) + "\n```"


def build(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Join `run_dir/[0-9][0-9]_*.ipynb` into one notebook and render it to `report.html` (returned)."""


    run_dir = Path(run_dir)
    books = sorted(run_dir.glob("[0-9][0-9]_*.ipynb"))
    if not books:
        raise FileNotFoundError(f"{run_dir}: no executed notebooks (NN_*.ipynb) to report on")
    page = nbformat.v4.new_notebook()
    page.cells.append(nbformat.v4.new_markdown_cell(
        f"# Run report: `{run_dir.name}`\n\n" + "\n".join(f"- [{b.stem}](#{b.stem})" for b in books)))
    for book in books:
        nb = nbformat.read(book, as_version=4)
        page.cells.append(nbformat.v4.new_markdown_cell(f"<a id='{book.stem}'></a>\n\n---\n\n*{book.name}*"))
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.get("outputs", []) if _static(o)]
            page.cells.append(cell)
    page.cells.append(nbformat.v4.new_markdown_cell(_verdict(run_dir)))
    page.metadata = nbformat.read(books[0], as_version=4).metadata
    page.metadata.pop("widgets", None)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    html, _ = exporter.from_notebook_node(page)
    target = Path(out) if out else run_dir / "report.html"
    write_text(target, html)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m cezsar.harness.run_page RUN_DIR", file=sys.stderr)
        sys.exit(2)
    try:
        print(build(sys.argv[1]))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
