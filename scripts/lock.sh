#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml: ./scripts/lock.sh
#   locks/cpu.txt   every package ./run_all.sh and ./run_tests.sh install (torch's CPU build)
#   locks/cuda.txt  the same set with PyPI's CUDA build of torch (and only torch's own CUDA dependencies differ)
# Made with pip-tools (pip-compile), run from a throwaway tool environment on Python 3.11: the oldest 3.11 at hand
# (CEZSAR_LOCK_PYTHON), so that the lock installs on every 3.11.x. Resolution uses pip's own settings:
# where pip does not find torch 2.13.0+cpu (it lives on the PyTorch index, not PyPI), run
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu ./scripts/lock.sh
# Check and commit the two files afterwards (README, "A locked environment").
set -euo pipefail
cd "$(dirname "$0")/.."
# the oldest Python 3.11 on PATH: a pin that needs a later 3.11.x (e.g. Requires-Python >=3.11.5) is avoided
LOCK_PY="${CEZSAR_LOCK_PYTHON:-}"
if [ -z "$LOCK_PY" ]; then
  LOCK_PY="$(for p in $(which -a python3.11 python3 2>/dev/null); do
      "$p" -c 'import sys; v = sys.version_info; v[:2] == (3, 11) and print(v.micro, sys.executable)' 2>/dev/null
    done | sort -n | head -n 1 | cut -d' ' -f2-)"
fi
[ -n "$LOCK_PY" ] || { echo "lock: no Python 3.11 on PATH (set CEZSAR_LOCK_PYTHON)" >&2; exit 1; }
TOOLS="${CEZSAR_LOCK_TOOLS:-${TMPDIR:-/tmp}/cezsar-pip-tools}"
if [ ! -x "$TOOLS/bin/pip-compile" ] || [ "$("$TOOLS/bin/python" -V)" != "$("$LOCK_PY" -V)" ]; then
  rm -rf "$TOOLS"
  "$LOCK_PY" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q "pip-tools==7.7.0"
fi
echo "lock: resolving with $("$TOOLS/bin/python" -V) ($LOCK_PY)"
export CUSTOM_COMPILE_COMMAND="./scripts/lock.sh"
compile() {  # compile OUT [extra pip-compile args...]
  local out="$1"; shift
  "$TOOLS/bin/pip-compile" -q --extra dev --strip-extras --allow-unsafe --no-emit-find-links --no-emit-index-url \
    --no-emit-trusted-host --upgrade --output-file "$out" "$@" pyproject.toml
}
NOCPU="$(mktemp)"; trap 'rm -f "$NOCPU"' EXIT
echo 'torch!=2.13.0+cpu' > "$NOCPU"  # the CUDA lock: PyPI's build of the same torch release
compile locks/cpu.txt
compile locks/cuda.txt --constraint "$NOCPU"
sed -i "s|$NOCPU|(the CUDA build: torch!=2.13.0+cpu)|" locks/cuda.txt
grep -q '^torch==2.13.0+cpu$' locks/cpu.txt || {
  echo "lock: locks/cpu.txt has no torch==2.13.0+cpu; set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" >&2
  exit 1
}
echo "lock: wrote locks/cpu.txt and locks/cuda.txt ($(grep -c '^[A-Za-z0-9]' locks/cpu.txt) packages)"
