"""Tables 1 and 2: the paper's literature rows (cited, as printed) plus the rows computed by this package.

Literature numbers are copied from the paper's Tables 1/2 and never recomputed; each keeps its reference
number in the paper's bibliography. Rows computed here say which dataset they were computed on, because on the
embedded SynthActions data they are a demonstration of the pipeline, not a replication of the paper's figures.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from cezsar.base.atomic import write_text

# Table columns: the number of unseen test classes of each protocol (paper §4).
COLUMNS = {"ucf101": ["101", "50", "20"], "kinetics400": ["400", "100", "25"]}
# Fraction of the classes each column evaluates, so a smaller dataset can be run under the same shape.
FRACTIONS = {"ucf101": [1.0, 50 / 101, 20 / 101], "kinetics400": [1.0, 100 / 400, 25 / 400]}


@dataclass
class Row:
    model: str  # row label as in the paper
    cells: dict[str, str]  # column -> "49.4 ± 4.0" or "–"
    cite: str = ""  # reference number in the paper's bibliography, e.g. "[9]"
    training_classes: str = "–"  # Table 1's "Classes" column: classes of the test dataset used in training
    source: str = "paper"  # "paper" (literature or the authors' own row) or the dataset a row was computed on
    extra: dict[str, str] = field(default_factory=dict)


def _row(model: str, cite: str, values: list[str], classes: str = "–", dataset: str = "ucf101") -> Row:
    return Row(model=model, cite=cite, training_classes=classes, cells=dict(zip(COLUMNS[dataset], values)))


# Table 1 of the paper (UCF-101), in the printed order.
LITERATURE_UCF101 = [
    _row("Mettes and Snoek", "[28]", ["32.8", "40.4 ± 1.0", "51.2 ± 5.0"]),
    _row("Mettes et al.", "[27]", ["36.3", "47.3", "61.1"]),
    _row("Kim et al.", "[20]", ["–", "48.9 ± 5.8", "–"], "51"),
    _row("Chen and Huang", "[5]", ["–", "51.8 ± 2.9", "–"], "51"),
    _row("Brattoli et al.", "[2]", ["39.8", "48", "–"], "664"),
    _row("Huang et al.", "[17]", ["–", "46.4 ± 3.1", "–"], "51"),
    _row("Kerrigan et al.", "[19]", ["40.1", "49.2", "–"], "664"),
    _row("Doshi et al.", "[8]", ["45.0", "–", "–"], "595"),
    _row("Huang et al.", "[18]", ["–", "45.9 ± 3.4", "–"], "51"),
    _row("Estevam et al.", "[12]", ["–", "49.0 ± 3.5", "–"]),
    _row("Lin et al.", "[24]", ["–", "58.7 ± 3.3", "–"], "664"),
    _row("Lin et al.", "[24]", ["46.7", "55.9", "–"], "605"),
    _row("Gowda et al.", "[15]", ["–", "53.9 ± 2.5", "–"], "51"),
    _row("Estevam et al. (O)", "[9]", ["39.8", "49.4 ± 4.0", "60.0 ± 8.5"]),
    _row("Estevam et al. (O + C)", "[9]", ["40.9", "53.1 ± 3.9", "63.7 ± 8.3"]),
    _row("CEZSAR paper (VE)", "this paper", ["49.8", "59.1 ± 2.7", "72.6 ± 5.9"]),
    _row("CEZSAR paper (VE + O)", "this paper", ["50.9", "59.4 ± 3.6", "72.9 ± 5.9"]),
]

# Table 2 of the paper (Kinetics-400), in the printed order.
LITERATURE_KINETICS400 = [
    _row(m, c, v, dataset="kinetics400") for m, c, v in [
        ("Mettes and Snoek", "[28]", ["6.0", "10.8 ± 1.0", "21.8 ± 3.5"]),
        ("Mettes et al.", "[27]", ["6.4", "11.1 ± 0.8", "21.9 ± 3.8"]),
        ("Bretti and Mettes", "[3]", ["9.8", "18.0 ± 1.1", "29.7 ± 5.0"]),
        ("Estevam et al. (O)", "[9]", ["20.4", "32.4 ± 2.4", "49.3 ± 6.8"]),
        ("Estevam et al. (O + C)", "[9]", ["19.4", "35.1 ± 2.4", "54.6 ± 6.1"]),
        ("CEZSAR paper (VE)", "this paper", ["21.5", "38.4 ± 2.0", "58.1 ± 4.6"]),
        ("CEZSAR paper (VE + O)", "this paper", ["23.8", "40.4 ± 1.7", "58.7 ± 5.9"]),
    ]
]
LITERATURE = {"ucf101": LITERATURE_UCF101, "kinetics400": LITERATURE_KINETICS400}


def format_cell(result: dict) -> str:
    """'mean ± std' in percent from a protocol result ({"mean": 0.59, "std": 0.027, "runs": [...]}).

    A single-run protocol (0/all) prints the accuracy alone, as the paper does. A result over several training
    seeds ("n_seeds" > 1, "seed_std") prints the mean over seeds ± the std over seeds with their count, and the
    protocol's spread over its class subsets apart: "53.1 ± 2.4 (5 seeds)", "62.5 ± 1.8 (5 seeds), subsets ± 9.3".
    """
    mean = 100.0 * result["mean"]
    n_seeds = int(result.get("n_seeds") or 1)
    subsets = len(result.get("runs", [])) > 1
    if n_seeds > 1:
        cell = f"{mean:.1f} ± {100.0 * result['seed_std']:.1f} ({n_seeds} seeds)"
        return cell + (f", subsets ± {100.0 * result['std']:.1f}" if subsets else "")
    if not subsets:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100.0 * result['std']:.1f}"


def computed_row(model: str, results_by_column: dict[str, dict], source: str) -> Row:
    """A row computed here: `results_by_column` maps a table column ("101", "50", ...) to a protocol result."""
    return Row(model=model, cells={c: format_cell(r) for c, r in results_by_column.items()}, source=source,
               cite="computed here")


def pending_row(model: str, cell: str, note: str) -> Row:
    """A row this package can compute but did not: `cell` (e.g. "needs weights") in every column, `note` saying
    how to compute it in the "Computed on" column."""
    return Row(model=model, cells={c: cell for c in sum(COLUMNS.values(), [])}, source=note, cite="not computed")


def build_table(dataset: str, computed: list[Row]) -> list[Row]:
    """Table 1 (ucf101) or Table 2 (kinetics400): the paper's rows, then the rows computed here."""
    return list(LITERATURE[dataset]) + list(computed)


def _records(dataset: str, rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    cols = COLUMNS[dataset]
    header = ["Model", "Ref."] + (["Classes"] if dataset == "ucf101" else []) + cols + ["Computed on"]
    body = []
    for r in rows:
        line = [r.model, r.cite] + ([r.training_classes] if dataset == "ucf101" else [])
        line += [r.cells.get(c, "–") for c in cols] + [r.source]
        body.append(line)
    return header, body


def to_markdown(dataset: str, rows: list[Row], caption: str = "") -> str:
    """The table as GitHub markdown (column headers are the numbers of unseen test classes)."""
    header, body = _records(dataset, rows)
    lines = [f"**{caption}**", ""] if caption else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(lines) + "\n"


def to_csv(dataset: str, rows: list[Row]) -> str:
    header, body = _records(dataset, rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return buf.getvalue()


def write_table(dataset: str, rows: list[Row], stem: Path, caption: str = "") -> list[Path]:
    """Write `<stem>.md` and `<stem>.csv` atomically; returns the two paths."""
    out = []
    for ext, text in ((".md", to_markdown(dataset, rows, caption)), (".csv", to_csv(dataset, rows))):
        out.append(write_text(stem.with_suffix(ext), text))
    return out
