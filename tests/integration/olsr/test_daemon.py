"""The daemon as a process: hostile packets, reload on SIGHUP, systemd notifications."""

from __future__ import annotations

import json
import pathlib
import signal
import socket
import sys
import time

import pytest
import yaml

from cloudrone.bench import lab as lab_mod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SENDER = r"""
import socket, os, random, struct
random.seed(7)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(("10.99.1.2", 0))
junk = [b"", b"\x00", b"\xff" * 3, b"\x00\x04\x00\x01", b"\x00\x30" + os.urandom(40)]
junk += [os.urandom(random.randint(1, 1400)) for _ in range(40)]
# truncated HELLO, a message claiming a huge size, a hello 'from' the victim itself
junk.append(bytes([0, 18, 0, 9, 1, 0x86, 0, 40, 10, 99, 1, 2, 1, 0, 0, 1, 0, 0]))
junk.append(bytes([0, 16, 0, 9, 2, 0x86, 0xFF, 0xFF, 10, 99, 1, 2, 255, 0, 0, 2]))
junk.append(bytes([0, 20, 0, 9, 1, 0x86, 0, 16, 10, 99, 1, 1, 1, 0, 0, 3, 0, 0, 5, 7]))
for data in junk:
    for dest in ("10.99.1.255", "10.99.1.1"):
        s.sendto(data, (dest, 698))
print(len(junk) * 2)
"""


def test_hostile_packets_are_dropped_and_counted(lab) -> None:
    lab_mod.build_line(lab, 2)
    lab.start("d1")
    lab.start("d2")
    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, ["d1", "d2"]), 20)
    before = lab.status("d1", "stats")["stats"]["counters"]

    sent = lab_mod.run("ip", "netns", "exec", lab.ns("d2"), sys.executable, "-c", SENDER)
    assert int(sent.stdout) > 80
    time.sleep(1.0)

    assert lab.alive("d1")
    after = lab.status("d1", "all")
    counters = after["stats"]["counters"]
    assert counters.get("malformed", 0) - before.get("malformed", 0) >= 80
    # the forged HELLO 'from' d1 itself was parsed but ignored
    assert counters["dropped_ttl_or_own"] > before.get("dropped_ttl_or_own", 0)
    assert {n["ipAddress"] for n in after["neighbors"]} == {"10.99.1.2"}
    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, ["d1", "d2"]), 5)
    assert lab.ping("d1", "10.99.1.2")


def bad_yaml_lines(path: pathlib.Path, key: str) -> int:
    """The 1-based line of the top-level ``key`` in the file at ``path``."""
    lines = path.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.startswith(f"{key}:"))


def test_reload_keeps_old_config_on_bad_input_and_applies_good(lab) -> None:
    lab_mod.build_line(lab, 2)
    lab.start("d1")
    lab.start("d2")
    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, ["d1", "d2"]), 20)
    path = lab.configs["d1"]
    good = yaml.safe_load(path.read_text())

    bad = dict(good, willingness=9, hna={"networks": ["10.99.50.1/24"]})
    path.write_text(yaml.safe_dump(bad))
    lab.procs["d1"].send_signal(signal.SIGHUP)
    assert lab_mod.wait_until(lambda: '"reload_refused"' in lab.log("d1"), 10)
    refused = next(
        json.loads(line) for line in lab.log("d1").splitlines() if '"reload_refused"' in line
    )
    line = bad_yaml_lines(path, "willingness")
    assert f"{path}:{line} willingness: 9 is outside 0..7" in "\n".join(refused["problems"])
    assert any("hna.networks[0]" in p and "use 10.99.50.0/24" in p for p in refused["problems"])
    st = lab.status("d1", "mpr/stats/hna")
    assert st["mpr"]["willingness"] == 3
    assert st["hna"] == []
    assert st["stats"]["reloadFailures"] == 1
    assert lab.alive("d1")

    # a file that is not even text is one line in the log too, and the daemon lives on
    path.write_bytes(b"willingness: \xff\n")
    lab.procs["d1"].send_signal(signal.SIGHUP)
    assert lab_mod.wait_until(lambda: lab.status("d1", "stats")["stats"]["reloadFailures"] == 2, 10)
    refused = [
        json.loads(line) for line in lab.log("d1").splitlines() if '"reload_refused"' in line
    ][-1]
    assert refused["problems"] == [
        f"{path}: is not UTF-8 text (byte 13); save it as UTF-8 from a text editor"
    ]
    assert lab.alive("d1")

    fixed = dict(good, willingness=6, hna=dict(good["hna"], networks=["10.99.50.0/24"]))
    path.write_text(yaml.safe_dump(fixed))
    lab.procs["d1"].send_signal(signal.SIGHUP)
    assert lab_mod.wait_until(lambda: lab.status("d1", "stats")["stats"]["reloads"] == 1, 10)
    assert lab.status("d1", "mpr")["mpr"]["willingness"] == 6

    def d2_sees_it() -> bool:
        n = lab.status("d2", "neighbors")["neighbors"]
        return n and n[0]["willingness"] == 6 and "10.99.50.0/24" in lab.routes("d2")

    assert lab_mod.wait_until(d2_sees_it, 10)


