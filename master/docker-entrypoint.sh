#!/bin/sh
# The master container's entry point: create the master directory on first start,
# `buildbot upgrade-master` (database migrations) on every start, then run the master
# in the foreground. Settings come from PIPELINE_* variables and PIPELINE_CONFIG.
#
# With a PostgreSQL password in /run/secrets/db_password (docker-compose.yml), the
# database URL is written to a 0600 settings file rather than the environment: the
# master's local workers pass their environment on to the commands they run.
set -eu
if [ -z "${PIPELINE_CONFIG:-}" ] && [ -s /run/secrets/db_password ]; then
    umask 077
    mkdir -p /var/lib/namaskah
    python - <<'PY'
import os, urllib.parse
password = open("/run/secrets/db_password").read().strip()
url = "postgresql://{user}:{pw}@{host}:{port}/{db}".format(
    user=os.environ.get("NAMASKAH_DB_USER", "buildbot"), pw=urllib.parse.quote(password, safe=""),
    host=os.environ.get("NAMASKAH_DB_HOST", "127.0.0.1"), port=os.environ.get("NAMASKAH_DB_PORT", "5433"),
    db=os.environ.get("NAMASKAH_DB_NAME", "buildbot"))
with open("/var/lib/namaskah/database.toml", "w") as handle:
    handle.write(f'[master]\ndb_url = "{url}"\n')
PY
    export PIPELINE_CONFIG=/var/lib/namaskah/database.toml
    umask 022
fi
python -m namaskah_ci.settings >/dev/null  # one line naming the key when a setting is wrong
BASEDIR=$(python -m namaskah_ci.settings basedir)
mkdir -p "$BASEDIR"
if [ ! -f "$BASEDIR/buildbot.tac" ]; then
    # no --db: the URL (maybe with a password) stays out of argv and master.cfg.sample;
    # upgrade-master below creates the tables in the configured database
    buildbot create-master --quiet --relocatable --config=/opt/namaskah/master/master.cfg \
        --db=sqlite:// "$BASEDIR"
fi
buildbot upgrade-master "$BASEDIR"  # prints the database URL without its password
exec buildbot start --nodaemon "$BASEDIR"
