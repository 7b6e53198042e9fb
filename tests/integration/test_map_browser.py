"""The offline map as a phone draws it: the relief camp's map service's web root
(the page, MapLibre, the PMTiles archive cut from the bundle's GeoJSON), served
by the same busybox httpd the service's image runs, opened in a real browser
(Debian's chromium, headless, WebGL in software). The tiles must come by HTTP
range requests, uncompressed, and be drawn. Screenshots go to
build/test-artifacts/map/."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from cloudrone.camp import maps
from cloudrone.fleet.tinyweb import BUSYBOX
from tests.browser import chromium, record_archive_reads, wait_map_drawn
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "build" / "test-artifacts" / "map"
SOURCE = ROOT / "missions" / "relief-camp" / "maps" / "camp.geojson"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    cache = ROOT / maps.VENDOR_CACHE
    if not maps.vendored(cache):
        pytest.fail("the map page's libraries are missing: run ./run.sh setup (npm ci)")
    out = tmp_path_factory.mktemp("map") / "www"
    maps.build_site(SOURCE, out, cache, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def url(site):
    """The site on loopback, served by busybox httpd as the map service serves it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(BUSYBOX), "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"busybox httpd did not listen on 127.0.0.1:{port}")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        yield browser


class Phone:
    """A phone-sized page that records what it asked of the archive."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 412, "height": 800})
        self.page = self.context.new_page()
        self.archive_reads = record_archive_reads(self.page)
        self.page.goto(url)
        self.wait_drawn()

    def wait_drawn(self):
        wait_map_drawn(self.page)

    def rendered(self, layer: str) -> list[dict]:
        return self.page.evaluate(
            "layer => window.cloudroneMapObject.queryRenderedFeatures({layers: [layer]})"
            ".map(f => f.properties)",
            layer,
        )

    def move(self, lon: float, lat: float, zoom: float):
        self.page.evaluate("window.cloudroneMap.ready = false")
        self.page.evaluate(
            "([lon, lat, zoom]) => window.cloudroneMapObject.jumpTo({center: [lon, lat], zoom})",
            [lon, lat, zoom],
        )
        self.wait_drawn()


def test_the_phone_draws_the_camp_from_tiles_read_by_range(browser, url, site):
    phone = Phone(browser, url)
    size = (site / maps.ARCHIVE_NAME).stat().st_size
    # every read of the archive is a range, answered 206 and not compressed
    assert phone.archive_reads, "the page read nothing from the archive"
    for read in phone.archive_reads:
        assert read.status == 206 and read.range.startswith("bytes="), read
        assert read.encoding in (None, "identity"), read
    fetched = sum(read.length for read in phone.archive_reads)
    assert fetched < size, (fetched, size)  # only the tiles in view, not the archive
    # what a person sees at the camp's zoom: the tents and every point of the camp
    tents = [f for f in phone.rendered("buildings") if f["kind"] == "tent"]
    assert len(tents) >= 100, len(tents)
    points = {f["name"] for f in phone.rendered("pois")}
    assert {"Clinic", "Drone launch", "Registration and board", "Water point A1"} <= points
    phone.page.screenshot(path=ARTIFACTS / "camp.png")
    phone.context.close()


def test_zooming_to_the_clinic_reads_new_tiles_and_names_it_on_a_tap(browser, url):
    phone = Phone(browser, url)
    before = len(phone.archive_reads)
    lon, lat = maps._at(85, -85)
    phone.move(lon, lat, 18.5)
    # zoom 18 tiles, read when needed (their events may reach us just after the map is idle)
    deadline = time.monotonic() + 5
    while len(phone.archive_reads) <= before and time.monotonic() < deadline:
        phone.page.wait_for_timeout(100)
    assert len(phone.archive_reads) > before
    names = {f["name"] for f in phone.rendered("pois")}
    assert "Clinic" in names and "Drone launch" not in names, names
    # a tap on the clinic's point names it
    x, y = phone.page.evaluate(
        "([lon, lat]) => { const p = window.cloudroneMapObject.project([lon, lat]);"
        " return [p.x, p.y]; }",
        [lon, lat],
    )
    phone.page.mouse.click(x, y)
    popup = phone.page.locator(".maplibregl-popup-content")
    popup.wait_for(timeout=5_000)
    assert "Clinic" in popup.inner_text()
    phone.page.screenshot(path=ARTIFACTS / "clinic.png")
    phone.context.close()


def test_a_missing_archive_says_so_on_the_page(browser, url, site):
    hidden = site / maps.ARCHIVE_NAME
    moved = hidden.rename(site / "elsewhere.pmtiles")
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("window.cloudroneMap && window.cloudroneMap.error", timeout=15_000)
        assert not page.evaluate("window.cloudroneMap.ready")
        assert "The map could not load" in page.locator("#status").inner_text()
        page.close()
    finally:
        moved.rename(hidden)
