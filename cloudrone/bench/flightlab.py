"""A lab for the flight bridge: the real bridge process and a ground station on loopback.

Used by the integration tests (tests/integration/flight, through its fixtures)
and the benchmark (:mod:`cloudrone.bench.flight`), so both fly the same
harness. :class:`BridgeProcess` starts ``python -m cloudrone.flight.bridge``
with a configuration of the caller's choosing (the sim backend recording
every frame to CSV); :class:`GroundStation` is a pymavlink ground station
listening where the bridge speaks first, with a pilot thread that streams
MANUAL_CONTROL (or RC_CHANNELS_OVERRIDE) at 25 Hz until told to go silent.

Everything waits on a condition with a deadline (:func:`wait_until`), never
for a fixed time: a slow machine only makes a run take longer. Controller
side only; a drone never runs this.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("MAVLINK20", "1")

from pymavlink import mavutil

from cloudrone.flight.backends import read_frames

LOOPBACK = "127.0.0.1"
PILOT_PERIOD = 0.04  # 25 Hz, as QGroundControl sends MANUAL_CONTROL
Frame = tuple[float, str, tuple[int, int, int, int]]


class NotInTime(AssertionError):
    """A condition did not come true before its deadline."""


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something true and return that.

    Raises :class:`NotInTime` (an AssertionError, so a test fails with
    ``what`` in its message) once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise NotInTime(f"not within {timeout} s: {what or predicate}")
        time.sleep(0.02)


def free_udp_port() -> int:
    """A UDP port on loopback that nothing holds right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def bridge_config(
    port: int, gs_port: int, record: Path, status: Path, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """A configuration on loopback, sim backend recording to ``record``; sections merged."""
    config: dict[str, Any] = {
        "mavlink": {
            "listen": f"{LOOPBACK}:{port}",
            "ground_station": f"{LOOPBACK}:{gs_port}",
        },
        "backend": {"type": "sim", "sim": {"record_file": str(record)}},
        "status_file": str(status),
        "realtime": {"fifo_priority": 0, "lock_memory": False},
    }
    for section, values in overrides.items():
        if isinstance(values, Mapping) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


class BridgeProcess:
    """The bridge as its own process; returns once it has written its first status.

    ``prefix`` runs it under another command (``setpriv ...``); ``args`` are
    more command-line options (``--duration 60``).
    """

    def __init__(
        self,
        workdir: Path,
        overrides: Mapping[str, Any] | None = None,
        prefix: Sequence[str] = (),
        args: Sequence[str] = (),
        start_timeout: float = 15.0,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = workdir
        self.port = free_udp_port()
        self.gs_port = free_udp_port()
        self.record = workdir / "frames.csv"
        self.status_path = workdir / "status.json"
        self.config_path = workdir / "flight.yml"
        config = bridge_config(
            self.port, self.gs_port, self.record, self.status_path, overrides or {}
        )
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "bridge.log"
        self._log = self.log_path.open("w")
        cmd = [*prefix, sys.executable, "-m", "cloudrone.flight.bridge"]
        self.proc = subprocess.Popen(
            [*cmd, "--config", str(self.config_path), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited {self.proc.returncode}: {self.log()}")
            return self.status_path.exists()

        try:
            wait_until(up, start_timeout, "the bridge's first status")
        except NotInTime:
            self.stop()
            raise RuntimeError(f"bridge did not come up: {self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text()

    def frames(self) -> list[Frame]:
        return read_frames(self.record)

    def last_frame(self) -> Frame | None:
        frames = self.frames()
        return frames[-1] if frames else None

    def wait_frame(
        self, mode: str | None = None, pulses: tuple[int, ...] | None = None, timeout: float = 10.0
    ) -> Frame:
        """Wait until the latest recorded frame has this mode and/or these pulses."""

        def match() -> Frame | None:
            f = self.last_frame()
            ok = f is not None and mode in (None, f[1]) and pulses in (None, f[2])
            return f if ok else None

        return wait_until(match, timeout, f"frame {mode} {pulses}; last {self.last_frame()}")

    def wait_frames(self, count: int, timeout: float = 10.0) -> list[Frame]:
        """Wait until ``count`` more frames than now have been recorded; return them all."""
        goal = len(self.frames()) + count

        def enough() -> list[Frame] | None:
            frames = self.frames()
            return frames if len(frames) >= goal else None

        return wait_until(enough, timeout, f"{count} more frames")

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 10.0, what: str = ""
    ) -> Any:
        return wait_until(lambda: predicate(self.status()), timeout, what or "status condition")

    def wait_mode(self, mode: str, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_status(lambda s: s if s["mode"] == mode else None, timeout, f"mode {mode}")

    def status(self) -> dict[str, Any]:
        """The bridge's status file (it is replaced whole, so a read is never torn)."""

        def read() -> dict[str, Any] | None:
            try:
                return json.loads(self.status_path.read_text())
            except (ValueError, FileNotFoundError):
                return None

        return wait_until(read, 2.0, f"a readable {self.status_path}")

    def wait(self, timeout: float) -> int:
        """Wait for the bridge to exit by itself (``--duration``); its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

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

    def start(self, timeout: float = 10.0) -> None:
        hb = self.conn.wait_heartbeat(timeout=timeout)
        assert hb is not None, "no HEARTBEAT from the bridge"
        # Like QGroundControl: answer with our own heartbeat once the vehicle speaks.
        self.conn.mav.heartbeat_send(mavutil.mavlink.MAV_TYPE_GCS, 8, 0, 0, 4)
        self._thread.start()

    def _pilot(self) -> None:
        next_t = time.monotonic()
        while not self._quit:
            with self._lock:  # silence() holds it: no message leaves after it returns
                if self.sending.is_set():
                    x, y, z, r = self.sticks
                    if self.channels is not None:
                        self.conn.mav.rc_channels_override_send(self.target, 1, *self.channels)
                    else:
                        self.conn.mav.manual_control_send(self.target, x, y, z, r, 0)
                    self.sent.append(time.monotonic())
            next_t += PILOT_PERIOD
            time.sleep(max(0.0, next_t - time.monotonic()))  # paces the stream

    def fly(self, x: int = 0, y: int = 0, z: int = 0, r: int = 0) -> None:
        self.sticks = (x, y, z, r)
        self.channels = None
        self.sending.set()

    def override(self, *channels: int) -> None:
        """Stream RC_CHANNELS_OVERRIDE (channels 1-8) at 25 Hz instead."""
        self.channels = tuple(channels) + (0,) * (8 - len(channels))
        self.sending.set()

    def silence(self) -> float:
        """Stop the pilot's stream; return the time of the last message it sent."""
        with self._lock:
            self.sending.clear()
            return self.sent[-1]

    def sent_since(self, t: float) -> int:
        return sum(1 for s in self.sent if s > t)

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
