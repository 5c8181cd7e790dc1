"""Fixtures of the browser tests (tests/web/chromium.py)."""

from __future__ import annotations

import pytest

from tests.web.chromium import CHROMIUM, CHROMIUM_ARGS, EXPECT_TIMEOUT_MS, expect, sync_playwright


@pytest.fixture(scope="module")
def browser():
    # A shared 2-core machine can be slow; a real failure still fails, later.
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
