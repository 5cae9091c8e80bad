#!/usr/bin/env bash
# Run every notebook in order with papermill: ./run_all.sh [PARAMS.yaml]   (default params/embedded.yaml)
# Executed copies, their logs (every printed line, progress included) and one HTML report page go to
# runs/<params-name>/; figures and tables to the set's figures_dir. Stops at the first failing notebook, names
# it, and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")"
START=$SECONDS
source scripts/setup_env.sh
SETUP_S=$((SECONDS - START))
PARAMS="${1:-params/embedded.yaml}"
[ -f "$PARAMS" ] || { echo "run_all: no parameter file $PARAMS" >&2; exit 2; }
# the whole parameter set is checked first: a misspelt key stops here, naming the nearest known one
MODELS="$("$PY" -c "import sys; from cezsar.harness.params import load, ParameterError
try: p = load(sys.argv[1]); print(p['text_model']); print(p['clip_model'] or '')
except ParameterError as err: sys.exit(f'run_all: {err}')" "$PARAMS")" || exit 2
# offline unless the set asks for a hub model that is not on this machine yet (e.g. the paper's SBERT, or a CLIP
# for the CLIP rows: clip_model)
mapfile -t MODEL_LIST <<< "$MODELS"  # one per line: a local path may hold spaces
UNCACHED="$("$PY" -c "import sys; from cezsar.encoders.resources import hub_model_cached
print(' '.join(m for m in sys.argv[1:] if m and not hub_model_cached(m)))" "${MODEL_LIST[@]}")"
if [ -z "$UNCACHED" ]; then
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
else
  echo "[run_all] $UNCACHED not cached: downloaded from the Hugging Face hub on first use (needs the network)"
  unset HF_HUB_OFFLINE TRANSFORMERS_OFFLINE
fi
# figures inline in the executed notebooks; one progress line per step in the logs; remembered widget values
# of JupyterLab sessions do not apply here (the parameter set rules)
export MPLBACKEND=module://matplotlib_inline.backend_inline CEZSAR_PROGRESS=log CEZSAR_HEADLESS=1
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
  # papermill passes the set's name only: every notebook reads the whole set itself (cezsar.harness.params), exactly as
  # when it is opened in JupyterLab
  if ! "$PY" -m papermill "$nb" "$OUT/$base" -p params_file "$PARAMS" -p run_dir "$OUT" --cwd "$NOTEBOOKS_DIR" \
       --log-output --log-level INFO --no-progress-bar > "$OUT/${base%.ipynb}.log" 2>&1; then
    echo "[run_all] FAILED: $base (see $OUT/$base and $OUT/${base%.ipynb}.log)" >&2
    tail -n 25 "$OUT/${base%.ipynb}.log" >&2
    exit 1
  fi
  echo "[run_all]      $base done in $((SECONDS - t0)) s"
done
# stage digests against the committed run's (data/digests/<set>.json, or <set>.<name>.json, a reference run of this
# machine's training kernels): the verdict goes into the report; a divergence is a finding, not a failure of the run
# (`cezsar verify` alone exits 1 on it)
rm -f "$OUT/verify.json"
if compgen -G "data/digests/$NAME.json" > /dev/null || compgen -G "data/digests/$NAME.*.json" > /dev/null; then
  "$PY" -m cezsar verify "$OUT" --params "$PARAMS" > "$OUT/verify.log" 2>&1 \
    && echo "[run_all] verify: every stage matches, $(grep -m1 '^reference' "$OUT/verify.log")" \
    || echo "[run_all] verify: $(grep -m1 '^verdict' "$OUT/verify.log" || tail -n 1 "$OUT/verify.log") (see $OUT/verify.log)"
fi
if ! "$PY" -m cezsar.harness.run_page "$OUT" > /dev/null 2> "$OUT/report.log"; then
  echo "[run_all] could not render $OUT/report.html (see $OUT/report.log)" >&2
  exit 1
fi
FIGS="$("$PY" -c "import sys; from cezsar.harness.params import load; print(load(sys.argv[1])['figures_dir'])" "$PARAMS")"
echo "[run_all] all ${#books[@]} notebooks done in $((SECONDS - START - SETUP_S)) s (set-up ${SETUP_S} s); executed notebooks and report.html in $OUT/, figures and tables in $FIGS/, results in $OUT/results.json"
