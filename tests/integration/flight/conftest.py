"""Fly a real bridge process over real UDP on loopback.

``bridge`` starts ``python -m cloudrone.flight.bridge`` with a config of the
test's choosing (sim backend recording frames to a CSV file). ``ground``
is a pymavlink ground station listening where the bridge sends first, with a
pilot thread that streams MANUAL_CONTROL at 25 Hz until told to go silent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("MAVLINK20", "1")

from pymavlink import mavutil

from cloudrone.flight.backends import read_frames

LOOPBACK = "127.0.0.1"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout``.

    Tests wait on conditions, never for fixed times: a slow machine only
    makes them take longer. (Exact timing is checked on a fake clock in
    tests/unit/flight.)
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or predicate}")
        time.sleep(0.02)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class BridgeProcess:
    def __init__(self, workdir: Path, overrides: dict[str, Any], prefix: list[str]) -> None:
        self.dir = workdir
        self.port = free_udp_port()
        self.gs_port = free_udp_port()
        self.record = workdir / "frames.csv"
        self.status_path = workdir / "status.json"
        config: dict[str, Any] = {
            "mavlink": {
                "listen": f"{LOOPBACK}:{self.port}",
                "ground_station": f"{LOOPBACK}:{self.gs_port}",
            },
            "backend": {"type": "sim", "sim": {"record_file": str(self.record)}},
            "status_file": str(self.status_path),
            "realtime": {"fifo_priority": 0, "lock_memory": False},
        }
        for section, values in overrides.items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
            else:
                config[section] = values
        self.config_path = workdir / "flight.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "bridge.log"
        self._log = self.log_path.open("w")
        cmd = [*prefix, sys.executable, "-m", "cloudrone.flight.bridge", "--config"]
        self.proc = subprocess.Popen(
            [*cmd, str(self.config_path)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while not self.status_path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bridge did not come up: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text()

    def frames(self) -> list[tuple[float, str, tuple[int, int, int, int]]]:
        return read_frames(self.record)

    def last_frame(self) -> tuple[float, str, tuple[int, int, int, int]] | None:
        frames = self.frames()
        return frames[-1] if frames else None

    def wait_frame(
        self, mode: str | None = None, pulses: tuple[int, ...] | None = None, timeout: float = 10.0
    ) -> tuple[float, str, tuple[int, int, int, int]]:
        """Wait until the latest recorded frame has this mode and/or these pulses."""

        def match() -> Any:
            f = self.last_frame()
            ok = f is not None and mode in (None, f[1]) and pulses in (None, f[2])
            return f if ok else None

        return wait_until(match, timeout, f"frame {mode} {pulses}; last {self.last_frame()}")

    def wait_status(self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 10.0) -> Any:
        return wait_until(lambda: predicate(self.status()), timeout, "status condition")

    def status(self) -> dict[str, Any]:
        for _ in range(20):
            try:
                return json.loads(self.status_path.read_text())
            except (ValueError, FileNotFoundError):
                time.sleep(0.05)
        raise AssertionError("status file unreadable")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class GroundStation:
    """A pymavlink ground station plus a 25 Hz pilot thread."""

    def __init__(
        self,
        port: int,
        target_system: int = 1,
        signing_key: bytes | None = None,
        address: str = LOOPBACK,
    ) -> None:
        self.conn = mavutil.mavlink_connection(
            f"udpin:{address}:{port}", source_system=255, source_component=190
        )
        if signing_key is not None:
            self.conn.setup_signing(signing_key, sign_outgoing=True)
        self.target = target_system
        self.sticks = (0, 0, 0, 0)  # x pitch, y roll, z thrust, r yaw
        self.channels: tuple[int, ...] | None = None  # RC override stream instead
        self.sending = threading.Event()
        self.sent: list[float] = []
        self._quit = False
        self._lock = threading.Lock()
        self.messages: list[Any] = []
        self._thread = threading.Thread(target=self._pilot, daemon=True)

    def start(self) -> None:
        hb = self.conn.wait_heartbeat(timeout=10)
        assert hb is not None, "no HEARTBEAT from the bridge"
        # Like QGroundControl: answer with our own heartbeat once the vehicle speaks.
        self.conn.mav.heartbeat_send(mavutil.mavlink.MAV_TYPE_GCS, 8, 0, 0, 4)
        self._thread.start()

    def _pilot(self) -> None:
        period = 0.04
        next_t = time.monotonic()
        while not self._quit:
            if self.sending.is_set():
                x, y, z, r = self.sticks
                with self._lock:
                    if self.channels is not None:
                        self.conn.mav.rc_channels_override_send(self.target, 1, *self.channels)
                    else:
                        self.conn.mav.manual_control_send(self.target, x, y, z, r, 0)
                self.sent.append(time.monotonic())
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    def fly(self, x: int = 0, y: int = 0, z: int = 0, r: int = 0) -> None:
        self.sticks = (x, y, z, r)
        self.channels = None
        self.sending.set()

    def override(self, *channels: int) -> None:
        """Stream RC_CHANNELS_OVERRIDE (channels 1-8) at 25 Hz instead."""
        self.channels = tuple(channels) + (0,) * (8 - len(channels))
        self.sending.set()

    def silence(self) -> float:
        """Stop the pilot's stream; return the time of the last MANUAL_CONTROL sent."""
        self.sending.clear()
        time.sleep(0.1)
        return self.sent[-1]

    def send(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            fn(*args)

    def command(self, command: int, *params: float) -> None:
        p = list(params) + [0.0] * (7 - len(params))
        self.send(self.conn.mav.command_long_send, self.target, 1, command, 0, *p)

    def recv(self, kind: str | list[str], timeout: float = 5.0, cond: Any = None) -> Any:
        """Next message of ``kind`` (matching ``cond``), or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        kinds = [kind] if isinstance(kind, str) else kind
        while time.monotonic() < deadline:
            msg = self.conn.recv_match(blocking=True, timeout=0.1)
            if msg is None:
                continue
            self.messages.append(msg)
            if msg.get_type() in kinds and (cond is None or cond(msg)):
                return msg
        return None

    def close(self) -> None:
        self._quit = True
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.conn.close()


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    started: list[BridgeProcess] = []

    def start(prefix: list[str] | None = None, **overrides: Any) -> BridgeProcess:
        b = BridgeProcess(tmp_path / f"b{len(started)}", overrides, prefix or [])
        started.append(b)
        return b

    for d in range(4):
        (tmp_path / f"b{d}").mkdir()
    yield start
    for b in started:
        b.stop()


@pytest.fixture
def ground() -> Iterator[Callable[[BridgeProcess], GroundStation]]:
    stations: list[GroundStation] = []

    def connect(b: BridgeProcess, **options: Any) -> GroundStation:
        gs = GroundStation(b.gs_port, **options)
        stations.append(gs)
        gs.start()
        return gs

    yield connect
    for gs in stations:
        gs.close()
