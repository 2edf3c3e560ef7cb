"""Secrets are redacted in their common encodings and across output chunks (fixes/redaction.py,
issue 21 item 7): unit tests of the forms, Buildbot's step harness on a real `ShellCommand` whose
worker output carries each form, and an e2e job on a real master printing them (REST logs, step
summaries and the master's twistd.log show none)."""

from __future__ import annotations

import base64
import json
import secrets as pysecrets
import string
import urllib.parse

import pytest
from buildbot.plugins import util
from buildbot.process.properties import Properties
from buildbot.process.results import SUCCESS
from buildbot.steps.shell import ShellCommand
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectShell, TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci import fixes
from namaskah_ci.fixes import redaction

ALPHABET = string.ascii_letters + string.digits


def make_token() -> str:
    """A made-up secret with characters that URL-encoding changes."""
    core = "".join(pysecrets.choice(ALPHABET) for _ in range(28))
    return f"nq_{core[:10]}/{core[10:20]}+{core[20:]}=&x"


def hex_lines(value: str, width: int = 60) -> str:
    """`printf %s "$TOKEN" | xxd -p`: lower-case hex, 60 characters a line."""
    text = value.encode().hex()
    return "".join(text[i : i + width] + "\n" for i in range(0, len(text), width))


def printed_forms(token: str) -> dict[str, str]:
    """Each way the e2e job prints the token (what must never be shown)."""
    raw = token.encode()
    return {
        "value": token,
        "base64 (echo | base64)": base64.b64encode(raw + b"\n").decode(),
        "base64 of the value": base64.b64encode(raw).decode(),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "url-encoded": urllib.parse.quote(token, safe=""),
        "url-encoded (+)": urllib.parse.quote_plus(token, safe=""),
    }


def leaks(text: str, token: str) -> list[str]:
    """The forms of `token` (and 12-character runs of its value or hex) that `text` shows."""
    flat = text.replace("\n", "").replace("\r", "")
    found = [name for name, form in printed_forms(token).items() if form[:-4] in flat]
    hex_text = token.encode().hex()
    found += [f"piece {piece!r}" for piece in {token[i : i + 12] for i in range(len(token) - 11)} if piece in text]
    found += ["hex piece" for i in range(0, len(hex_text) - 15, 4) if hex_text[i : i + 16] in flat]
    return found


@pytest.fixture(autouse=True, scope="module")
def patched():
    redaction.apply()
    redaction.apply()  # idempotent
    yield


def test_the_fix_is_registered_and_names_its_upstream_issue():
    assert "redaction" in fixes.MODULES
    assert "buildbot/buildbot#4793" in redaction.__doc__


def test_every_alignment_of_base64_is_registered():
    token = make_token()
    props = Properties()
    props.useSecret(token, "codecov_token")
    for before in range(6):
        for after in range(4):
            text = base64.b64encode(b"k" * before + token.encode() + b"v" * after).decode()
            cleaned = props.cleanupTextFromSecrets(f"Authorization: Basic {text}")
            assert "<codecov_token>" in cleaned, (before, after)
            assert len(cleaned) <= len("Authorization: Basic <codecov_token>") + 16, cleaned  # the edges only


def test_hex_url_and_wrapped_forms_are_redacted_and_short_secrets_keep_their_encodings():
    token = make_token()
    props = Properties()
    props.useSecret(token + "\n", "codecov_token")  # a secret file's trailing newline: the job gets it stripped
    text = (
        f"{token}\n{hex_lines(token)}{token.encode().hex().upper()}\n?t={urllib.parse.quote(token, safe='')}&q=1\n"
        f"{urllib.parse.quote_plus(token)}\n{token[:20]}\n{token[20:]}\n"
    )
    cleaned = props.cleanupTextFromSecrets(text)
    assert not leaks(cleaned, token), cleaned
    assert cleaned.count("<codecov_token>") == 6, cleaned
    short = Properties()
    short.useSecret("ab12", "pin")
    assert short.cleanupTextFromSecrets("ab12 " + b"ab12".hex()) == "<pin> " + b"ab12".hex()


def test_a_stream_holds_what_may_still_be_a_secret_and_releases_it_at_the_end():
    token = make_token()
    props = Properties()
    props.useSecret(token, "codecov_token")
    stream = redaction.StreamRedactor(props)
    shown = stream.feed("start\n" + "x" * 4000 + token[:9])
    shown += stream.feed(token[9:] + " done\nnext line\n")
    shown += stream.flush()
    assert shown == "start\n" + "x" * 4000 + "<codecov_token> done\nnext line\n"


