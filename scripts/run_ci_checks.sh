#!/usr/bin/env bash
# Run the pipeline's checks locally, one after another: the same job table as the Buildbot builders.
# Usage: scripts/run_ci_checks.sh [JOB ...] [--json results.json]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/run_ci_checks.py "$@"
