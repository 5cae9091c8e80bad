"""Summarise a mutmut run (benchmarks/mutation.sh) over the targets of benchmarks/mutation_targets.txt.

Prints, as Markdown, mutants per function by verdict, the score (killed / (killed + survived + timeout)) and
every surviving mutant with its changed lines. Run from the repository root after `mutmut run`."""
from __future__ import annotations

import fnmatch
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files


def targets(path: Path = Path("benchmarks/mutation_targets.txt")) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def main() -> None:
    globs = targets()
    by_func: dict[str, Counter] = defaultdict(Counter)
    survivors: list[tuple[str, Path]] = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in data.exit_code_by_key.items():
            if not any(fnmatch.fnmatch(name, g) for g in globs):
                continue
            status = status_by_exit_code[code]
            by_func[re.sub(r"__mutmut_\d+$", "", name)][status] += 1
            if status in ("survived", "no tests", "timeout", "suspicious"):
                survivors.append((name, path))
    cols = ["killed", "survived", "no tests", "timeout", "suspicious", "not checked"]
    total: Counter = Counter()
    print("| function | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
    for func in sorted(by_func):
        c = by_func[func]
        total.update(c)
        print(f"| `{func}` | " + " | ".join(str(c[k]) for k in cols) + " |")
    print("| **all** | " + " | ".join(f"**{total[k]}**" for k in cols) + " |")
    run = total["killed"] + total["survived"] + total["timeout"] + total["no tests"] + total["suspicious"]
    if run:
        print(f"\nmutants run {run}, killed {total['killed']} ({100 * total['killed'] / run:.1f} %), "
              f"not run {total['not checked']}")
    if "--survivors" in sys.argv:
        print("\n## survivors\n")
        for name, path in sorted(survivors):
            diff = [ln for ln in get_diff_for_mutant(name, path=path).splitlines()
                    if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
            print(f"- `{name}`: " + " → ".join(f"`{ln[1:].strip()}`" for ln in diff))


if __name__ == "__main__":
    main()
