#!/usr/bin/env bash
# Create the unprivileged user a root master runs local jobs' commands as ([workers] job_user), if missing:
# a system user with its own group, no login shell and a private home /var/lib/<user> (which jobs never
# see: each command runs in a bubblewrap sandbox whose HOME is its build's own, ci_sandbox.py).
#     scripts/create_job_user.sh [USER]      (default: namaskah-job; "" does nothing)
# `scripts/master_ctl.sh up` calls it when running as root. Harmless when the user exists.
set -euo pipefail
NAME=${1-namaskah-job}
[ -n "$NAME" ] || exit 0
if id -u "$NAME" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "create_job_user.sh: creating the job user $NAME needs root" >&2
    exit 1
fi
HOME_DIR=/var/lib/$NAME
NOLOGIN=$(command -v nologin || echo /usr/sbin/nologin)
if command -v useradd >/dev/null; then
    useradd --system --user-group --home-dir "$HOME_DIR" --create-home --shell "$NOLOGIN" \
        --comment "Namaskah CI jobs" "$NAME"
elif command -v adduser >/dev/null; then  # BusyBox (Alpine)
    addgroup -S "$NAME"
    adduser -S -D -h "$HOME_DIR" -s "$NOLOGIN" -G "$NAME" -g "Namaskah CI jobs" "$NAME"
else
    echo "create_job_user.sh: neither useradd nor adduser found: create the system user $NAME by hand" >&2
    exit 1
fi
mkdir -p "$HOME_DIR"
chown "$NAME:$NAME" "$HOME_DIR"
chmod 700 "$HOME_DIR"
echo "created the job user $NAME (home $HOME_DIR, no login shell): local jobs run as it"
