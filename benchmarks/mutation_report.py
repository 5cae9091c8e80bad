"""The mutants of benchmarks/mutation_targets.txt, and a summary of a mutmut run over them.

    python benchmarks/mutation_report.py --expand [--all | --survivors]   mutant names without a verdict (--all:
        every one; --survivors: with the survivors, to check them again after new tests)
    python benchmarks/mutation_report.py [--survivors]       Markdown table per function, score, survivors

A target line is a mutant-name glob, or `GLOB ~ REGEX`: the mutants of GLOB whose changed (original) source line
matches REGEX. The score is detected / (run - equivalent): run = killed + survived + no tests + timeout +
suspicious, detected = killed + timeout (a timeout is a caught mutant, see DETECTED), equivalent = the survivors
a line of benchmarks/mutation_equivalent.txt explains; "not checked" mutants are counted apart. Run from the
repository root after mutmut has generated mutants/."""
from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

CACHE = Path("mutants/changed_lines.json")  # mutant -> [original line, mutated line]; mutants/ is scratch
# Verdicts that count as detected. A timeout is a mutant that made the tests hang (an endless loop: a pool loop that
# never advances, a range that never ends): the fast tier would never finish on such a change, so it cannot slip
# through unnoticed. Mutation tools count it as caught: mutmut's own score (its `badge` command) is (killed +
# timeout) / tested, and Stryker's documented metrics count a timeout as "detected". Timeouts are therefore neither
# survivors to explain nor mutants to run again after new tests (each rerun would cost the whole timeout).
DETECTED = ("killed", "timeout")
UNDETECTED = ("survived", "no tests", "suspicious")


def _targets(path: Path = Path("benchmarks/mutation_targets.txt")) -> list[tuple[str, re.Pattern | None]]:
    out = []
    for ln in path.read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            glob, _, regex = ln.partition(" ~ ")
            out.append((glob.strip(), re.compile(regex.strip()) if regex.strip() else None))
    return out


def _equivalent(path: Path = Path("benchmarks/mutation_equivalent.txt")) -> list[tuple[str, re.Pattern, str]]:
    out = []
    for ln in path.read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            globs, regex, why = (part.strip() for part in ln.split(" ~ ", 2))
            out += [(g, re.compile(regex), why) for g in globs.split("|")]
    return out


def _changed(name: str, path: Path, cache: dict) -> list[str]:
    if name not in cache:
        diff = get_diff_for_mutant(name, path=path).splitlines()
        old = [ln[1:].strip() for ln in diff if ln.startswith("-") and not ln.startswith("---")]
        new = [ln[1:].strip() for ln in diff if ln.startswith("+") and not ln.startswith("+++")]
        cache[name] = [" ".join(old), " ".join(new)]
    return cache[name]


def selected() -> list[tuple[str, Path, int | None]]:
    """(mutant name, source path, exit code or None) of every targeted mutant."""
    targets = _targets()
    cache = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
    out = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in data.exit_code_by_key.items():
            for glob, regex in targets:
                if fnmatch.fnmatch(name, glob) and (regex is None or regex.search(_changed(name, path, cache)[0])):
                    out.append((name, path, code))
                    break
    CACHE.write_text(json.dumps(cache))
    return out


def main() -> None:
    mutants = selected()
    if "--expand" in sys.argv:
        redo = set(UNDETECTED) if "--survivors" in sys.argv else set()
        print("\n".join(n for n, _, code in mutants
                        if code is None or "--all" in sys.argv or status_by_exit_code[code] in redo))
        return
    cache = json.loads(CACHE.read_text())
    by_func: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for name, path, code in mutants:
        status = status_by_exit_code[code]
        by_func[re.sub(r"__mutmut_\d+$", "", name)][status] += 1
        if status in UNDETECTED:
            survivors.append((name, status, *_changed(name, path, cache)))
    cols = ["killed", "survived", "no tests", "timeout", "suspicious", "not checked"]
    total: Counter = Counter()
    print("| function | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
    for func in sorted(by_func):
        total.update(by_func[func])
        print(f"| `{func}` | " + " | ".join(str(by_func[func][k]) for k in cols) + " |")
    print("| **all** | " + " | ".join(f"**{total[k]}**" for k in cols) + " |")
    run = sum(total[k] for k in cols[:-1])
    detected = sum(total[k] for k in DETECTED)
    print(f"\nmutants {len(mutants)}: run {run}, detected {detected} (killed {total['killed']} + timeout "
          f"{total['timeout']}; {100 * detected / max(run, 1):.1f} % of those run), not run {total['not checked']}")
    if "--survivors" in sys.argv:
        rules = _equivalent()
        reasons = {n: next((why for g, rx, why in rules if fnmatch.fnmatch(n, g) and rx.search(new)), None)
                   for n, _, _, new in survivors}
        equivalent = sum(r is not None for r in reasons.values())
        live = run - equivalent
        print(f"equivalent (benchmarks/mutation_equivalent.txt): {equivalent}; detected / non-equivalent run: "
              f"{detected} / {live} = {100 * detected / max(live, 1):.1f} %\n")
        for name, status, old, new in sorted(survivors):
            why = f" — equivalent: {reasons[name]}" if reasons[name] else " — **not killed yet**"
            print(f"- `{name}` ({status}): `{old}` → `{new}`{why}")


if __name__ == "__main__":
    main()
