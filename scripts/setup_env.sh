# Sourced by run_all.sh and run_tests.sh: find or build the Python environment, then prepare the offline
# resources. Sets PY (the interpreter to use). Idempotent: a second call installs nothing.
#
# Order: an already active conda/venv environment that has the dependencies; else ./.venv (created with
# `python3 -m venv` and `pip install -e .[dev]` on first use, re-installed only when pyproject.toml changes).

_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_deps_ok() { "$1" -c "import cezsar, torch, sentence_transformers, papermill, av, nltk, pytest" >/dev/null 2>&1; }

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
  _want="$(sha256sum "$_root/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -x "$_venv/bin/python" ]; then
    echo "[setup] creating $_venv (python3 -m venv)"
    python3 -m venv "$_venv" || { echo "[setup] python3 -m venv failed" >&2; return 1 2>/dev/null || exit 1; }
  fi
  if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ] || ! _deps_ok "$_venv/bin/python"; then
    echo "[setup] installing cezsar and its dependencies into $_venv (first run: a few minutes)"
    # torch is pinned in pyproject.toml (==2.13.0): an unpinned torch would pull a multi-GB CUDA build
    "$_venv/bin/python" -m pip install --disable-pip-version-check -q -e "$_root[dev]" \
      || { echo "[setup] pip install failed" >&2; return 1 2>/dev/null || exit 1; }
    echo "$_want" > "$_stamp"
  fi
  PY="$_venv/bin/python"
fi

# offline resources (WordNet for nltk, model paths); a no-op when already prepared
"$PY" -m cezsar setup >/dev/null || { echo "[setup] preparing offline resources failed: run '$PY -m cezsar doctor'" >&2; return 1 2>/dev/null || exit 1; }
export PY
