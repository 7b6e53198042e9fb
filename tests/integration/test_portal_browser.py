"""The landing page in a real browser (Debian's chromium, headless, driven by
Playwright): a phone's connectivity check is sent to the page, the user chooses
the network, and the check then answers as the Internet would; the page in
French and in Arabic as those phones show it. Every name resolves to the portal
on loopback (chromium's host resolver rules). Screenshots go to
build/test-artifacts/portal/."""

from __future__ import annotations

import socket
import threading

import pytest

from cloudrone.camp import portal
from tests.browser import chromium
from tests.conftest import ROOT
from tests.unit.test_portal import CONFIG, LANDING

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "build" / "test-artifacts" / "portal"
ANDROID = "http://connectivitycheck.gstatic.com/generate_204"


@pytest.fixture(scope="module")
def port():
    """The loopback port every name resolves to in the browser."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser(port):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # every name (the checks', the page's) is the portal, on loopback alone
    with chromium(f"--host-resolver-rules=MAP * 127.0.0.1:{port}") as browser:
        yield browser


@pytest.fixture(autouse=True)
def server(port, tmp_path):
    """A fresh portal for each test: the browser is one phone (127.0.0.1) to it."""
    srv = portal.serve(CONFIG, "127.0.0.1", port, portal.Visitors(3600, tmp_path / "v.json"))
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def check(page, url: str) -> int:
    """The status a check of ``url`` gets, asked by the browser itself (its resolver,
    its network stack): its first answer, before any redirect is followed."""
    with page.expect_response(url) as info:
        page.evaluate("url => fetch(url, {mode: 'no-cors', cache: 'no-store'})", url)
    return info.value.status


def test_an_android_check_opens_the_page_and_passes_once_the_network_is_chosen(browser):
    context = browser.new_context(viewport={"width": 412, "height": 915}, locale="en-GB")
    page = context.new_page()
    # what Android's "sign in to network" opens: its check, redirected to the page
    response = page.goto(ANDROID)
    assert page.url == LANDING
    assert response is not None and response.status == 200
    assert response.request.redirected_from is not None
    assert response.request.redirected_from.url == ANDROID
    assert page.get_by_role("heading", level=1).inner_text() == "Welcome to relief-camp"
    link = page.get_by_role("link", name="Offline maps")
    assert link.get_attribute("href") == "http://maps.cloudrone.internal/"
    page.screenshot(path=ARTIFACTS / "landing-en.png", full_page=True)
    # the check still says "captive" until the user chooses
    assert check(page, ANDROID) == 302
    page.get_by_role("button", name="Use this network").click()
    page.wait_for_url(LANDING)
    page.wait_for_load_state()
    assert page.get_by_role("button", name="Use this network").count() == 0
    page.screenshot(path=ARTIFACTS / "landing-en-chosen.png", full_page=True)
    # now the phone finds "the Internet" and stays on the WiFi
    assert check(page, ANDROID) == 204
    # and Apple's sheet, opened now, finds its "Success" where it asked
    response = page.goto("http://captive.apple.com/hotspot-detect.html")
    assert response is not None and response.status == 200
    assert page.url == "http://captive.apple.com/hotspot-detect.html"
    assert page.title() == "Success"
    context.close()


@pytest.mark.parametrize(
    ("locale", "heading", "direction"),
    [("fr-FR", "Bienvenue sur relief-camp", "ltr"), ("ar-SY", "مرحبًا بك في relief-camp", "rtl")],
)
def test_the_page_speaks_the_phones_language(browser, locale, heading, direction):
    context = browser.new_context(viewport={"width": 412, "height": 915}, locale=locale)
    page = context.new_page()
    page.goto("http://captive.apple.com/hotspot-detect.html")
    assert page.url == LANDING
    assert page.get_by_role("heading", level=1).inner_text() == heading
    assert page.locator("html").get_attribute("dir") == direction
    # laid out as the language reads: the heading's text starts at the right edge in
    # Arabic, at the left in French (the page's margin is 1.5em, 24 px)
    left, right = page.evaluate(
        "() => { const r = document.createRange();"
        " r.selectNodeContents(document.querySelector('h1'));"
        " const b = r.getBoundingClientRect(); return [b.left, b.right]; }"
    )
    if direction == "rtl":
        assert 412 - 40 < right <= 412 and left > 40, (left, right)
    else:
        assert 0 <= left < 40 and right < 412 - 40, (left, right)
    page.screenshot(path=ARTIFACTS / f"landing-{locale.split('-')[0]}.png", full_page=True)
    context.close()
