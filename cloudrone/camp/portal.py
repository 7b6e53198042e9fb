"""The relief camp's landing page: what this network is and what runs on it.

A phone that joins a drone's access point checks for the Internet by fetching a
known address (Android's ``/generate_204``, Apple's ``/hotspot-detect.html``,
Windows' ``/connecttest.txt``, Firefox's ``/success.txt``, NetworkManager's
``/check_network_status.txt``). With no uplink in the fleet the access point's
dnsmasq answers those names with this server's address (the access point role's
``access_point_portal``), so the check lands here:

- until the phone's user has seen the page and chosen to use the network, every
  check is redirected to the landing page, so the phone opens it (Android's
  "sign in to network", Apple's captive network sheet, Windows' browser);
- afterwards each check gets the answer it expects from the Internet, so the
  phone keeps the WiFi instead of leaving it for mobile data.

Phones are told apart by address, so the server must see them: publish it in
host mode, not through the Swarm's routing mesh (which rewrites the source).
The page follows the browser's language (``Accept-Language``) among those in
``TEXT``. ``/captive-portal/api`` is the RFC 8908 API that DHCP option 114
points at. The standard library alone: it runs in a small image on a Pi 2.

    python -m cloudrone.camp.portal --config portal.json [--port 8080] [--state FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import html
import ipaddress
import json
import os
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cloudrone.camp import read_json_object

# What each operating system's check expects from the Internet, by path.
# (status, content type, body): facts of those systems, kept to the letter.
APPLE_SUCCESS = b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_CANONICAL = (
    b'<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>'
)
ONLINE: dict[str, tuple[int, str, bytes]] = {
    "/generate_204": (204, "text/plain", b""),
    "/gen_204": (204, "text/plain", b""),
    "/hotspot-detect.html": (200, "text/html", APPLE_SUCCESS),
    "/library/test/success.html": (200, "text/html", APPLE_SUCCESS),
    "/connecttest.txt": (200, "text/plain", b"Microsoft Connect Test"),
    "/ncsi.txt": (200, "text/plain", b"Microsoft NCSI"),
    "/success.txt": (200, "text/plain", b"success\n"),
    "/canonical.html": (200, "text/html", FIREFOX_CANONICAL),
    "/check_network_status.txt": (200, "text/plain", b"NetworkManager is online\n"),
}
# Ubuntu's NetworkManager asks for the root of its own host and wants a header.
UBUNTU_CHECK = "connectivity-check.ubuntu.com"
API_PATH = "/captive-portal/api"
BODY_LIMIT = 65536  # the only form posts an empty body


def online_answer(host: str, path: str) -> tuple[int, str, bytes, dict[str, str]] | None:
    """What the Internet answers this check, or None when it is no check."""
    if path in ONLINE:
        return (*ONLINE[path], {})
    if host == UBUNTU_CHECK and path == "/":
        return 204, "text/plain", b"", {"X-NetworkManager-Status": "online"}
    return None


# The page's words, per language. English is the fallback.
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Welcome to {network}",
        "about": "This WiFi is a local network carried by drones. It has no Internet: "
        "the services below run on the drones themselves and work without it.",
        "use": "Use this network",
        "services": "Services on this network",
        "none": "No service is running yet.",
        "on": "on",
    },
    "fr": {
        "title": "Bienvenue sur {network}",
        "about": "Ce WiFi est un réseau local porté par des drones. Il n'a pas d'accès à "
        "Internet : les services ci-dessous tournent sur les drones eux-mêmes.",
        "use": "Utiliser ce réseau",
        "services": "Services sur ce réseau",
        "none": "Aucun service ne tourne encore.",
        "on": "sur",
    },
    "es": {
        "title": "Bienvenido a {network}",
        "about": "Esta WiFi es una red local llevada por drones. No tiene Internet: los "
        "servicios de abajo funcionan en los propios drones.",
        "use": "Usar esta red",
        "services": "Servicios en esta red",
        "none": "Todavía no hay ningún servicio.",
        "on": "en",
    },
    "ar": {
        "title": "مرحبًا بك في {network}",
        "about": "هذه الشبكة اللاسلكية شبكة محلية تحملها طائرات مسيّرة. لا يوجد فيها "
        "إنترنت: الخدمات أدناه تعمل على الطائرات نفسها.",
        "use": "استخدم هذه الشبكة",
        "services": "الخدمات على هذه الشبكة",
        "none": "لا توجد خدمة تعمل بعد.",
        "on": "على",
    },
}
RIGHT_TO_LEFT = {"ar"}


class ConfigError(ValueError):
    """The portal's configuration file cannot be used."""


def load_config(path: Path) -> dict[str, Any]:
    """The configuration: network, url (the landing page's own), services."""
    data = read_json_object(path, ConfigError, "network, url and services")
    for key in ("network", "url"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{path}: {key} must be a non-empty string")
    if urlsplit(data["url"]).scheme not in ("http", "https"):
        raise ConfigError(f"{path}: url {data['url']!r} must be an http:// address")
    services = data.get("services", [])
    if not isinstance(services, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("url"), str)
        for s in services
    ):
        raise ConfigError(f"{path}: services must be a list of {{name, url[, title, drones]}}")
    return {**data, "services": services}


