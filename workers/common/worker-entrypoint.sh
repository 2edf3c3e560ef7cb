#!/bin/sh
# Run buildbot-worker in the foreground (PID 1 is tini). The master passes BUILDMASTER,
# BUILDMASTER_PORT, WORKERNAME and WORKERPASS in the environment (DockerLatentWorker);
# buildbot.tac reads them and drops the password before any build command starts.
set -eu
: "${BUILDMASTER:?BUILDMASTER is not set}" "${WORKERNAME:?WORKERNAME is not set}" "${WORKERPASS:?WORKERPASS is not set}"
BASEDIR=${WORKER_BASEDIR:-/buildbot}
mkdir -p "$BASEDIR"
cd "$BASEDIR"
exec /opt/buildbot-worker/bin/twistd --nodaemon --pidfile= --logfile=- --python=/opt/buildbot-worker/buildbot.tac
