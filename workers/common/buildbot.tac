# buildbot-worker configuration for Namaskah CI containers: everything comes from
# the environment the master sets on the container (DockerLatentWorker), and the
# password is removed from the environment before any build command can inherit it.
import os

from twisted.application import service

from buildbot_worker.bot import Worker

basedir = os.environ.get("WORKER_BASEDIR", "/buildbot")
master_host = os.environ["BUILDMASTER"]
master_port = int(os.environ.get("BUILDMASTER_PORT", "9989"))
name = os.environ["WORKERNAME"]
password = os.environ.pop("WORKERPASS")
os.environ.pop("WORKERPASS_FILE", None)

application = service.Application("buildbot-worker")
worker = Worker(
    master_host,
    master_port,
    name,
    password,
    basedir,
    keepalive=60,
    umask=0o022,
    maxdelay=10,
    numcpus=None,
    allow_shutdown=None,
    maxRetries=10,
    protocol=os.environ.get("BUILDMASTER_PROTOCOL", "pb"),
)
worker.setServiceParent(application)
