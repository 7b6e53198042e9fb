"""Debian's chromium, headless, driven by Playwright: the browser the tests open
phones' pages in (Playwright's own browser download is not used)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

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


# -- the offline map's page (cloudrone/camp/map) ------------------------------------
ARCHIVE = "tiles.pmtiles"  # cloudrone.camp.maps.ARCHIVE_NAME


class ArchiveRead(NamedTuple):
    status: int
    range: str
    encoding: str | None
    length: int
    server: str


def record_archive_reads(page: Page) -> list[ArchiveRead]:
    """Every read of the map's archive the page makes from now on, as it finishes."""
    reads: list[ArchiveRead] = []

    def finished(request):
        if request.url.endswith("/" + ARCHIVE):
            response = request.response()
            reads.append(
                ArchiveRead(
                    response.status,
                    request.headers.get("range") or "",
                    response.headers.get("content-encoding"),
                    len(response.body()),
                    (response.server_addr() or {}).get("ipAddress", ""),
                )
            )

    page.on("requestfinished", finished)
    return reads


def wait_map_drawn(page: Page, timeout: float = 60_000) -> None:
    """Until the map page has drawn what is in view (or failed, which fails the test)."""
    page.wait_for_function(
        "window.cloudroneMap && (window.cloudroneMap.ready || window.cloudroneMap.error)",
        timeout=timeout,
    )
    assert page.evaluate("window.cloudroneMap.error") is None
