"""The camp's board: who is safe, and messages, on every side of a split mesh.

Each replica (one per drone the mission puts it on) keeps the posts in a
Y.Doc (pycrdt, the Rust port of the Yjs CRDT): a map from a post's random id to
the post. Phones post to whichever replica their drone's DNS gives them. Every
``--interval`` seconds each replica sends its state vector to every peer and
applies the updates the peer has and it has not; a post is never edited, so
merging maps with distinct keys loses nothing, whatever the order. When the
mesh splits, each side keeps posting to its own replicas; when it heals, the
next round of pulls brings every post everywhere.

The document is written to ``--data`` after every change, so a restarted
replica comes back with what it had, then catches up from its peers.

    python3 board.py --port 8080 --data /data --peers drone-1=10.231.0.11:80,drone-3=10.231.0.13:80

Standard library and pycrdt only: it runs in the board image
(cloudrone.fleet.pyservice), not on the drone's host.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pycrdt import Doc, Map

LOG = logging.getLogger("board")
KINDS = ("safe", "message")
LIMITS = {"name": 60, "place": 60, "text": 500}
MAX_BODY = 64 * 1024
MAX_POSTS = 20_000
STATE_FILE = "board.ydoc"
BACKLOG = 256  # the kernel caps it at net.core.somaxconn (4096 on Debian 12)


class Board:
    """The replicated document and what a replica does with it."""

    def __init__(self, data: Path | None, replica: str):
        self.data = data
        self.replica = replica
        self.lock = threading.Lock()
        self.doc = Doc()
        self.posts = self.doc.get("posts", type=Map)
        self.peers: dict[str, dict] = {}
        if data is not None:
            saved = data / STATE_FILE
            if saved.is_file():
                self.doc.apply_update(saved.read_bytes())
                LOG.info("loaded %d posts from %s", len(self.posts), saved)

    # -- posts ---------------------------------------------------------------
    def post(self, kind: str, name: str, text: str, place: str = "") -> dict:
        """Add a post; ValueError names the field that is wrong."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        fields = {"name": name.strip(), "place": place.strip(), "text": text.strip()}
        for field, value in fields.items():
            if len(value) > LIMITS[field]:
                raise ValueError(f"{field} is longer than {LIMITS[field]} characters")
        if not fields["name"]:
            raise ValueError("name is empty: say who is safe, or who writes")
        if kind == "message" and not fields["text"]:
            raise ValueError("text is empty: write the message")
        post = {"kind": kind, **fields, "at": round(time.time(), 3), "via": self.replica}
        with self.lock:
            if len(self.posts) >= MAX_POSTS:
                raise ValueError(f"the board is full ({MAX_POSTS} posts)")
            post_id = secrets.token_hex(8)
            self.posts[post_id] = json.dumps(post, sort_keys=True)
            self._save()
        return {"id": post_id, **post}

    def all_posts(self) -> list[dict]:
        with self.lock:
            items = list(self.posts.items())
        posts = [{"id": key, **json.loads(value)} for key, value in items]
        return sorted(posts, key=lambda p: (-p["at"], p["id"]))

    # -- replication -----------------------------------------------------------
    def state(self) -> bytes:
        with self.lock:
            return self.doc.get_state()

    def diff(self, state: bytes) -> bytes:
        """What this replica has that a peer with ``state`` has not."""
        with self.lock:
            return self.doc.get_update(state)

    def merge(self, update: bytes) -> int:
        """Apply a peer's update; the number of posts it brought."""
        with self.lock:
            before = len(self.posts)
            self.doc.apply_update(update)
            brought = len(self.posts) - before
            if brought:
                self._save()
        return brought

    def pull(self, peer: str, timeout: float) -> int:
        """One round with one peer: send our state vector, merge what comes back."""
        request = urllib.request.Request(
            f"http://{peer}/sync",
            data=self.state(),
            headers={"Content-Type": "application/octet-stream"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return self.merge(answer.read())

    def _save(self) -> None:
        if self.data is None:
            return
        target = self.data / STATE_FILE
        partial = target.with_suffix(".partial")
        partial.write_bytes(self.doc.get_update())
        os.replace(partial, target)


def replicate(board: Board, peers: list[str], interval: float, stop: threading.Event) -> None:
    """Pull from every peer, forever; a peer that does not answer is tried next round."""
    while not stop.is_set():
        for peer in peers:
            status = board.peers.setdefault(peer, {"ok": False, "last_ok": None, "error": None})
            try:
                brought = board.pull(peer, timeout=max(1.0, interval))
            except (OSError, urllib.error.URLError, ValueError) as exc:
                if status["ok"] or status["error"] is None:
                    LOG.info("peer %s: %s", peer, exc)
                status.update(ok=False, error=str(exc))
                continue
            if brought:
                LOG.info("peer %s brought %d posts", peer, brought)
            if not status["ok"]:
                LOG.info("peer %s answers", peer)
            status.update(ok=True, last_ok=round(time.time(), 3), error=None)
        stop.wait(interval)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Camp board</title>
<style>
body {{ font-family: sans-serif; margin: 0 auto; max-width: 40em; padding: 0.5em 1em; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-top: 1.5em; }}
form {{ background: #f3f3f3; padding: 0.8em; border-radius: 6px; }}
label {{ display: block; margin: 0.4em 0; }}
input[type=text], textarea {{ width: 100%; box-sizing: border-box; font-size: 1em; }}
button {{ font-size: 1.1em; padding: 0.4em 1.2em; margin-top: 0.5em; }}
ul {{ padding-left: 1.2em; }} li {{ margin: 0.4em 0; }}
.meta {{ color: #666; font-size: 0.85em; }} .error {{ color: #a00; font-weight: bold; }}
</style></head><body>
<h1>Camp board</h1>
<p>Say who is safe, or leave a message. Every drone over the camp keeps a copy:
what you post here reaches the others as soon as they can hear each other.</p>
{error}
<form method="post" action="/post" id="post">
<label><input type="radio" name="kind" value="safe" checked> Someone is safe</label>
<label><input type="radio" name="kind" value="message"> A message</label>
<label>Name <input type="text" name="name" maxlength="{name_max}" required></label>
<label>Where (tent, area) <input type="text" name="place" maxlength="{place_max}"></label>
<label>Message <textarea name="text" rows="3" maxlength="{text_max}"></textarea></label>
<button type="submit">Post</button>
</form>
<h2>Safe ({safe_count})</h2>
<ul id="safe">{safe}</ul>
<h2>Messages ({message_count})</h2>
<ul id="messages">{messages}</ul>
<p class="meta">This copy: {replica}. {peers}</p>
</body></html>
"""


def _when(at: float) -> str:
    return time.strftime("%d %b %H:%M UTC", time.gmtime(at))


def render(board: Board, error: str = "") -> str:
    posts = board.all_posts()
    items = {kind: [] for kind in KINDS}
    for p in posts:
        where = f" ({html.escape(p['place'])})" if p.get("place") else ""
        text = f": {html.escape(p['text'])}" if p.get("text") else ""
        items[p["kind"]].append(
            f'<li data-id="{p["id"]}"><b>{html.escape(p["name"])}</b>{where}{text}'
            f' <span class="meta">{_when(p["at"])}</span></li>'
        )
    live = sum(1 for s in board.peers.values() if s["ok"])
    return PAGE.format(
        error=f'<p class="error">{html.escape(error)}</p>' if error else "",
        name_max=LIMITS["name"],
        place_max=LIMITS["place"],
        text_max=LIMITS["text"],
        safe_count=len(items["safe"]),
        safe="".join(items["safe"]) or "<li>No one yet.</li>",
        message_count=len(items["message"]),
        messages="".join(items["message"]) or "<li>No messages yet.</li>",
        replica=html.escape(board.replica),
        peers=f"Copies in reach: {live} of {len(board.peers)}." if board.peers else "",
    )


class PostLimit:
    """How often one phone (one source address) may post: a burst, then a steady rate.

    A token bucket per address; the oldest addresses are forgotten past
    ``max_phones`` so a flood of addresses cannot fill the memory.
    """

    def __init__(self, per_minute: float, burst: int, max_phones: int = 4096) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_phones = max_phones
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)
        self.refused = 0
        self.lock = threading.Lock()

    def allow(self, address: str, now: float | None = None) -> float:
        """0 when ``address`` may post now (a token is taken), else seconds to wait."""
        now = time.monotonic() if now is None else now
        with self.lock:
            tokens, then = self.buckets.pop(address, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                self.refused += 1
                wait = (1 - tokens) / self.rate if self.rate > 0 else float("inf")
            self.buckets[address] = (tokens, now)  # newest last
            while len(self.buckets) > self.max_phones:
                del self.buckets[next(iter(self.buckets))]
            return wait


class Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: past five connections waiting
    # to be accepted, a crowd's SYNs are dropped and wait 1, 3, 7... seconds
    request_queue_size = BACKLOG
    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    board: Board
    limit: PostLimit = PostLimit(per_minute=10, burst=6)
    server_version = "cloudrone-board"

    def log_message(self, fmt, *args):  # the journal gets warnings only
        pass

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Board-Replica", self.board.replica)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"too large\n", "text/plain")
            return None
        return self.rfile.read(length)

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/":
            self._send(200, render(self.board).encode(), "text/html; charset=utf-8")
        elif path == "/posts.json":
            body = json.dumps({"replica": self.board.replica, "posts": self.board.all_posts()})
            self._send(200, body.encode(), "application/json")
        elif path == "/health":
            body = json.dumps(
                {
                    "replica": self.board.replica,
                    "posts": len(self.board.posts),
                    "peers": self.board.peers,
                    "posts_refused_by_limit": self.limit.refused,
                }
            )
            self._send(200, body.encode(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    do_HEAD = do_GET

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        body = self._body()
        if body is None:
            return
        if path == "/sync":
            try:
                update = self.board.diff(body)
            except Exception as exc:  # a state vector pycrdt cannot read
                self._send(400, f"bad state vector: {exc}\n".encode(), "text/plain")
                return
            self._send(200, update, "application/octet-stream")
        elif path == "/post":
            wait = self.limit.allow(self.client_address[0])
            if wait:
                message = f"this phone posted a lot just now; wait {wait:.0f} s and post again"
                if "json" in self.headers.get("Accept", ""):
                    body = json.dumps({"error": message}).encode()
                    ctype = "application/json"
                else:
                    body, ctype = (
                        render(self.board, error=message).encode(),
                        "text/html; charset=utf-8",
                    )
                self._send(HTTPStatus.TOO_MANY_REQUESTS, body, ctype,
                           {"Retry-After": str(max(1, round(wait)))})  # fmt: skip
                return
            form = {
                k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()
            }
            wants_json = "json" in self.headers.get("Accept", "")
            try:
                post = self.board.post(
                    form.get("kind", "message"),
                    form.get("name", ""),
                    form.get("text", ""),
                    form.get("place", ""),
                )
            except ValueError as exc:
                if wants_json:
                    body = json.dumps({"error": str(exc)}).encode()
                    self._send(400, body, "application/json")
                else:
                    page = render(self.board, error=str(exc)).encode()
                    self._send(400, page, "text/html; charset=utf-8")
                return
            if wants_json:
                self._send(201, json.dumps(post).encode(), "application/json")
            else:  # back to the board, which now shows the post
                self._send(303, b"", "text/plain", {"Location": "/"})
        else:
            self._send(404, b"not found\n", "text/plain")


def own_peers(text: str, replica: str) -> list[str]:
    """``[NAME=]HOST:PORT,...`` less the entry named after this replica."""
    peers = []
    for item in (p.strip() for p in text.split(",")):
        name, _, address = item.rpartition("=")
        if address and name != replica:
            peers.append(address)
    return peers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="board")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BOARD_PORT", 8080)))
    parser.add_argument("--data", type=Path, default=os.environ.get("BOARD_DATA") or None)
    parser.add_argument(
        "--peers",
        default=os.environ.get("BOARD_PEERS", ""),
        help="[NAME=]HOST:PORT of the replicas, comma-separated; NAME is the replica's "
        "(its drone): this replica leaves its own entry out",
    )
    parser.add_argument(
        "--interval", type=float, default=float(os.environ.get("BOARD_INTERVAL", 1))
    )
    parser.add_argument(
        "--replica", default=os.environ.get("BOARD_REPLICA") or socket.gethostname()
    )
    parser.add_argument(
        "--posts-per-minute",
        type=float,
        default=float(os.environ.get("BOARD_POSTS_PER_MINUTE", 10)),
        help="how often one phone (source address) may post, after its burst",
    )
    parser.add_argument(
        "--post-burst", type=int, default=int(os.environ.get("BOARD_POST_BURST", 6))
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s board: %(message)s")
    if args.data is not None:
        args.data.mkdir(parents=True, exist_ok=True)
    board = Board(args.data, args.replica)
    peers = own_peers(args.peers, args.replica)
    stop = threading.Event()
    threading.Thread(
        target=replicate, args=(board, peers, args.interval, stop), daemon=True
    ).start()
    Handler.board = board
    Handler.limit = PostLimit(args.posts_per_minute, args.post_burst)
    server = Server(("", args.port), Handler)
    LOG.info("replica %s on port %d, %d posts, peers %s", args.replica, args.port,
             len(board.posts), ", ".join(peers) or "none")  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