def negotiate(header: str | None, offered: list[str]) -> str:
    """The best of ``offered`` for an Accept-Language header (RFC 9110), else the first."""
    best, best_q = offered[0], 0.0
    for position, part in enumerate((header or "").split(",")):
        fields = part.strip().split(";")
        tag = fields[0].strip().lower()
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        # earlier entries win ties, as browsers list them in order of preference
        q -= position * 1e-6
        primary = tag.split("-")[0]
        if primary in offered and q > best_q:
            best, best_q = primary, q
    return best


class Visitors:
    """Addresses that chose to use the network, remembered for ``remember`` seconds
    (a lease's time), in a file when given so that a restart forgets no one."""

    def __init__(self, remember: float, path: Path | None = None) -> None:
        self.remember = remember
        self.path = path
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        if path is not None and path.exists():
            try:
                self._until = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
            except (OSError, ValueError, AttributeError):
                self._until = {}  # a torn file: phones see the page once more

    def accepted(self, address: str) -> bool:
        with self._lock:
            return self._until.get(address, 0.0) > time.time()

    def accept(self, address: str) -> None:
        with self._lock:
            now = time.time()
            self._until = {a: t for a, t in self._until.items() if t > now}
            self._until[address] = now + self.remember
            if self.path is not None:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self._until))
                os.replace(tmp, self.path)


def render_page(config: dict[str, Any], lang: str, accepted: bool) -> bytes:
    words = TEXT[lang]
    esc = html.escape
    items = []
    for service in config["services"]:
        title = service.get("title", service["name"])
        if isinstance(title, dict):
            title = title.get(lang) or title.get("en") or service["name"]
        where = ", ".join(service.get("drones", []))
        items.append(
            f'<li><a href="{esc(service["url"])}">{esc(str(title))}</a>'
            + (f" <small>({esc(words['on'])} {esc(where)})</small>" if where else "")
            + "</li>"
        )
    listing = f"<ul>{''.join(items)}</ul>" if items else f"<p>{esc(words['none'])}</p>"
    button = (
        ""
        if accepted
        else f'<form method="post" action="/accept"><button>{esc(words["use"])}</button></form>'
    )
    title = esc(words["title"].format(network=config["network"]))
    direction = "rtl" if lang in RIGHT_TO_LEFT else "ltr"
    return (
        f'<!doctype html><html lang="{lang}" dir="{direction}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>body{{font-family:sans-serif;margin:1.5em;"
        "max-width:40em}button{font-size:1.2em;padding:.5em 1em}</style></head><body>"
        f"<h1>{title}</h1><p>{esc(words['about'])}</p>{button}"
        f"<h2>{esc(words['services'])}</h2>{listing}</body></html>"
    ).encode()


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def make_handler(config: dict[str, Any], visitors: Visitors) -> type[BaseHTTPRequestHandler]:
    landing = config["url"]
    own_host = (urlsplit(landing).hostname or "").lower()
    own_names = {own_host, own_host.split(".")[0]}  # the full name and the short one
    languages = list(TEXT)

    class Handler(BaseHTTPRequestHandler):
        server_version = "cloudrone-portal"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.client_address[0]} {format % args}\n")

        def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain",
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
            self.send_response(status)
            if status != HTTPStatus.NO_CONTENT:
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD" and status != HTTPStatus.NO_CONTENT:
                self.wfile.write(body)

        def _to_landing(self) -> None:
            self._send(302, b"", headers={"Location": landing})

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            host = (self.headers.get("Host") or "").split(":")[0].rstrip(".").lower()
            client = self.client_address[0]
            if path == API_PATH:
                api = {"captive": False, "user-portal-url": landing}
                body = json.dumps(api).encode()
                self._send(200, body, "application/captive+json")
                return
            answer = online_answer(host, path)
            if answer is not None:
                if not visitors.accepted(client):
                    self._to_landing()
                    return
                status, ctype, body, extra = answer
                self._send(status, body, ctype, extra)
                return
            if host and host not in own_names and not _is_address(host):
                # any other name the phone was sent here by: the landing page
                self._to_landing()
                return
            if path in ("/", "/index.html"):
                lang = negotiate(self.headers.get("Accept-Language"), languages)
                page = render_page(config, lang, visitors.accepted(client))
                self._send(200, page, "text/html; charset=utf-8", {"Content-Language": lang})
                return
            self._send(404, b"not here\n")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(min(length, BODY_LIMIT))
            if length > BODY_LIMIT:
                self.close_connection = True  # the rest would be read as the next request
            if urlsplit(self.path).path == "/accept":
                visitors.accept(self.client_address[0])
                self._send(303, b"", headers={"Location": landing})
                return
            self._send(404, b"not here\n")

    return Handler


def serve(
    config: dict[str, Any], address: str, port: int, visitors: Visitors
) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, port), make_handler(config, visitors))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the portal's JSON file")
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--state", type=Path, help="where to remember who chose the network")
    parser.add_argument("--remember", type=float, default=12 * 3600,
                        help="seconds a choice holds (a lease's time; default 12 h)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"cloudrone-portal: {exc}", file=sys.stderr)
        return 2
    server = serve(config, args.address, args.port, Visitors(args.remember, args.state))
    print(f"cloudrone-portal: {config['network']} on {args.address}:{args.port}", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
