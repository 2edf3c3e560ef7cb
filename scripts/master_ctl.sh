#!/usr/bin/env bash
# Start, stop or inspect the Buildbot master (used by `make up` / `make down` / `make status`).
# Settings come from master/pipeline.toml, PIPELINE_CONFIG and PIPELINE_* variables. `up` records the
# master it started in .state/master.pointer, so `down` and `status` find it without those variables.
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
POINTER=${MASTER_POINTER:-$ROOT/.state/master.pointer}  # MASTER_POINTER: for tests

# A master runs in BASEDIR when its pidfile names a live process (not a zombie) working in BASEDIR:
# a pid reused by another process after a crash or reboot does not count.
running_in() {
    local base=$1 pid state
    [ -f "$base/twistd.pid" ] || return 1
    pid=$(tr -dc '0-9' <"$base/twistd.pid")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ] || return 1
    [ "$(readlink -f "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$base")" ]
}
running() { running_in "$BASEDIR"; }

# Without PIPELINE_CONFIG, `down` and `status` also look at the master `up` started last.
if [ "${1:-}" != up ] && [ -z "${PIPELINE_CONFIG:-}" ] && ! running && [ -f "$POINTER" ]; then
    recorded=$(sed -n 's/^BASEDIR=//p' "$POINTER")
    if [ -n "$recorded" ] && running_in "$recorded"; then
        BASEDIR=$recorded
        URL=$(sed -n 's/^URL=//p' "$POINTER")
    fi
fi

case "${1:-}" in
up)
    SECRETS=$(setting secrets_dir)
    mkdir -p "$SECRETS" && chmod 700 "$SECRETS"
    [ "$(id -u)" != 0 ] || "$ROOT/scripts/create_job_user.sh" "$(setting workers.job_user)" || true  # local jobs' user
    if running; then
        echo "master already running: $URL"
        exit 0
    fi
    rm -f "$BASEDIR/twistd.pid"  # left by a crash: its pid may belong to another process by now
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
    mkdir -p "$(dirname "$POINTER")"
    printf 'BASEDIR=%s\nURL=%s\nCONFIG=%s\n' "$BASEDIR" "$URL" "${PIPELINE_CONFIG:-}" >"$POINTER"
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
