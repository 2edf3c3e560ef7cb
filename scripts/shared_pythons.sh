#!/usr/bin/env bash
# Interpreters the jobs' unprivileged user can run, made now rather than at their first job: a root master
# runs local jobs as [workers] job_user, which cannot enter a private home such as /root, where pyenv keeps
# its Pythons. For each version asked for (default: the matrix's 3.9 and 3.11) that the job user cannot run
# anywhere else, the master's interpreter lookup (namaskah_ci/jobs/hostenv.py, the copy in
# namaskah_ci/jobs/shared_pythons.py) copies the newest pyenv version to /opt/namaskah-ci/python/<version>
# (world-readable, a --enable-shared build's RUNPATH pointed at the copy with patchelf). The master does the
# same for any other version the first time a job names it. Root only; does nothing when every version is
# reachable. Used by scripts/install_deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || exit 0
if ! command -v patchelf >/dev/null; then  # pyenv's --enable-shared builds need it for their copies
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends patchelf >/dev/null 2>&1 ||
        echo "shared_pythons.sh: patchelf is not installed (apt-get install patchelf): copies of" \
            "--enable-shared Pythons will fail naming it" >&2
fi
PYTHON=${PYTHON:-python3}
# shellcheck disable=SC2086  # the versions are words
PYTHONPATH=master "$PYTHON" -m namaskah_ci.jobs.hostenv --job-user "${NAMASKAH_JOB_USER-namaskah-job}" \
    ${NAMASKAH_PYTHON_VERSIONS:-3.9 3.11}
