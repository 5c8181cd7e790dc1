"""The browser the web tests drive: Debian's Chromium through Playwright, and
the skips (with the reason) where either is missing."""

from __future__ import annotations

import shutil

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    expect = sync_playwright = None

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPECT_TIMEOUT_MS = 15_000

NEEDS_CHROMIUM = [
    pytest.mark.skipif(
        sync_playwright is None,
        reason="playwright is not installed (pip install '.[test]')",
    ),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium on PATH (Debian: apt-get install -y chromium); "
        "Playwright's own browser download cannot run here",
    ),
]
