"""Names that follow the services (cloudrone.camp.names): which candidates answer,
in which order, and a real dnsmasq reading the hosts file as it changes. Real
listeners on loopback play the replicas; the routes come from an HTTP server
shaped like the OLSR daemon's /routes status (the daemon itself answers it in
molecule/mesh, where the whole path runs on drones)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cloudrone.camp import names


def listener(address: str = "127.0.0.1") -> socket.socket:
    """A replica: something listening on ``address`` (a drone played by a loopback address)."""
    s = socket.socket()
    s.bind((address, 0))
    s.listen()
    return s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path, services: list[dict], routes_url: str | None = None) -> Path:
    path = tmp_path / "names.json"
    path.write_text(
        json.dumps(
            {
                "domain": "camp.internal",
                "own_address": "127.0.0.1",
                "routes_url": routes_url or "",
                "hosts_file": str(tmp_path / "hosts" / "services"),
                "state_file": str(tmp_path / "hosts" / "state.json"),
                "interval": 0.2,
                "timeout": 0.5,
                "services": services,
            }
        )
    )
    return path


class Routes:
    """An HTTP server answering /routes as the mesh's routing daemon does."""

    def __init__(self):
        self.routes: list[dict] = []
        routes = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({"routes": routes.routes}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/routes"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def routes():
    r = Routes()
    yield r
    r.close()


def test_every_live_replica_is_given_nearest_first_and_the_dead_are_not(tmp_path, routes):
    here, far, near = listener("127.0.0.1"), listener("127.0.0.3"), listener("127.0.0.2")
    closed = free_port()
    # loopback addresses play drones: 127.0.0.1 is this drone, the others are across the mesh
    services = [
        {"name": "map", "address": "127.0.0.3", "port": far.getsockname()[1], "drone": "d3"},
        {"name": "map", "address": "127.0.0.1", "port": here.getsockname()[1], "drone": "d1"},
        {"name": "map", "address": "127.0.0.2", "port": near.getsockname()[1], "drone": "d2"},
        {"name": "map", "address": "127.0.0.4", "port": closed, "drone": "d4"},  # nothing listens
        {"name": "news", "address": "127.0.0.5", "port": 80, "drone": "d5"},  # not routed
        {"name": "radio", "address": "127.0.0.2", "port": 9, "protocol": "udp", "drone": "d2"},
    ]
    routes.routes = [
        {"destination": "127.0.0.3", "metric": 2, "rtpMetricCost": 2.4},
        {"destination": "127.0.0.2", "metric": 1, "rtpMetricCost": 1.1},
        {"destination": "127.0.0.4", "metric": 1, "rtpMetricCost": 1.0},
    ]
    config = names.load_config(write_config(tmp_path, services, routes.url))
    changed, state = names.cycle(config)
    assert changed
    assert [(s["service"], s["drone"], s["cost"]) for s in state] == [
        ("map", "d1", 0.0),
        ("map", "d2", 1.1),
        ("radio", "d2", 1.1),  # UDP cannot be knocked on: kept while routed
        ("map", "d3", 2.4),
    ]
    text = config.hosts_file.read_text()
    lines = [line.split("#")[0].split() for line in text.splitlines() if not line.startswith("#")]
    assert lines[0] == ["127.0.0.1", "map.camp.internal", "map"]
    assert "news" not in text and "127.0.0.4" not in text
    # the next round with nothing changed leaves the file alone (dnsmasq is not stirred)
    mtime = config.hosts_file.stat().st_mtime_ns
    assert names.cycle(config)[0] is False and config.hosts_file.stat().st_mtime_ns == mtime
    # a replica stops: gone at the next round; its drone's route goes: gone too
    far.close()
    routes.routes = routes.routes[1:2]
    names.cycle(config)
    assert "127.0.0.3" not in config.hosts_file.read_text()
    for s in (here, near):
        s.close()


def test_without_the_routing_daemon_the_knock_alone_decides(tmp_path):
    up = listener("127.0.0.6")
    services = [
        {"name": "page", "address": "127.0.0.6", "port": up.getsockname()[1]},
        {"name": "page", "address": "127.0.0.7", "port": free_port()},
    ]
    # a routing daemon that does not answer is the same as none
    config = names.load_config(write_config(tmp_path, services, f"http://127.0.0.1:{free_port()}/"))
    _, state = names.cycle(config)
    assert [(s["address"], s["cost"]) for s in state] == [("127.0.0.6", 1.0)]
    up.close()


def test_one_missed_knock_keeps_a_replica_two_drop_it_a_lost_route_drops_it_at_once(
    tmp_path, routes
):
    """A busy drone may miss a 1-second connect: a replica that answered is
    given on through one unanswered knock, not through two; a replica never
    heard is not given; a route lost drops it in the same round."""
    services = [
        {"name": "news", "address": "127.0.0.3", "port": 80, "drone": "d3"},
        {"name": "news", "address": "127.0.0.2", "port": 80, "drone": "d2"},
    ]
    routes.routes = [
        {"destination": "127.0.0.3", "metric": 1, "rtpMetricCost": 1.0},
        {"destination": "127.0.0.2", "metric": 1, "rtpMetricCost": 1.0},
    ]
    config = names.load_config(write_config(tmp_path, services, routes.url))
    # d3 answers, misses one, answers, misses two; d2 never answers
    answers = {"127.0.0.3": [True, False, True, False, False]}
    knocks = []

    def probe(address, port, timeout):
        knocks.append(address)
        return address in answers and answers[address].pop(0)

    misses = {}
    given = []
    for _ in range(5):
        _, state = names.cycle(config, probe=probe, misses=misses)
        given.append([s["drone"] for s in state])
    assert given == [["d3"], ["d3"], ["d3"], ["d3"], []]
    assert knocks.count("127.0.0.3") == 5  # every round knocks: no answer is remembered
    # answering again, then its route goes: gone in that very round
    answers["127.0.0.3"] = [True, True]
    assert [s["drone"] for s in names.cycle(config, probe=probe, misses=misses)[1]] == ["d3"]
    routes.routes = routes.routes[1:]
    assert names.cycle(config, probe=probe, misses=misses)[1] == []
    # without a memory each round stands alone: one missed knock drops it
    routes.routes = [{"destination": "127.0.0.3", "metric": 1, "rtpMetricCost": 1.0}]
    answers["127.0.0.3"] = [False]
    assert names.cycle(config, probe=probe)[1] == []


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("{nope", "cannot read it as JSON"),
        ('{"domain": "x", "hosts_file": "/h"}', "services is missing"),
        ('{"domain": "x", "hosts_file": "/h", "services": [{"name": "a", "address": "no", '
         '"port": 80}]}', "services[0]: address must be an IPv4 address"),
        ('{"domain": "x", "hosts_file": "/h", "services": [{"name": "a", "address": "10.0.0.1", '
         '"port": 80, "protocol": "sctp"}]}', "services[0].protocol: 'sctp'; use tcp or udp"),
    ],
)  # fmt: skip
def test_a_bad_config_is_named_and_the_daemon_exits_2(tmp_path, capsys, raw, said):
    path = tmp_path / "names.json"
    path.write_text(raw)
    assert names.main(["--config", str(path), "--once"]) == 2
    assert said in capsys.readouterr().err


DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def ask(port: int, name: str) -> list[str]:
    """The A records dnsmasq gives for ``name`` (busybox nslookup, as a phone's resolver asks)."""
    out = subprocess.run(
        ["busybox", "nslookup", f"-port={port}", "-type=A", name, "127.0.0.1"],
        capture_output=True, text=True, timeout=10, check=False,
    ).stdout  # fmt: skip
    # the first Address: line is the server's (address:port); the rest are the answers
    return [
        line.split()[-1]
        for line in out.splitlines()
        if line.startswith("Address:") and ":" not in line.split()[-1]
    ]


def test_a_real_dnsmasq_follows_the_file_within_seconds(tmp_path):
    if not Path(DNSMASQ).exists():
        pytest.fail("dnsmasq is not installed: run ./run.sh setup (it installs dnsmasq-base)")
    one, two = listener("127.0.0.1"), listener("127.0.0.2")
    services = [
        {"name": "board", "address": "127.0.0.1", "port": one.getsockname()[1], "drone": "d1"},
        {"name": "board", "address": "127.0.0.2", "port": two.getsockname()[1], "drone": "d2"},
    ]
    config = names.load_config(write_config(tmp_path, services))
    config.hosts_file.parent.mkdir()
    port = free_port()
    dnsmasq = subprocess.Popen(
        [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", f"--port={port}",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
         f"--hostsdir={config.hosts_file.parent}", "--local=/camp.internal/", "--local-ttl=5",
         f"--pid-file={tmp_path / 'pid'}", "--user=" + ("root" if _root() else "nobody")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stop = threading.Event()
    daemon = threading.Thread(target=names.run, args=(config, stop), daemon=True)
    try:
        daemon.start()
        assert _within(
            5, lambda: sorted(ask(port, "board.camp.internal")) == ["127.0.0.1", "127.0.0.2"]
        )
        two.close()  # a replica lost
        started = time.monotonic()
        assert _within(5, lambda: ask(port, "board.camp.internal") == ["127.0.0.1"])
        print(f"replica dropped from the answers in {time.monotonic() - started:.1f} s")
        one.close()  # none left: the name is not given at all
        assert _within(5, lambda: ask(port, "board.camp.internal") == [])
    finally:
        stop.set()
        dnsmasq.terminate()
        dnsmasq.wait(10)


def _root() -> bool:
    import os

    return os.geteuid() == 0


def _within(seconds: float, check) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()
