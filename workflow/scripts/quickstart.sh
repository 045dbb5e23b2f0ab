#!/usr/bin/env bash
# Set up the project's environment (a virtualenv in .venv, created or updated when the requirements change), then
#   pipeline [snakemake args...]   run the whole study: snakemake --cores all (default config) plus any args
#   test [pytest args...]          type-check src/eqdyn (mypy), lint (ruff check, ruff format --check), run the tests
# Needs only Python 3.11+ and pip. Usage: bash workflow/scripts/quickstart.sh pipeline|test [args...]
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${PYTHON:-python3}
venv=.venv
stamp=$venv/.requirements.sha256
want=$(cat envs/requirements.txt envs/requirements-dev.txt envs/requirements-data.txt pyproject.toml | sha256sum | cut -d' ' -f1)

if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing pinned requirements into $venv (a few minutes the first time)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # torch is pinned in the same file as its dependants so pip takes the CPU build (see README, Environment).
  "$venv/bin/python" -m pip install -q -r envs/requirements-dev.txt
  # molsets and qm9pack only ship data files; their own dependency pins are old and unused.
  "$venv/bin/python" -m pip install -q --no-deps -r envs/requirements-data.txt
  "$venv/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi

command=${1:-}
shift || true
export PATH="$PWD/$venv/bin:$PATH"
case "$command" in
  pipeline) exec snakemake --cores all "$@" ;;
  test) python -m mypy && python -m ruff check src tests && python -m ruff format --check src tests && exec python -m pytest "$@" ;;
  *) echo "usage: bash workflow/scripts/quickstart.sh pipeline|test [args...]" >&2; exit 2 ;;
esac
