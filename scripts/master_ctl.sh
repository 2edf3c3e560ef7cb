#!/usr/bin/env bash
# Start, stop or inspect the Buildbot master (used by `make up` / `make down` / `make status`).
# Settings come from master/pipeline.toml, PIPELINE_CONFIG and PIPELINE_* variables. `up` records the
# master it started in .state/master.pointer, so `down` and `status` find it without those variables,
# and the address it serves in <basedir>/namaskah-ci.url, which `status` prints.
# The basedir defaults outside this checkout (namaskah_ci/workdirs.py): `up` moves a master directory
# left at the old default, .state/master, there (stopping it first), or says in one line what to do.
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
LEGACY=${MASTER_LEGACY_BASEDIR:-$ROOT/.state/master}    # the default before issue 23; MASTER_LEGACY_BASEDIR: for tests
URL_FILE=namaskah-ci.url                                # in the basedir: the address the master `up` started serves

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
served_url() {  # the address the master running in BASEDIR serves (recorded by `up`), else the settings'
    local recorded
    recorded=$(cat "$BASEDIR/$URL_FILE" 2>/dev/null || true)
    echo "${recorded:-$URL}"
}

# `down` ends the master within ~30 s whatever a client, a build or a worker is doing: a clean
# shutdown (no new builds; running ones may finish) for STOP_CLEAN_SECONDS, then SIGTERM (Buildbot
# stops the running builds: RETRY, run again at the next start; triggered jobs CANCELLED) for
# STOP_TERM_SECONDS, then SIGKILL of the master's process group. Each escalation is said.
STOP_CLEAN_SECONDS=${STOP_CLEAN_SECONDS:-10}
STOP_TERM_SECONDS=${STOP_TERM_SECONDS:-15}
alive() {  # alive PID: the process exists and is not a zombie
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
}
gone_within() {  # gone_within PID SECONDS: wait (bounded) until the process is gone
    local deadline=$((SECONDS + $2))
    while alive "$1"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
stop_master() {
    local pid pgid
    pid=$(tr -dc '0-9' <"$BASEDIR/twistd.pid")
    "$BUILDBOT" stop --clean --no-wait --quiet "$BASEDIR" >/dev/null 2>&1 || true
    gone_within "$pid" "$STOP_CLEAN_SECONDS" && return 0
    kill -TERM "$pid" 2>/dev/null || true
    echo "clean shutdown did not finish in $STOP_CLEAN_SECONDS s: sent SIGTERM (running builds end RETRY and run again at the next start)"
    gone_within "$pid" "$STOP_TERM_SECONDS" && return 0
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -dc '0-9')
    if [ -n "$pgid" ] && [ "$pgid" != "$(ps -o pgid= -p $$ | tr -dc '0-9')" ]; then
        kill -KILL -- "-$pgid" 2>/dev/null || true
        echo "SIGTERM did not stop the master in $STOP_TERM_SECONDS s: sent SIGKILL to its process group $pgid"
    else
        kill -KILL "$pid" 2>/dev/null || true
        echo "SIGTERM did not stop the master in $STOP_TERM_SECONDS s: sent SIGKILL to process $pid"
    fi
    gone_within "$pid" 5 || { echo "master process $pid survived SIGKILL" >&2; exit 1; }
    rm -f "$BASEDIR/twistd.pid"  # SIGKILL left it; `up` would ignore it anyway
}

# Without PIPELINE_CONFIG, `down` and `status` also look at the master `up` started last.
if [ "${1:-}" != up ] && [ -z "${PIPELINE_CONFIG:-}" ] && ! running && [ -f "$POINTER" ]; then
    recorded=$(sed -n 's/^BASEDIR=//p' "$POINTER")
    if [ -n "$recorded" ] && running_in "$recorded"; then
        BASEDIR=$recorded
        URL=$(sed -n 's/^URL=//p' "$POINTER")
    fi
fi
# ... and a master still running at the old default (started before the basedir moved out of the checkout)
if [ "${1:-}" != up ] && ! running && running_in "$LEGACY"; then
    BASEDIR=$LEGACY
fi

# `up` with the default basedir and a master directory at the old default (.state/master, inside this
# checkout): stop that master if it runs, then move the directory (database, logs, reports, workers) to
# the new place; its virtualenvs are dropped (their scripts name the old path) and rebuilt. When the new
# place is taken, say what to do and stop: never two databases, never one lost.
move_legacy() {
    local default
    [ -f "$LEGACY/buildbot.tac" ] || [ -f "$LEGACY/state.sqlite" ] || return 0
    default=$("$PY" -m namaskah_ci.workdirs default "$ROOT")
    [ "$BASEDIR" = "$default" ] || return 0
    if [ -f "$BASEDIR/buildbot.tac" ] || [ -f "$BASEDIR/state.sqlite" ]; then
        echo "the master directory $LEGACY (the old default, inside this checkout) was not moved: $BASEDIR exists too; keep one: 'mv $LEGACY $BASEDIR' after moving $BASEDIR away, or remove $LEGACY, then make up" >&2
        exit 1
    fi
    if running_in "$LEGACY"; then
        local here=$BASEDIR
        BASEDIR=$LEGACY
        stop_master
        BASEDIR=$here
    fi
    mkdir -p "$(dirname "$BASEDIR")"
    rmdir "$BASEDIR" 2>/dev/null || true  # an empty directory made before
    mv "$LEGACY" "$BASEDIR" || { echo "could not move $LEGACY to $BASEDIR: move it there by hand, then make up" >&2; exit 1; }
    rm -rf "${BASEDIR:?}/cache" "$BASEDIR/twistd.pid" "$BASEDIR/$URL_FILE"
    echo "moved the master directory $LEGACY to $BASEDIR (job directories must be outside any project; virtualenvs are rebuilt)"
}

case "${1:-}" in
up)
    SECRETS=$(setting secrets_dir)
    mkdir -p "$SECRETS" && chmod 700 "$SECRETS"
    [ "$(id -u)" != 0 ] || "$ROOT/scripts/create_job_user.sh" "$(setting workers.job_user)" || true  # local jobs' user
    if running; then
        echo "master already running: $(served_url)"
        exit 0
    fi
    move_legacy
    # local jobs run under the basedir: refused inside a project, a warning when the file is in /tmp
    if [ "$(setting workers.mode)" = local ]; then
        "$PY" -m namaskah_ci.workdirs check "$BASEDIR" || exit 2
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
    rm -f "$BASEDIR/$URL_FILE"
    "$BUILDBOT" start --quiet "$BASEDIR" || { tail -n 30 "$BASEDIR/twistd.log" >&2; exit 1; }
    echo "$URL" >"$BASEDIR/$URL_FILE"
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
        stop_master
        echo "master stopped"
    else
        echo "master not running"
    fi
    ;;
status)
    if running; then echo "running: $(served_url)"; else echo "not running"; exit 1; fi
    ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
