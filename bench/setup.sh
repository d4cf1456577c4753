#!/usr/bin/env bash
# Set up the benchmark's own tools; safe to run again (each step is skipped when done).
#   - wrk (Debian package) as the load generator;
#   - bench/.venv-litellm: the anchor, LiteLLM's proxy, pinned in requirements-litellm.txt;
#   - bench/.venv-candidates: the HTTP-stack candidates for candidates.py (+ py-spy).
# The project venv (.venv, `make demo`) must exist already: run.py uses it for Brace.
# Usage: bash bench/setup.sh [--no-litellm] [--no-candidates]
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3.11}"
want_litellm=1
want_candidates=1
for arg in "$@"; do
  case "$arg" in
    --no-litellm) want_litellm=0 ;;
    --no-candidates) want_candidates=0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if ! command -v wrk >/dev/null 2>&1; then
  if ! apt-get install -y wrk >/dev/null 2>&1; then
    apt-get update
    apt-get install -y wrk
  fi
fi

if [[ $want_litellm == 1 && ! -f .venv-litellm/.done ]]; then
  [[ -x .venv-litellm/bin/python ]] || "$PYTHON" -m venv .venv-litellm
  .venv-litellm/bin/python -m pip install -q --upgrade pip
  if [[ -f requirements-litellm.txt ]]; then
    .venv-litellm/bin/python -m pip install -q -r requirements-litellm.txt
  else
    # First run ever: take the current release and pin what we got.
    .venv-litellm/bin/python -m pip install -q 'litellm[proxy]'
    .venv-litellm/bin/python -m pip freeze > requirements-litellm.txt
  fi
  touch .venv-litellm/.done
fi

if [[ $want_candidates == 1 && ! -f .venv-candidates/.done ]]; then
  [[ -x .venv-candidates/bin/python ]] || "$PYTHON" -m venv .venv-candidates
  .venv-candidates/bin/python -m pip install -q --upgrade pip
  .venv-candidates/bin/python -m pip install -q -r requirements-candidates.txt
  touch .venv-candidates/.done
fi
echo "bench setup done"
