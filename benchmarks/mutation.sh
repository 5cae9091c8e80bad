#!/usr/bin/env bash
# Mutation score of the paper's method (benchmarks/RESULTS.md "Mutation score"). mutmut mutates the functions
# listed in benchmarks/mutation_targets.txt and runs, for every mutant, only the fast-tier tests (-m "not slow")
# of the files in pyproject.toml [tool.mutmut] pytest_add_cli_args_test_selection that executed the mutated
# function while the selection ran once unmutated. A measurement, not a CI check. Needs the dev extra (mutmut).
#   benchmarks/mutation.sh              run every target mutant without a verdict (kept in mutants/: it resumes)
#   MUTATION_REDO_SURVIVORS=1 benchmarks/mutation.sh   the same, and the survivors again (after new tests)
#   benchmarks/mutation.sh 'GLOB' ...   (re)run only these mutants, e.g. 'cezsar.evaluation.zsar.x_predict__mutmut_*'
#   MUTMUT_CHILDREN=2: mutants tested at once (default 1)
# Writes mutants/ (scratch, git-ignored) and prints the per-function table and the survivors
# (benchmarks/mutation_report.py).
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONPATH  # the tests must import the mutated copy under mutants/, never this checkout
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  # every target mutant without a verdict yet (a resumed run does not redo the others)
  [ -d mutants ] || nice -n 15 mutmut run --max-children 1 'cezsar.no_such_function__mutmut_0' >/dev/null 2>&1 || true
  mapfile -t targets < <(nice -n 15 python benchmarks/mutation_report.py --expand ${MUTATION_REDO_SURVIVORS:+--survivors})
  [ "${#targets[@]}" -gt 0 ] || { python benchmarks/mutation_report.py --survivors; exit 0; }
fi
nice -n 15 mutmut run --max-children "${MUTMUT_CHILDREN:-1}" "${targets[@]}" || true
python benchmarks/mutation_report.py --survivors
