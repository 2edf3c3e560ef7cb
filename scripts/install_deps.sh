#!/usr/bin/env bash
# Install the system packages Namaskah CI needs, when they are missing (Debian/Ubuntu; root or sudo).
# Used by `make up` and `make test`; does nothing when everything is present.
#   PostgreSQL 15 + Redis 7: per-build servers for the integration and migration jobs
#   git, curl, make: checkouts, health probes, the Makefile;  bubblewrap: local jobs' sandbox
#   chromium: the browser tests;  prometheus: the metrics test scrapes /metrics;  libcairo2: the status badges
#   gitleaks: the secrets-scan job (workers/tools/install-gitleaks.sh: the pinned release, else Debian's)
set -euo pipefail
cd "$(dirname "$0")/.."

extras() {
    ensure_gitleaks
    [ "$(id -u)" != 0 ] || scripts/create_job_user.sh "${NAMASKAH_JOB_USER-namaskah-job}" || true
    scripts/shared_pythons.sh || true  # after the job user: a root master's job user cannot enter /root
}

ensure_gitleaks() {
    command -v gitleaks >/dev/null 2>&1 && return 0
    workers/tools/install-gitleaks.sh || echo "warning: no gitleaks: the secrets-scan job will fail naming it" >&2
}

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
pg_bin() { ls /usr/lib/postgresql/15/bin/initdb >/dev/null 2>&1 || have initdb; }

pg_bin || missing+=(postgresql-15)
have redis-server || missing+=(redis-server)
have git || missing+=(git)
have bwrap || missing+=(bubblewrap)  # every local job's command runs in a bubblewrap sandbox (ci_sandbox.py)
have curl || missing+=(curl)
have make || missing+=(make)
"${PYTHON:-python3.11}" -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3.11-venv)
ldconfig -p 2>/dev/null | grep -q libcairo.so.2 || missing+=(libcairo2)
if [ "${1:-}" = "--with-browser" ]; then
    have chromium || missing+=(chromium)
    have prometheus || missing+=(prometheus)
fi

if [ ${#missing[@]} -eq 0 ]; then
    extras
    exit 0
fi

if [ "$(id -u)" = 0 ]; then SUDO=""; elif have sudo; then SUDO="sudo"; else
    echo "missing system packages: ${missing[*]} (install them with: apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
extras
