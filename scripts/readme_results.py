"""Write the README's embedded-results block from the committed figures folder, so that no number or comparison
in it is typed by hand: python scripts/readme_results.py [--check]

The block (between `<!-- embedded-results:begin -->` and `<!-- embedded-results:end -->`) is made of
figures/table1.md and table2.md (the literature rows of the paper and of [9], then every row computed here but
the CLIP ones, which need weights this machine cannot download), figures/comparisons.md (paired over training
seeds, `cezsar.reporting.compare`), figures/fig3_hard_classes.md and figures/tau_ablation.md, all written by the
notebooks. `--check` exits 1 when the README's block differs (tests/test_packaging.py runs it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- embedded-results:begin -->", "<!-- embedded-results:end -->"


def _table(path: Path, title: str) -> str:
    """The table's header and the rows a newcomer compares: the paper's, [9]'s and ours (no CLIP rows)."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("|")]
    head, rows = lines[:2], lines[2:]
    keep = [r for r in rows if ("| this paper |" in r or "| [9] |" in r or "| computed here |" in r)
            and "CLIP" not in r.split("|")[1]]
    return f"{title}\n\n" + "\n".join(head + keep) + "\n"


def _every_class(path: Path) -> str:
    """The comparisons of the every-class columns (UCF-101 form 101, Kinetics-400 form 400); the rest stay in
    the file, which the README points to."""
    lines = path.read_text(encoding="utf-8").splitlines()
    keep = [ln for ln in lines if not ln.startswith("- ") or ", 101 column" in ln or ", 400 column" in ln]
    return "\n".join(keep).rstrip("\n") + "\n\nThe other columns' comparisons: `figures/comparisons.md`.\n"


def block(figures: Path) -> str:
    """The README's results block, from the figures folder of the embedded parameter set."""
    parts = [
        _table(figures / "table1.md", "**Table 1** (UCF-101 form; literature rows as published, then the rows computed "
               "here; full table with the CLIP rows: `figures/table1.md`)"),
        _table(figures / "table2.md", "**Table 2** (Kinetics-400 form; full table: `figures/table2.md`)"),
        _every_class(figures / "comparisons.md"),
        "| Fig. 1 — t-SNE of four confusable classes | Fig. 3 — confusion matrices of the hard classes |\n"
        "|---|---|\n| ![Fig. 1](figures/fig1_tsne.png) | ![Fig. 3](figures/fig3_confusion.png) |\n",
        (figures / "fig3_hard_classes.md").read_text(encoding="utf-8"),
        "**τ ablation** (`figures/tau_ablation.md`; SynthActions UCF-form, every class)\n\n"
        + (figures / "tau_ablation.md").read_text(encoding="utf-8"),
        "![τ ablation](figures/tau_ablation.png)\n",
    ]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when README.md's block is not the generated one")
    args = ap.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:a] + "\n" + block(ROOT / "figures") + text[b:]
    if args.check:
        if new != text:
            print("README.md: the embedded-results block differs from figures/; run python scripts/readme_results.py",
                  file=sys.stderr)
            return 1
        return 0
    readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
