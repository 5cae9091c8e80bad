#!/usr/bin/env bash
# Run every notebook in order with papermill: ./run_all.sh [PARAMS.yaml]   (default params/embedded.yaml)
# Executed copies go to runs/<params-name>/; figures and tables to figures/. Stops at the first failing
# notebook, names it, and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")"
START=$SECONDS
source scripts/setup_env.sh
SETUP_S=$((SECONDS - START))
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
PARAMS="${1:-params/embedded.yaml}"
[ -f "$PARAMS" ] || { echo "run_all: no parameter file $PARAMS" >&2; exit 2; }
NAME="$(basename "${PARAMS%.*}")"
OUT="${CEZSAR_RUNS_DIR:-runs}/$NAME"
mkdir -p "$OUT"
NOTEBOOKS_DIR="${CEZSAR_NOTEBOOKS:-notebooks}"
shopt -s nullglob
books=("$NOTEBOOKS_DIR"/[0-9][0-9]_*.ipynb)
[ ${#books[@]} -gt 0 ] || { echo "run_all: no notebooks under $NOTEBOOKS_DIR/" >&2; exit 1; }
echo "[run_all] parameters $PARAMS -> $OUT (${#books[@]} notebooks)"
i=0
for nb in "${books[@]}"; do
  i=$((i + 1))
  t0=$SECONDS
  base="$(basename "$nb")"
  echo "[run_all] ($i/${#books[@]}) $base ..."
  if ! "$PY" -m papermill "$nb" "$OUT/$base" -f "$PARAMS" -p params_file "$PARAMS" -p run_dir "$OUT" --cwd "$NOTEBOOKS_DIR" \
       --log-level WARNING --no-progress-bar > "$OUT/${base%.ipynb}.log" 2>&1; then
    echo "[run_all] FAILED: $base (see $OUT/$base and $OUT/${base%.ipynb}.log)" >&2
    tail -n 25 "$OUT/${base%.ipynb}.log" >&2
    exit 1
  fi
  echo "[run_all]      $base done in $((SECONDS - t0)) s"
done
echo "[run_all] all ${#books[@]} notebooks done in $((SECONDS - START - SETUP_S)) s (set-up ${SETUP_S} s); executed notebooks in $OUT/, figures and tables in figures/, results in $OUT/results.json"
