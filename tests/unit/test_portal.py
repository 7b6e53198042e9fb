"""The landing page server, over real HTTP on loopback: each operating system's
Internet check, as that system sends it, before and after a phone's user chose the
network; the page in the browser's language; the RFC 8908 API; bad configuration."""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from cloudrone.camp import portal

LANDING = "http://welcome.cloudrone.internal/"
CONFIG = {
    "network": "relief-camp",
    "url": LANDING,
    "services": [
        {
            "name": "maps",
            "url": "http://maps.cloudrone.internal/",
            "title": {"en": "Offline maps", "fr": "Cartes hors ligne"},
            "drones": ["drone-2", "drone-3"],
        },
        {"name": "<b>board</b>", "url": "http://board.cloudrone.internal/"},
    ],
}
# (the name dnsmasq sends the check to, the path, what the Internet answers)
CHECKS = {
    "android": ("connectivitycheck.gstatic.com", "/generate_204", 204, b""),
    "apple": ("captive.apple.com", "/hotspot-detect.html", 200, portal.APPLE_SUCCESS),
    "windows": ("www.msftconnecttest.com", "/connecttest.txt", 200, b"Microsoft Connect Test"),
    "firefox": ("detectportal.firefox.com", "/success.txt", 200, b"success\n"),
    "gnome": ("nmcheck.gnome.org", "/check_network_status.txt", 200, b"NetworkManager is online\n"),
    "ubuntu": ("connectivity-check.ubuntu.com", "/", 204, b""),
}


@pytest.fixture
def server(tmp_path):
    visitors = portal.Visitors(3600, tmp_path / "visitors.json")
    srv = portal.serve(CONFIG, "127.0.0.1", 0, visitors)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, method: str, path: str, host: str, phone: str = "127.0.0.2", headers=None):
    """One request from the loopback address ``phone``: (status, headers, body)."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", server.server_address[1], timeout=5, source_address=(phone, 0)
    )
    try:
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("system", CHECKS)
def test_a_check_goes_to_the_page_until_the_phone_chose_the_network(server, system):
    host, path, status, body = CHECKS[system]
    got, headers, _ = request(server, "GET", path, host)
    assert got == 302 and headers["Location"] == LANDING
    # the phone's user reads the page and chooses to use the network
    got, headers, _ = request(server, "POST", "/accept", "welcome.cloudrone.internal")
    assert got == 303 and headers["Location"] == LANDING
    got, headers, answer = request(server, "GET", path, host)
    assert (got, answer) == (status, body)
    assert headers["Cache-Control"] == "no-store"
    # another phone still sees the page first
    got, _, _ = request(server, "GET", path, host, phone="127.0.0.3")
    assert got == 302


def test_the_page_lists_the_services_and_offers_the_choice_once(server):
    status, headers, page = request(server, "GET", "/", "welcome.cloudrone.internal")
    text = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Welcome to relief-camp" in text and 'action="/accept"' in text
    assert '<a href="http://maps.cloudrone.internal/">Offline maps</a>' in text
    assert "drone-2, drone-3" in text
    # names are text, never markup
    assert "&lt;b&gt;board&lt;/b&gt;" in text and "<b>board" not in text
    request(server, "POST", "/accept", "welcome")
    _, _, page = request(server, "GET", "/", "welcome")  # the short name (search domain)
    assert 'action="/accept"' not in page.decode()


@pytest.mark.parametrize(
    ("accept", "lang", "words"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.8", "fr", "Bienvenue sur relief-camp"),
        ("de-DE,de;q=0.9", "en", "Welcome to relief-camp"),
        ("es;q=0.5, fr;q=0.8", "fr", "Cartes hors ligne"),
        ("ar-SY", "ar", 'dir="rtl"'),
        ("es-419, en;q=0.5", "es", "Usar esta red"),
        (None, "en", "Use this network"),
    ],
)
def test_the_page_speaks_the_browsers_language(server, accept, lang, words):
    headers = {"Accept-Language": accept} if accept else {}
    _, got, page = request(server, "GET", "/index.html", "10.42.0.12", headers=headers)
    assert got["Content-Language"] == lang
    assert f'lang="{lang}"' in page.decode() and words in page.decode()


def test_the_captive_portal_api_of_rfc_8908(server):
    status, headers, body = request(server, "GET", "/captive-portal/api", "welcome")
    assert status == 200 and headers["Content-Type"] == "application/captive+json"
    assert json.loads(body) == {"captive": False, "user-portal-url": LANDING}


def test_other_names_go_to_the_page_and_unknown_paths_are_not_found(server):
    status, headers, _ = request(server, "GET", "/some/page", "example.org")
    assert status == 302 and headers["Location"] == LANDING
    status, _, _ = request(server, "GET", "/nothing", "welcome.cloudrone.internal")
    assert status == 404
    status, _, _ = request(server, "POST", "/nothing", "welcome.cloudrone.internal")
    assert status == 404


def test_choices_survive_a_restart_and_end_with_the_lease(tmp_path):
    state = tmp_path / "visitors.json"
    portal.Visitors(3600, state).accept("10.43.1.200")
    again = portal.Visitors(3600, state)
    assert again.accepted("10.43.1.200") and not again.accepted("10.43.1.201")
    expired = portal.Visitors(-1, tmp_path / "other.json")
    expired.accept("10.43.1.200")
    assert not expired.accepted("10.43.1.200")
    # a torn file forgets, and says nothing worse
    state.write_text("{not json")
    assert not portal.Visitors(3600, state).accepted("10.43.1.200")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "cannot read it as JSON"),
        ("[]", "must be a JSON object"),
        ('{"network": "camp"}', "url must be a non-empty string"),
        ('{"network": "camp", "url": "ftp://x/"}', "must be an http:// address"),
        ('{"network": "camp", "url": "http://x/", "services": [{"name": 1}]}', "services must"),
    ],
)
def test_a_bad_configuration_is_refused_naming_the_file(tmp_path, capsys, content, says):
    path = tmp_path / "portal.json"
    path.write_text(content)
    assert portal.main(["--config", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and says in err
