"""An aborted raw-log download (as `curl .../raw | head -c 300` leaves it) stops nothing (issue 21, item 3).

A master started by `scripts/master_ctl.sh up` builds a pipeline whose one job prints ~110 KB
(`seq 1 20000`, 11 stored chunks). Its stdio log is downloaded whole once; then downloads are
abandoned: five read 300 bytes and close the socket (the issue's probe; the close mostly lands
while the master still reads the database, before it streams, which Buildbot 4.3.0 survived about
five times out of six here), five read 8 KiB and close (the close lands while the master streams
the log's chunks: on 4.3.0 the first or second one stuck it); then the whole log is downloaded
again: it must arrive within seconds with the same bytes, and `master_ctl.sh down` must end the
master within 30 s.

Before fixes/log_stream.py the master's one log-compression thread stayed waiting for the reader
that left: the second whole download timed out (15 s), and `down` never ended (after "BuildMaster
is stopped" the thread pool's join blocked; SIGTERM did nothing, SIGKILL ended it).
"""

from __future__ import annotations

import socket
import urllib.request

import pytest

from ctl_support import alive, api, builder_id, builds, ctl, kill_master, master_pid, scratch_repo, timed, write_config
from harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PIPELINE = "version: 1\nrequirements: []\njobs:\n  big:\n    steps:\n      - seq 1 20000\n"
ABORTS = (300,) * 5 + (8192,) * 5  # bytes read before each abandoned download closes its socket
DOWNLOAD_SECONDS = 10  # a ~110 KB log downloads in well under a second here; a stuck one never ends
STOP_SECONDS = 30


def download(port: int, logid: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/logs/{logid}/raw", timeout=DOWNLOAD_SECONDS) as r:
        return r.read()


def read_and_leave(port: int, logid: int, size: int) -> None:
    """Start a raw download, read `size` bytes of the answer, close the socket (as `| head -c` does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=DOWNLOAD_SECONDS) as sock:
        sock.sendall(f"GET /api/v2/logs/{logid}/raw HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        got = b""
        while len(got) < size:
            chunk = sock.recv(size - len(got))
            assert chunk, "the master closed the download first"
            got += chunk


def test_an_aborted_raw_log_download_leaves_downloads_and_stopping_working(tmp_path):
    config, port = write_config(tmp_path, scratch_repo(tmp_path / "repo", PIPELINE))
    basedir = tmp_path / "master"
    up = ctl("up", tmp_path, config)
    assert up.returncode == 0, up.stdout + up.stderr
    pid = master_pid(basedir)
    try:
        big = builder_id(port, "big")
        (build,) = wait_for("the job build", lambda: builds(port, builderid=str(big), complete="true"), 300, 2)
        assert build["results"] == 0, build["state_string"]
        steps = {s["name"]: s["stepid"] for s in api(port, f"builds/{build['buildid']}/steps")["steps"]}
        logs = api(port, f"steps/{steps['seq 1 20000']}/logs")["logs"]
        logid = next(log["logid"] for log in logs if log["name"] == "stdio")
        whole = download(port, logid)
        assert len(whole) > 100_000 and b"\n20000\n" in whole

        for size in ABORTS:
            read_and_leave(port, logid, size)
        again, seconds = timed(lambda: download(port, logid))
        assert again == whole
        print(f"whole download after {len(ABORTS)} abandoned ones: {len(again)} bytes in {seconds:.2f} s")

        down, seconds = timed(lambda: ctl("down", tmp_path, config, timeout=120))
        print(f"down: {seconds:.1f} s: {down.stdout.strip()!r}")
        assert down.stdout.strip().endswith("master stopped"), down.stdout + down.stderr
        assert seconds < STOP_SECONDS and not alive(pid)
    finally:
        kill_master(basedir, pid)
