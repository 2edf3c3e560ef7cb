#!/usr/bin/env bash
# Start, stop or inspect the Buildbot master (used by `make up` / `make down` / `make status`).
# Settings come from master/pipeline.toml, PIPELINE_CONFIG and PIPELINE_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
BUILDBOT=$(dirname "$PY")/buildbot
export TZ=UTC PYTHONPATH=$ROOT/master

setting() { "$PY" -m namaskah_ci.settings "$1"; }

# A bad settings file stops here with one line naming the key.
if ! err=$("$PY" -m namaskah_ci.settings 2>&1); then
    echo "$err" >&2
    exit 2
fi
BASEDIR=$(setting basedir)
URL=$(setting buildbot_url)

running() { [ -f "$BASEDIR/twistd.pid" ] && kill -0 "$(cat "$BASEDIR/twistd.pid")" 2>/dev/null; }

case "${1:-}" in
up)
    SECRETS=$(setting secrets_dir)
    mkdir -p "$SECRETS" && chmod 700 "$SECRETS"
    if running; then
        echo "master already running: $URL"
        exit 0
    fi
    if [ ! -f "$BASEDIR/buildbot.tac" ]; then
        mkdir -p "$(dirname "$BASEDIR")"
        "$BUILDBOT" create-master --quiet --relocatable --config="$ROOT/master/master.cfg" \
            --db="$(setting database_url)" "$BASEDIR" >/dev/null
    else
        "$BUILDBOT" upgrade-master --quiet "$BASEDIR" >/dev/null
    fi
    "$BUILDBOT" checkconfig "$BASEDIR" >/dev/null
    "$BUILDBOT" start --quiet "$BASEDIR" || { tail -n 30 "$BASEDIR/twistd.log" >&2; exit 1; }
    for _ in $(seq 1 60); do
        curl -fsS -o /dev/null "${URL}api/v2/builders" 2>/dev/null && break
        sleep 1
    done
    echo "Namaskah CI is up: $URL  (logs: $BASEDIR/twistd.log)"
    ;;
down)
    if running; then
        "$BUILDBOT" stop --clean "$BASEDIR" >/dev/null 2>&1 || "$BUILDBOT" stop "$BASEDIR"
        echo "master stopped"
    else
        echo "master not running"
    fi
    ;;
status)
    if running; then echo "running: $URL"; else echo "not running"; exit 1; fi
    ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
