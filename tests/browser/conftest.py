"""Headless Chromium for the browser tests: the Debian package's binary (`/usr/bin/chromium`) driven
by Playwright (`playwright`), and contexts in fresh profiles (`chromium`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def playwright():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def chromium(playwright, tmp_path):
    """`chromium(**options)`: a Chromium context in a fresh profile (Playwright's context options),
    closed after the test."""
    contexts: list[BrowserContext] = []

    def open_context(**options):
        profile = tmp_path / f"profile-{len(contexts)}"
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, **options
        )
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()
