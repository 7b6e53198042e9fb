"""The command: --check, clear start failures, SCHED_FIFO granted, and a loud refusal of it."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cloudrone.bench.flightlab import free_udp_port as free_port

pytestmark = pytest.mark.integration

CMD = [sys.executable, "-m", "cloudrone.flight.bridge"]
# The same request the bridge makes at start (cloudrone/flight/rt.py), in a child
# process next to it: the same user, capabilities, limits and cgroup.
FIFO_PROBE = "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))"


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=timeout)


def fifo_not_applicable() -> str | None:
    """Why this kernel will not give SCHED_FIFO to a process here, or None when it will.

    Root may always ask; it is refused only without CAP_SYS_NICE (a container)
    or where RT group scheduling left this cgroup no real-time time. Anyone
    else needs RLIMIT_RTPRIO.
    """
    probe = subprocess.run([sys.executable, "-c", FIFO_PROBE], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    error = (probe.stderr.strip().splitlines() or ["?"])[-1]
    if os.geteuid() != 0:
        rtprio = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
        return f"not applicable: not root and RLIMIT_RTPRIO is {rtprio} ({error})"
    return f"not applicable: the kernel refuses SCHED_FIFO even to root here ({error})"


def config(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "flight.yml"
    p.write_text(
        f'mavlink: {{listen: "127.0.0.1:{free_port()}", ground_station: '
        f'"127.0.0.1:{free_port()}"}}\n'
        f"status_file: {tmp_path}/status.json\n{extra}"
    )
    return p


def test_check_accepts_a_good_file(tmp_path: Path) -> None:
    p = config(tmp_path)
    r = run("--check", str(p))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{p}: OK") and "backend sim" in r.stdout


def test_check_names_file_line_key_and_fix(tmp_path: Path) -> None:
    p = config(tmp_path, "failsafe:\n  hold_s: 9\nbackend: {type: servoblaster}\n")
    before = p.read_text()
    r = run("--check", str(p))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert f"{p}:4 failsafe.hold_s: 9 is out of range; give a value from 0.1 to 5.0 s" in lines
    assert any(line.startswith(f"{p}:5 backend.type:") and "pca9685" in line for line in lines)
    assert p.read_text() == before  # --check changes nothing
    assert not (tmp_path / "status.json").exists()


def test_check_reports_the_access_keys(tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    key.write_text("00" * 32)
    key.chmod(0o640)
    p = tmp_path / "flight.yml"
    p.write_text(
        f"mavlink:\n  listen: 127.0.0.1:{free_port()}\n  allowed_senders: [anyone]\n"
        f"  signing_key_file: {key}\nkk2: {{gesture_hold_s: 99}}\n"
    )
    r = run("--check", str(p))
    assert r.returncode == 1
    assert f"{p}:5 kk2.gesture_hold_s: 99 is out of range" in r.stderr
    assert f"{p}:3 mavlink.allowed_senders: 'anyone' is not an IPv4 address" in r.stderr
    assert f"{p}:4 mavlink.signing_key_file: {key} has mode 0640" in r.stderr
    assert "00000000" not in r.stderr + r.stdout


def test_a_bad_config_stops_the_bridge_before_it_touches_anything(tmp_path: Path) -> None:
    p = config(tmp_path, "channels: {throttle: {reversed: true}}\n")
    r = run("--config", str(p))
    assert r.returncode == 1
    assert "channels.throttle.reversed" in r.stderr
    assert not (tmp_path / "status.json").exists()


def test_missing_default_config_is_explained(tmp_path: Path) -> None:
    r = run("--config", str(tmp_path / "none.yml"))
    assert r.returncode == 1 and "none.yml: no such file" in r.stderr


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"mavlink: [\n", ":2: not valid YAML"),
        (b"- just\n- a list\n", ":1: the flight bridge configuration must be a mapping"),
        (b"kk2: {gesture_hold_s: 1.0}\n\xff\n", ": is not UTF-8 text"),
    ],
)
def test_a_file_that_is_no_configuration_is_one_line_not_a_traceback(
    tmp_path: Path, content: bytes, words: str
) -> None:
    p = tmp_path / "flight.yml"
    p.write_bytes(content)
    for option in ("--check", "--config"):
        r = run(option, str(p))
        assert r.returncode == 1, r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
        assert r.stderr.startswith(f"{p}{words}"), r.stderr


@pytest.mark.parametrize(
    ("backend", "words"),
    [
        ("{type: pca9685, pca9685: {bus: 97}}", "pca9685 backend: /dev/i2c-97 does not exist"),
        ("{type: pigpio, pigpio: {port: PORT}}", "pigpio backend: cannot reach pigpiod"),
    ],
)
def test_a_missing_backend_fails_at_start(tmp_path: Path, backend: str, words: str) -> None:
    p = config(tmp_path, f"backend: {backend.replace('PORT', str(free_port()))}\n")
    r = run("--config", str(p))
    assert r.returncode == 2
    assert words in r.stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["running"] is False and words in status["error"]
    assert "pulses_us" not in status  # never flew on anything


def test_a_taken_port_fails_at_start(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        p = tmp_path / "flight.yml"
        p.write_text(f'mavlink: {{listen: "127.0.0.1:{port}"}}\nstatus_file: null\n')
        r = run("--config", str(p))
    assert r.returncode == 2
    assert f"cannot listen for MAVLink on 127.0.0.1:{port}" in r.stderr


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_refused_fifo_is_loud_reported_and_flight_goes_on(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    # Without CAP_SYS_NICE (and RLIMIT_RTPRIO 0 for root) SCHED_FIFO is refused.
    no_rt = ["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"]
    b = bridge(prefix=no_rt, realtime={"fifo_priority": 40, "lock_memory": False})
    gs = ground(b)
    warn = gs.recv("STATUSTEXT", cond=lambda m: m.text.startswith("REAL-TIME SCHEDULING"))
    assert warn is not None and warn.severity == 4  # MAV_SEVERITY_WARNING
    rt = b.status()["realtime"]
    assert rt["fifo"] is False and "Operation not permitted" in rt["fifo_error"]
    assert any("REAL-TIME SCHEDULING REFUSED" in w for w in b.status()["warnings"])
    assert "REAL-TIME SCHEDULING REFUSED" in b.log()
    # ...and it runs on: heartbeats keep coming, frames keep being written.
    b.wait_frames(20)
    assert gs.recv("HEARTBEAT", timeout=5) is not None
    assert b.proc.poll() is None


def test_fifo_is_granted_where_the_kernel_can_grant_it(bridge) -> None:  # type: ignore[no-untyped-def]
    reason = fifo_not_applicable()
    if reason is not None:
        pytest.skip(reason)
    b = bridge(realtime={"fifo_priority": 10, "lock_memory": False})
    status = b.status()  # written once the bridge has asked for it
    rt = status["realtime"]
    assert rt["fifo"] is True, f"SCHED_FIFO refused: {rt['fifo_error']}"
    assert rt["fifo_priority"] == 10 and rt["fifo_error"] is None
    assert status["warnings"] == []
    assert "REAL-TIME SCHEDULING" not in b.log()
    # The scheduler says so too: the bridge's process runs SCHED_FIFO at 10.
    assert os.sched_getscheduler(b.proc.pid) == os.SCHED_FIFO
    assert os.sched_getparam(b.proc.pid).sched_priority == 10
    b.wait_frames(20)
