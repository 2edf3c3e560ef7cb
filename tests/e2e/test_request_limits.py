"""Request bodies over the limit are refused before they are read (issue 21, item 6; fixes/request_limits.py).

One real master (the `webhook_secret` secret set, so `/change_hook/github` exists). Each body is
sent over a raw socket, so the test sees exactly what the master answers and when:
- a 500 MiB `Content-Length` to the REST API: 413 within seconds naming `[limits] request_bytes`
  and its 1048576 bytes, while the client keeps sending; the master's RSS (from /proc) does not
  grow. Before: the master read all 500 MiB (65 s here) and answered 400; RSS 111 -> 1108 MiB;
- a chunked body to the REST API and a declared one to /auth/login: 413 once past 1 MiB;
- a 100 MiB delivery to the GitHub hook: 413 naming `[github] max_payload_bytes` (26214400). Before:
  read whole (60 s), then 400;
- the hook's own, larger limit: a 2 MiB delivery is read and refused for its signature (400).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from ctl_support import scratch_repo
from harness import start_master

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MIB = 1024 * 1024
ANSWER_SECONDS = 10  # a refusal by the headers is immediate; reading 500 MiB took 65 s
RSS_GROWTH_MIB = 32


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    secrets = tmp / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "webhook_secret").write_text("whs-request-limits\n")
    (secrets / "webhook_secret").chmod(0o600)
    repo = scratch_repo(tmp / "repo", "version: 1\nrequirements: []\njobs:\n  one: {steps: [id]}\n")
    running = start_master(tmp, repo)
    yield running
    running.stop()


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def post(port: int, path: str, size: int, chunked: bool = False, send: int | None = None) -> bytes:
    """POST a body of `size` bytes (declared, or chunked), sending at most `send` bytes of it from a
    thread while the answer is read; the answer as received (the master closes after a refusal)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_SECONDS)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}{framing}\r\n\r\n".encode())
    block = b"{" * MIB

    def body() -> None:
        try:
            for _ in range(min(size, send if send is not None else size) // MIB):
                sock.sendall(b"%x\r\n%s\r\n" % (MIB, block) if chunked else block)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the master closed the connection: what a refusal does

    sender = threading.Thread(target=body, daemon=True)
    sender.start()
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    sender.join(timeout=ANSWER_SECONDS)
    return answer


def status_and_body(answer: bytes) -> tuple[str, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(), body.decode(errors="replace")


def test_a_500_mib_declared_body_is_refused_by_its_length_without_memory_growth(master):
    pid = master.process.pid
    before, peak, stop = rss_mib(pid), [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    answer = post(master.www_port, "/api/v2/forceschedulers/force-pipeline", 500 * MIB)
    seconds = time.monotonic() - start
    time.sleep(0.5)
    stop.set()
    watcher.join()
    status, body = status_and_body(answer)
    print(f"500 MiB declared: {status!r} in {seconds:.2f} s; RSS {before} -> peak {peak[0]} MiB")
    assert status == "HTTP/1.1 413 Content Too Large", answer[:300]
    assert body == "request body of 524288000 bytes is over the limit of 1048576 bytes ([limits] request_bytes)\n"
    assert seconds < ANSWER_SECONDS
    assert peak[0] - before < RSS_GROWTH_MIB, f"RSS grew from {before} to {peak[0]} MiB"
    assert master.api("builders"), "the master still answers"


def test_a_chunked_body_is_stopped_at_the_limit(master):
    status, body = status_and_body(
        post(master.www_port, "/api/v2/forceschedulers/force-pipeline", 4 * MIB, chunked=True)
    )
    assert status == "HTTP/1.1 413 Content Too Large"
    assert body == "request body is over the limit of 1048576 bytes ([limits] request_bytes)\n"


def test_login_bodies_have_the_same_limit(master):
    status, body = status_and_body(post(master.www_port, "/auth/login", 2 * MIB, send=0))
    assert status == "HTTP/1.1 413 Content Too Large"
    assert "[limits] request_bytes" in body


def test_the_webhook_has_its_own_limit_and_refuses_a_declared_body_over_it_before_reading_it(master):
    start = time.monotonic()
    status, body = status_and_body(post(master.www_port, "/change_hook/github", 100 * MIB, send=0))
    assert status == "HTTP/1.1 413 Content Too Large"
    assert body == "request body of 104857600 bytes is over the limit of 26214400 bytes ([github] max_payload_bytes)\n"
    assert time.monotonic() - start < ANSWER_SECONDS
    # over [limits] request_bytes but under [github] max_payload_bytes: read, then judged for what it is
    status, body = status_and_body(post(master.www_port, "/change_hook/github", 2 * MIB))
    assert status.startswith("HTTP/1.1 400 ") and "signature" in (status + body).lower(), status
