"""SecretGatedCommand: skipped without its secret; with it, the value reaches the worker only as a 0600 file
whose path the command gets, the file is removed whatever happens, and the value is in no log."""

from __future__ import annotations

import types

from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest

from buildbot.process import remotetransfer
from buildbot.process.results import FAILURE, SKIPPED, SUCCESS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectDownloadFile, ExpectRemoteRef, ExpectRmfile, ExpectShell, TestBuildStepMixin

from namaskah_ci.steps import gated
from namaskah_ci.steps.gated import SECRET_FILE_PLACEHOLDER, SecretGatedCommand

TOKEN = "cc-token-5f0e8d1c9b7a"
SECRET_FILE = ".secret-0123abcd"


def codecov_step(**kwargs) -> SecretGatedCommand:
    kwargs.setdefault("name", "codecov")
    kwargs.setdefault("logEnviron", False)
    return SecretGatedCommand(
        "codecov_token",
        ["python", "scripts/ci_codecov.py", "--token-file", SECRET_FILE_PLACEHOLDER, "--file", "reports/coverage.xml"],
        **kwargs,
    )


COMMAND = ["python", "scripts/ci_codecov.py", "--token-file", SECRET_FILE, "--file", "reports/coverage.xml"]


class GatedTestBase(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    secrets: dict | None = {"codecov_token": TOKEN}

    def setUp(self):
        self.setup_test_reactor()
        self.patch(gated.uuid, "uuid4", lambda: types.SimpleNamespace(hex=SECRET_FILE[len(".secret-"):]))
        self.messages: list[str] = []

        def observer(event):
            self.messages.append(" ".join(str(part) for part in event.get("message", ())) + repr(event))

        log.addObserver(observer)
        self.addCleanup(log.removeObserver, observer)
        return self.setup_test_build_step(with_secrets=self.secrets)

    def expect_download(self, written: list, rc: int = 0):
        return ExpectDownloadFile(
            workerdest=SECRET_FILE,
            workdir="wkdir",
            blocksize=32 * 1024,
            maxsize=None,
            mode=0o600,
            reader=ExpectRemoteRef(remotetransfer.StringFileReader),
        ).download_string(written.append, size=1000).exit(rc)

    def assert_secret_nowhere(self, step):
        for name, logfile in step.logs.items():
            for text in (logfile.stdout, logfile.stderr, logfile.header):
                self.assertNotIn(TOKEN, text, f"secret in log {name!r}")
        self.assertNotIn(TOKEN, repr(step.command))
        for message in self.messages:
            self.assertNotIn(TOKEN, message)


class SecretPresentTest(GatedTestBase):
    @defer.inlineCallbacks
    def test_command_gets_the_file_and_the_file_is_removed(self):
        written: list = []
        yield self.setup_step(codecov_step())
        self.expect_commands(
            self.expect_download(written),
            ExpectShell(workdir="wkdir", command=COMMAND, log_environ=False).stdout("uploaded\n").exit(0),
            ExpectRmfile(path=f"wkdir/{SECRET_FILE}", log_environ=False).exit(0),
        )
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        self.assertEqual(written, [TOKEN.encode()])
        self.assert_secret_nowhere(self.get_nth_step(0))

    @defer.inlineCallbacks
    def test_file_is_removed_when_the_command_fails(self):
        written: list = []
        yield self.setup_step(codecov_step())
        self.expect_commands(
            self.expect_download(written),
            ExpectShell(workdir="wkdir", command=COMMAND, log_environ=False).stderr("upload refused\n").exit(1),
            ExpectRmfile(path=f"wkdir/{SECRET_FILE}", log_environ=False).exit(0),
        )
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
        self.assert_secret_nowhere(self.get_nth_step(0))

    @defer.inlineCallbacks
    def test_file_is_removed_when_the_command_raises(self):
        written: list = []
        yield self.setup_step(codecov_step())
        self.expect_commands(
            self.expect_download(written),
            ExpectShell(workdir="wkdir", command=COMMAND, log_environ=False).error(RuntimeError("worker hiccup")),
            ExpectRmfile(path=f"wkdir/{SECRET_FILE}", log_environ=False).exit(0),
        )
        self.expect_exception(RuntimeError)
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_failed_removal_does_not_hide_the_command_result(self):
        written: list = []
        yield self.setup_step(codecov_step())
        self.expect_commands(
            self.expect_download(written),
            ExpectShell(workdir="wkdir", command=COMMAND, log_environ=False).exit(0),
            ExpectRmfile(path=f"wkdir/{SECRET_FILE}", log_environ=False).exit(1),
        )
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()

    @defer.inlineCallbacks
    def test_no_command_runs_when_the_file_cannot_be_written(self):
        written: list = []
        yield self.setup_step(codecov_step())
        self.expect_commands(self.expect_download(written, rc=1))
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
        self.assert_secret_nowhere(self.get_nth_step(0))

    @defer.inlineCallbacks
    def test_every_placeholder_is_replaced_and_the_workdir_is_honoured(self):
        written: list = []
        step = SecretGatedCommand(
            "codecov_token",
            ["sh", "scripts/x.sh", f"--token={SECRET_FILE_PLACEHOLDER}", SECRET_FILE_PLACEHOLDER],
            name="x",
            workdir="sub",
            logEnviron=False,
        )
        yield self.setup_step(step)
        self.expect_commands(
            ExpectDownloadFile(workerdest=SECRET_FILE, workdir="sub", blocksize=32 * 1024, maxsize=None, mode=0o600,
                               reader=ExpectRemoteRef(remotetransfer.StringFileReader))
            .download_string(written.append, size=1000).exit(0),
            ExpectShell(workdir="sub", command=["sh", "scripts/x.sh", f"--token={SECRET_FILE}", SECRET_FILE],
                        log_environ=False).exit(0),
            ExpectRmfile(path=f"sub/{SECRET_FILE}", log_environ=False).exit(0),
        )
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()


class SecretWithNewlineTest(GatedTestBase):
    secrets = {"codecov_token": f"  {TOKEN}\n"}

    @defer.inlineCallbacks
    def test_the_file_holds_the_stripped_value(self):
        written: list = []
        yield self.setup_step(codecov_step())
        self.expect_commands(
            self.expect_download(written),
            ExpectShell(workdir="wkdir", command=COMMAND, log_environ=False).exit(0),
            ExpectRmfile(path=f"wkdir/{SECRET_FILE}", log_environ=False).exit(0),
        )
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        self.assertEqual(written, [TOKEN.encode()])


class SecretMissingTest(GatedTestBase):
    secrets = {"other_secret": "x"}

    @defer.inlineCallbacks
    def test_skipped_with_a_summary_and_no_command(self):
        yield self.setup_step(codecov_step())
        self.expect_commands()  # nothing reaches the worker
        self.expect_outcome(result=SKIPPED)
        self.expect_result_summary({"step": "skipped: no codecov_token secret"})
        yield self.run_step()
        step = self.get_nth_step(0)
        self.assertIn("codecov_token", step.logs["skipped"].stdout)


class SecretEmptyTest(SecretMissingTest):
    secrets = {"codecov_token": ""}


class NoSecretsServiceTest(SecretMissingTest):
    secrets = None
