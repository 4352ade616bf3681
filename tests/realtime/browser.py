"""Headless Chromium for the browser tests: the system's Chromium found on PATH (`make browser` installs it).

`launch_chromium(playwright)` starts it through Playwright (the sync API); where there is none, the test is skipped
with a message naming `make browser`, or fails with it when MINDHIER_REQUIRE_BROWSER=1 (a CI job that must run the
browser tests sets it, so a missing browser cannot pass as a skip).
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
REQUIRE_BROWSER = "MINDHIER_REQUIRE_BROWSER"


def chromium_path() -> str | None:
    """The first of CHROMIUM_NAMES on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def browser_unavailable(reason: str) -> None:
    """Skip the calling test for `reason`, or fail it when MINDHIER_REQUIRE_BROWSER=1."""
    message = f"{reason}: `make browser` installs it"
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{message} ({REQUIRE_BROWSER}=1 requires the browser tests to run)")
    pytest.skip(message)


def launch_chromium(playwright):
    """The system Chromium, headless, launched by `playwright` (from `playwright.sync_api.sync_playwright()`)."""
    path = chromium_path()
    if path is None:
        browser_unavailable(f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)})")
    return playwright.chromium.launch(executable_path=path, headless=True)


def sync_playwright_or_skip():
    """`playwright.sync_api.sync_playwright`, or skip (fail under MINDHIER_REQUIRE_BROWSER=1) without Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("the Python package playwright is not installed")
    return sync_playwright
