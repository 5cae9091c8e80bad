# Sourced by run_all.sh and run_tests.sh: find or build the Python environment, then prepare the offline
# resources. Sets PY (the interpreter to use). Idempotent: a second call installs nothing.
#
# Order: an already active conda/venv environment that has the dependencies; else ./.venv, created with
# `python3 -m venv` and filled from the lock file (every package at its exact version), then cezsar itself
# (`pip install --no-deps -e .`); re-installed only when pyproject.toml or the lock file changes.
# The lock: locks/cpu.txt (torch's CPU build), or CEZSAR_LOCK=locks/cuda.txt for PyPI's CUDA build of the same
# torch; refresh both with ./scripts/lock.sh (README, "A locked environment").

_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# every dependency installed: found, not imported (importing torch and transformers costs ~10 s a call); a package
# that is present but broken fails at its first use with its own error
_deps_ok() {
  "$1" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in
           ('cezsar', 'torch', 'sentence_transformers', 'papermill', 'av', 'nltk', 'pytest')))" >/dev/null 2>&1
}

PY=""
if [ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] && [ "${VIRTUAL_ENV:-}" != "$_root/.venv" ]; then
  _active="$(command -v python || true)"
  if [ -n "$_active" ] && _deps_ok "$_active"; then
    PY="$_active"
    echo "[setup] using the active environment: $PY"
  fi
fi

if [ -z "$PY" ]; then
  _venv="$_root/.venv"
  _stamp="$_venv/.cezsar-installed"
  _lock="${CEZSAR_LOCK:-locks/cpu.txt}"
  case "$_lock" in /*) ;; *) _lock="$_root/$_lock" ;; esac
  [ -f "$_lock" ] || { echo "[setup] no lock file $_lock (CEZSAR_LOCK)" >&2; return 1 2>/dev/null || exit 1; }
  _want="$(cat "$_root/pyproject.toml" "$_lock" | sha256sum | cut -d' ' -f1)"
  case "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" in
    3.11) ;;
    *) echo "[setup] note: the lock files are made for Python 3.11; python3 here is another version, pip may refuse a pin" >&2 ;;
  esac
  if [ ! -x "$_venv/bin/python" ]; then
    echo "[setup] creating $_venv (python3 -m venv)"
    python3 -m venv "$_venv" || { echo "[setup] python3 -m venv failed" >&2; return 1 2>/dev/null || exit 1; }
  fi
  if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ] || ! _deps_ok "$_venv/bin/python"; then
    echo "[setup] installing the locked environment ${_lock#$_root/} and cezsar into $_venv (first run: a few minutes)"
    # torch's CPU build (2.13.0+cpu) comes from the PyTorch index: where pip does not find it, say where to look
    "$_venv/bin/python" -m pip install --disable-pip-version-check -q -r "$_lock" \
      || { echo "[setup] pip install -r ${_lock#$_root/} failed; if torch==2.13.0+cpu was not found, rerun with" \
                "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu (or CEZSAR_LOCK=locks/cuda.txt for the CUDA" \
                "build)" >&2; return 1 2>/dev/null || exit 1; }
    # cezsar itself, editable, with nothing more: every dependency (setuptools included) is the lock's
    "$_venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e "$_root" \
      || { echo "[setup] pip install -e . failed" >&2; return 1 2>/dev/null || exit 1; }
    # pip leaves an installed build whose version differs only in its local label (2.13.0+cpu meets torch==2.13.0):
    # replace each such package with exactly the lock's build, e.g. after switching to CEZSAR_LOCK=locks/cuda.txt
    _replace="$("$_venv/bin/python" -c "import sys; from cezsar.base.environment import builds_to_replace
print(' '.join(builds_to_replace(sys.argv[1])))" "$_lock")" \
      || { echo "[setup] could not compare the installed packages with ${_lock#$_root/}" >&2; return 1 2>/dev/null || exit 1; }
    if [ -n "$_replace" ]; then
      echo "[setup] installing the lock's own builds of: $_replace"
      # shellcheck disable=SC2086  # one argument per package
      "$_venv/bin/python" -m pip install --disable-pip-version-check -q --force-reinstall --no-deps $_replace \
        || { echo "[setup] pip install $_replace failed" >&2; return 1 2>/dev/null || exit 1; }
    fi
    echo "$_want" > "$_stamp"
  fi
  PY="$_venv/bin/python"
fi

# offline resources (WordNet for nltk, model paths); a no-op when already prepared
"$PY" -m cezsar setup >/dev/null || { echo "[setup] preparing offline resources failed: run '$PY -m cezsar doctor'" >&2; return 1 2>/dev/null || exit 1; }
export PY
