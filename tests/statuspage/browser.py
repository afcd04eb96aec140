"""Headless Chromium (Debian's package) driven by Playwright for Python, for the status page's
tests and the README's screenshot. Missing here: the test is skipped; in CI (CI=true, whose
.ci/run installs chromium) it fails instead."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_browser() -> None:
    """Skip (locally) or fail (CI) when Playwright or Chromium is missing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the Python package playwright (the `test` extra)")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing.append(f"Chromium at {CHROMIUM} (Debian's package `chromium`)")
    if missing:
        why = "the status page's browser tests need " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(why + "; CI installs them (.ci/run)")
        pytest.skip(why)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh headless Chromium, and the console errors and page errors it meets."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM)
                                    else shutil.which("chromium"), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            yield page, errors
        finally:
            browser.close()
