"""Commands that run only when a secret exists, and never put it in a log.

`SecretGatedCommand` renders its secret on the master. When the secret is
missing the step ends SKIPPED and says so in its summary ("skipped: no
codecov_token secret"). Otherwise the value goes to the worker as a file with
mode 0600 (not through `env`, which a LocalWorker writes to twistd.log), the
command gets the file's path, and the file is removed whatever the result.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer

from buildbot.process import buildstep, results
from buildbot.process.properties import Secret
from buildbot.steps.worker import CompositeStepMixin

SECRET_FILE_PLACEHOLDER = "{secret_file}"


class SecretGatedCommand(buildstep.ShellMixin, CompositeStepMixin, buildstep.BuildStep):
    """Run `command` (with `{secret_file}` replaced by the file's path) only if `secret` exists."""

    def __init__(self, secret: str, command: list[str], **kwargs):
        kwargs = self.setupShellMixin(kwargs)
        kwargs.setdefault("name", command[0])
        super().__init__(**kwargs)
        self.secret = secret
        self.gated_command = command
        self.skip_reason = ""

    @defer.inlineCallbacks
    def run(self):
        try:
            value = yield self.build.render(Secret(self.secret))
        except KeyError:
            value = None
        if not value:
            self.skip_reason = f"skipped: no {self.secret} secret"
            yield self.addCompleteLog("skipped", f"The secret '{self.secret}' is not configured; step not run.\n")
            return results.SKIPPED
        secret_file = f".secret-{uuid.uuid4().hex}"
        yield self.downloadFileContentToWorker(secret_file, value.strip(), mode=0o600, abandonOnFailure=True)
        try:
            command = [part.replace(SECRET_FILE_PLACEHOLDER, secret_file) for part in self.gated_command]
            cmd = yield self.makeRemoteShellCommand(command=command)
            yield self.runCommand(cmd)
            outcome = cmd.results()
        finally:
            yield self.runRmFile(self.build.path_module.join(self.workdir, secret_file), abandonOnFailure=False)
        return outcome

    def getResultSummary(self):
        if self.skip_reason:
            return {"step": self.skip_reason}
        return super().getResultSummary()
