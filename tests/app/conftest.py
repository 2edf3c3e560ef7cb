"""Shared setup for the reference service's tests: the repository root on sys.path, the
`integration` marker, and a default per-test time bound (pytest-timeout) for every test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

UNIT_TIMEOUT_SECONDS = 60
INTEGRATION_TIMEOUT_SECONDS = 180


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs real PostgreSQL 15 and Redis 7 (started by the tests)")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        if ROOT / "tests" / "app" not in Path(str(item.path)).parents:
            continue
        if item.get_closest_marker("timeout") is None:
            bound = INTEGRATION_TIMEOUT_SECONDS if item.get_closest_marker("integration") else UNIT_TIMEOUT_SECONDS
            item.add_marker(pytest.mark.timeout(bound))
