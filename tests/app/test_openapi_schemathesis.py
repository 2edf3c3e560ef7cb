"""The reference service against its own OpenAPI schema: schemathesis (every check, response schema
conformance included) on the running app, with bounded examples and a fixed seed.

The app runs in-process under uvicorn on a free loopback port, on the unit tests' fakes (in-memory
SQLite, fakeredis, a recording SMS provider), so this needs neither PostgreSQL nor Redis. Issue 21
found its 422 bodies breaking the schema (`detail` declared an array) and the E.164 and 6-digit
patterns it enforces missing from the schema; both show here as schemathesis failures.
`schemathesis.toml` beside this file lists the answers the API gives to schema-valid requests on
purpose (a wrong or spent code is 400/410, not a schema problem).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import fakeredis
import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from app.config import Settings
from app.container import Container
from app.main import create_app
from app.models import Base
from app.sms import RecordingSmsProvider

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("schemathesis", reason="schemathesis is a test extra of pyproject.toml")

CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = Path(sys.executable).with_name("st")
MAX_EXAMPLES = 100  # per operation and phase: about 600 cases, ~10 s here
SEED = 21  # the same cases on every run (a new failure shows on the next schema or app change, not by chance)


@pytest.fixture
def service_url() -> Iterator[str]:
    engine = create_engine("sqlite+pysqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    settings = Settings(database_url="sqlite+pysqlite://", environment="test", git_commit="abc1234")
    container = Container.assemble(settings, engine, fakeredis.FakeRedis(decode_responses=True), RecordingSmsProvider())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: container), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the app did not start under uvicorn"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()
        engine.dispose()


def test_the_schema_declares_the_patterns_and_the_422_body_it_sends(service_url: str) -> None:
    with urllib.request.urlopen(f"{service_url}/openapi.json", timeout=10) as response:
        schema = json.loads(response.read())
    components = schema["components"]["schemas"]
    assert "pattern" in components["VerificationCreate"]["properties"]["phone_number"]
    assert "pattern" in components["VerificationCheck"]["properties"]["code"]
    check = schema["paths"]["/api/v1/verifications/{verification_id}/check"]["post"]["responses"]
    assert check["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ValidationProblem"}
    assert "HTTPValidationError" not in components


# ~600 cases: 10 s on an idle machine, over a minute on a loaded one; bounded by the run's own timeout
# below, not by the 60 s default of the reference service's unit tests (tests/app/conftest.py)
@pytest.mark.timeout(330)
def test_schemathesis_finds_no_failure(service_url: str) -> None:
    argv = [str(ST), "--config-file", str(CONFIG), "run", f"{service_url}/openapi.json", "--checks", "all"]
    argv += ["--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1", "--no-color"]
    argv += ["--request-timeout", "10"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert " passed" in output and "failure" not in output.split("SUMMARY")[-1], output[-3000:]
