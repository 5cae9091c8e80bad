"""The "measured cost" column of docs/fidelity.md, written from the fidelity record (`figures/fidelity.json`).

Each measured variant fills the last cell of the table row of its topic: the paired Δ of VE + O on the UCF-form and
the Kinetics-form test sets, each with its 95 % interval, the seeds and epochs behind it and the variant it is
compared with; a variant that cannot change anything on the data gets its reason. The cells are generated, never
typed, so the document cannot drift from the record (tests/test_fidelity.py checks the committed pair):

    python -m cezsar.harness.fidelity --report-only --doc docs/fidelity.md
"""
from __future__ import annotations

import re
from pathlib import Path

from cezsar.harness.fidelity_report import delta_cell

# topic (the first cell of a row of docs/fidelity.md's table) -> its variants, each with the label it gets when a row
# holds more than one
TOPICS: dict[str, tuple[tuple[str, str], ...]] = {
    "negatives drawn": (("draw", ""),),
    "a negative and the window's other positives": (("far_from_all", ""),),
    "object positives": (("object_positives", "released"), ("object_tau", "τ rule")),
    "visual input (windows)": (("window", ""),),
    "input length": (("padding", ""),),
    "VEM attention": (("attention", ""),),
    "positional encoding": (("no_pe", ""),),
    "VEM head": (("head", ""),),
    "SEM": (("sem", ""),),
    "width, dropout, init": (("width_init", ""),),
    "batch makeup": (("iid", ""),),
    "validation split": (("split", ""),),
    "validation mode": (("validation", ""),),
    "precision": (("fp32", ""),),
    "eval": (("raw_sum", ""),),
    "objects at eval": (("objects_eval", ""),),
    "test clip length": (("first_16s", ""),),
    "class descriptions": (("descriptions", ""),),
    "all released behaviours at once": (("released_captions", "captions only"), ("released", "with object positives")),
}
# text that follows a topic's measured cells
AFTER = {"batch makeup": "; speed: benchmarks/RESULTS.md \"Batch makeup\""}


def variant_cell(row: dict | None, epochs: int) -> str:
    """One variant's cost: "Δ UCF / Δ Kinetics (paired over N seeds, E epochs; vs `ref`)", its reason when it is
    not measurable, or what is still missing."""
    if row is None:
        return "not yet measured"
    if "not_measurable" in row:
        return row["not_measurable"]
    ucf, kin = row.get("delta_ucf101_VE+O"), row.get("delta_kinetics400_VE+O")
    if ucf is None or kin is None:
        return f"Δ pending its reference, `{row['reference']}` ({row['seeds']} seeds recorded)"
    return (f"{delta_cell(ucf)} / {delta_cell(kin)} (paired over {ucf['n']} seeds, {epochs} epochs; "
            f"vs `{row['reference']}`)")


def cost_cells(record: dict) -> dict[str, str]:
    """topic -> the text of its "measured cost" cell, from a fidelity record (`figures/fidelity.json`)."""
    rows = {r["variant"]: r for r in record["rows"]}
    epochs = int(record["settings"]["epochs"])
    cells = {}
    for topic, variants in TOPICS.items():
        parts = [((label + ": ") if label else "") + variant_cell(rows.get(name), epochs) for name, label in variants]
        cells[topic] = "; ".join(parts) + AFTER.get(topic, "")
    return cells


def update(text: str, cells: dict[str, str]) -> str:
    """`text` (docs/fidelity.md) with the last cell of each topic's table row replaced; a topic without its row
    is a ValueError naming it (the document and TOPICS must agree)."""
    lines = text.split("\n")
    for topic, cell in cells.items():
        at = [i for i, line in enumerate(lines) if line.startswith(f"| {topic} |")]
        if len(at) != 1:
            raise ValueError(f"docs/fidelity.md: {len(at)} table rows for the topic {topic!r}, expected one")
        head = re.sub(r"\|[^|]*\|\s*$", "|", lines[at[0]])  # the row without its last cell
        lines[at[0]] = f"{head} {cell} |"
    return "\n".join(lines)


def write(doc: str | Path, record: dict) -> bool:
    """Rewrite the cost column of `doc` from `record`; True when the file changed."""
    path = Path(doc)
    old = path.read_text(encoding="utf-8")
    new = update(old, cost_cells(record))
    if new != old:
        path.write_text(new, encoding="utf-8")
    return new != old
