#!/usr/bin/env bash
# Run the test suite: ./run_tests.sh [pytest args]   (sets itself up on first use; one worker per core)
#   ./run_tests.sh --setup-only   only build the environment and prepare the offline resources
set -euo pipefail
cd "$(dirname "$0")"
SECONDS=0
source scripts/setup_env.sh
echo "[setup] done in ${SECONDS}s"
if [ "${1:-}" = "--setup-only" ]; then exit 0; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
# one pytest-xdist worker per core (at most 4; CEZSAR_TEST_WORKERS=N sets it, 0 runs in this process), each test
# file on one worker so that a file's shared pipeline run is made once (tests/conftest.py splits the threads)
workers="${CEZSAR_TEST_WORKERS:-$(n="$(nproc 2>/dev/null || echo 1)"; echo $(( n < 4 ? n : 4 )))}"
parallel=()
if [ "$workers" -gt 1 ] && "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('xdist') is None)"; then
  parallel=(-n "$workers" --dist loadfile)
fi
set +e
"$PY" -m pytest "${parallel[@]}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "no tests were collected: treated as a failure" >&2; rc=1; fi
exit "$rc"