class RedactedStepOutput(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    """A real ShellCommand given a secret through `env`; the fake worker prints its encodings."""

    token = make_token()

    def setUp(self):
        self.setup_test_reactor()
        return self.setup_test_build_step(with_secrets={"codecov_token": self.token})

    @defer.inlineCallbacks
    def test_no_form_of_the_secret_reaches_the_log(self):
        token = self.token
        raw = token.encode()
        command = ["bash", "-c", "print the token"]
        yield self.setup_step(ShellCommand(name="leak", command=command, env={"TOKEN": util.Secret("codecov_token")}))
        long_line = "y" * 4090  # the worker's line splitter cuts a line at 4095 characters
        self.expect_commands(
            ExpectShell(workdir="wkdir", command=command, env={"TOKEN": token})
            .stdout(base64.b64encode(raw + b"\n").decode() + "\n")
            .stdout(hex_lines(token))
            .stdout(urllib.parse.quote(token, safe="") + "\n")
            .stdout(token[:11])  # two writes, a flush and a pause between them
            .stdout(token[11:] + "\n")
            .stdout(long_line + token[:5] + "\n")
            .stdout(token[5:] + " end\n")
            .stderr(base64.b64encode(b"user:" + raw).decode() + "\n")
            .exit(0)
        )
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        stdio = self.get_nth_step(0).logs["stdio"]
        shown = stdio.header + stdio.stdout + stdio.stderr
        assert not leaks(shown, token), shown
        assert shown.count("<codecov_token>") >= 6, shown
        assert long_line in shown and "<codecov_token> end" in shown


# --- end to end -------------------------------------------------------------------------------------

E2E_PIPELINE = """\
version: 1
python: "3.11"
requirements: []
jobs:
  leak:
    secrets: [codecov_token]
    steps:
      - name: encodings
        run: |
          echo "$CODECOV_TOKEN" | base64
          printf %s "$CODECOV_TOKEN" | xxd -p
          printf %s "$CODECOV_TOKEN" | xxd -p -u -c 256
          python3 -c 'import os, urllib.parse as u; t = os.environ["CODECOV_TOKEN"]; print(u.quote(t, safe=""))'
          python3 -c 'import os, urllib.parse as u; print(u.quote_plus(os.environ["CODECOV_TOKEN"]))'
      - name: split
        run: |
          printf %s "${CODECOV_TOKEN:0:11}"
          sleep 1
          printf '%s\\n' "${CODECOV_TOKEN:11}"
          printf '%s\\n' "$CODECOV_TOKEN" | base64 >&2
"""


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_job_printing_its_secret_encoded_and_split_shows_none_of_it(tmp_path):
    from harness import commit_file, git, start_master, wait_for, wait_poller_ready
    from jobs_support import job_python
    from www_support import default_secrets, outside_urls_env, write_secrets

    token = make_token()
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "feature/leak")
    commit_file(repo, "README.md", "readme\n", "initial")
    write_secrets(tmp_path / "secrets", {**default_secrets(), "codecov_token": token})
    env = {
        **outside_urls_env(),
        "PIPELINE_CHECKS_REQUIRED": "leak",
        "PIPELINE_CHECKS_DISABLED": "",
        "PIPELINE_WORKERS_INTERPRETERS": f"3.11={job_python()}",
    }
    master = start_master(tmp_path, repo, env=env, seed=False)
    try:
        wait_poller_ready(master)
        revision = commit_file(repo, ".namaskah-ci.yml", E2E_PIPELINE, "ci: print the token")

        def leak_builds():
            return [b for b in master.finished_builds("leak") if b["properties"].get("revision", [None])[0] == revision]

        job = wait_for("the leak job", leak_builds, 300, 2)[0]
        text = master.build_text(job)
        assert job["results"] == 0, text[-3000:]
        assert "CODECOV_TOKEN: set from the codecov_token secret" in text, text[-3000:]
        summaries = json.dumps(master.api("builds", property="*")) + json.dumps(master.steps(job))
        everything = text + summaries + master.twistd_log()
        assert not leaks(everything, token), [text[-3000:], leaks(everything, token)]
        assert text.count("<codecov_token>") >= 7, text[-3000:]
    finally:
        master.wait_idle(120, 2)
        master.stop()
