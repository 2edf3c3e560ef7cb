#!/usr/bin/env bash
# Make sure a Docker engine answers; start one when none does (used by .ci/run and `make images`).
#
# On a host where Docker is managed (systemd, Docker Desktop, a remote DOCKER_HOST)
# this only checks that the engine answers. Otherwise it starts Debian's dockerd
# in the background with no bridge and no iptables rules: every Namaskah CI
# container uses host networking on 127.0.0.1, so none is needed.
#   DOCKERD_LOG   where dockerd writes its log (default /var/log/namaskah-dockerd.log)
#   DOCKER_WAIT   seconds to wait for the engine (default 60)
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/namaskah-dockerd.log}
WAIT=${DOCKER_WAIT:-60}

answers() { timeout 20 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
    echo "docker engine: answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
    exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
    echo "docker engine: DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local one" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "docker engine: dockerd is not installed (apt-get install docker.io as root)" >&2
        exit 1
    fi
    echo "docker engine: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends docker.io >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
    echo "docker engine: not answering, and starting dockerd needs root" >&2
    exit 1
fi

mkdir -p "$(dirname "$LOG")"
echo "docker engine: starting dockerd (log: $LOG)"
# setsid: the engine outlives this script and the shell that ran it
setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false >>"$LOG" 2>&1 </dev/null &
for _ in $(seq 1 "$WAIT"); do
    if answers; then
        echo "docker engine: answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        exit 0
    fi
    sleep 1
done
echo "docker engine: dockerd did not answer within ${WAIT}s; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2
exit 1
