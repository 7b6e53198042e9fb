"""Debian's chromium, headless, driven by Playwright: the browser the tests open
phones' pages in (Playwright's own browser download is not used)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = shutil.which("chromium")
# WebGL in software, for the map; no calls home from the browser itself
FLAGS = [
    "--no-sandbox",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium(*extra: str, executable: str | None = None) -> Iterator[Browser]:
    """A headless chromium; ``executable`` runs it another way (as a phone, say)."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: run ./run.sh setup (it installs Debian's chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable or CHROMIUM, args=[*FLAGS, *extra])
        try:
            yield browser
        finally:
            browser.close()
