#!/usr/bin/env bash
# Run a repository's pipeline jobs locally, one after another: the same pipeline file, helpers,
# environment and settings as the master's jobs (scripts/run_ci_checks.py).
# Usage: scripts/run_ci_checks.sh [BUILDER ...] [--repo PATH] [--json results.json]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || { echo "run 'make up' (or 'make venv') first: $PY is missing" >&2; exit 2; }
exec "$PY" "$ROOT/scripts/run_ci_checks.py" "$@"
