"""The REST API under concurrent clients: every response complete (buildbot#9065 fix in fixes/rest_write.py)."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from harness import make_service_repo, start_master

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_concurrent_rest_reads_are_complete(tmp_path):
    from buildbot.www import rest

    from namaskah_ci.fixes import rest_write

    master = start_master(tmp_path, make_service_repo(tmp_path / "repo"))
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()

    def client() -> None:
        for _ in range(25):
            for path in ("builders", "builds", "workers"):
                try:
                    with urllib.request.urlopen(f"{master.url}api/v2/{path}", timeout=10) as response:
                        json.loads(response.read())
                    with lock:
                        done[0] += 1
                except Exception as exc:  # any truncation or error is a failure
                    with lock:
                        errors.append(f"{path}: {exc!r}"[:200])

    try:
        threads = [threading.Thread(target=client) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
    finally:
        master.stop()
    assert not errors, errors[:5]
    assert done[0] == 20 * 25 * 3
    # the patch replaces the thread-writing upstream function (applied by master.cfg in the master process)
    rest_write.apply()
    assert rest.V2RootResource._write_json_data is rest_write._write_json_data