def test_systemd_readiness_watchdog_and_stop(lab, tmp_path: pathlib.Path) -> None:
    lab_mod.build_line(lab, 2)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(5)
    try:
        lab.start("d1", env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
        got: list[str] = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in got) < 3:
            got.append(sock.recv(4096).decode())
        assert got[0].startswith("READY=1")
        pid = lab.procs["d1"].pid
        assert f"MAINPID={pid}" in got[0]
        assert sum("WATCHDOG=1" in m for m in got) >= 3
        lab.stop("d1")
        rest = []
        while True:
            try:
                rest.append(sock.recv(4096).decode())
            except TimeoutError:
                break
            if "STOPPING=1" in rest[-1]:
                break
        assert "STOPPING=1" in rest
    finally:
        sock.close()


STATUS_CLIENTS = r"""
import json, socket, time

def ask(path):
    with socket.create_connection(("127.0.0.1", 9090), timeout=3) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), json.loads(body)

stuck = socket.create_connection(("127.0.0.1", 9090))
stuck.sendall(b"GET /mpr HTTP/1.0\r\n")  # and never the blank line that ends it
stuck.settimeout(15)
opened = time.monotonic()
huge = socket.create_connection(("127.0.0.1", 9090), timeout=3)
huge.sendall(b"GET /" + b"x" * 100000)
try:
    answer = huge.recv(65536).split(b"\r\n")[0].decode()
except ConnectionResetError:
    answer = "reset"
line, body = ask("/mpr")
assert line == "HTTP/1.0 200 OK" and "mpr" in body, (line, body)
assert time.monotonic() - opened < 2  # the stuck client holds up nobody
line, body = ask("/nothing")
assert line.startswith("HTTP/1.0 404") and "stats" in body["paths"], (line, body)
assert stuck.recv(100) == b""  # dropped by the daemon
print(json.dumps({"huge": answer, "stuck_s": round(time.monotonic() - opened, 1)}))
"""


def test_status_server_bounds_requests_and_drops_stuck_clients(lab) -> None:
    lab_mod.build_line(lab, 2)
    lab.start("d1")
    assert lab_mod.wait_until(lambda: '"event": "start"' in lab.log("d1"), 10)
    out = lab_mod.run(
        "ip", "netns", "exec", lab.ns("d1"), sys.executable, "-c", STATUS_CLIENTS, timeout=30
    )
    result = json.loads(out.stdout)
    # a request past the size bound is answered from what was read, or cut off
    assert result["huge"] in ("HTTP/1.0 404 Not Found", "reset")
    assert 4 <= result["stuck_s"] <= 8
    assert lab.alive("d1")
