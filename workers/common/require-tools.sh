#!/bin/sh
# namaskah-require-tools TOOL...: the docker-mode "required tools" step.
# First the image's own record: a tool the image build could not install is listed in
# /etc/namaskah-tools-missing ("TOOL: reason"), and the job fails with that reason.
# Then the checkout's scripts/ci_require_tools.py (PATH lookups, `docker info`).
set -u
status=0
if [ -f /etc/namaskah-tools-missing ]; then
    for tool in "$@"; do
        line=$(grep "^$tool:" /etc/namaskah-tools-missing || true)
        if [ -n "$line" ]; then
            echo "missing tool: $line" >&2
            status=1
        fi
    done
fi
if [ -f scripts/ci_require_tools.py ]; then
    python3 scripts/ci_require_tools.py "$@" || status=1
fi
exit $status
