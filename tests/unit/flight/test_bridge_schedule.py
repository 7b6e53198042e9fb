"""The bridge's schedule on a fake clock: a frame every 20 ms, HEARTBEAT at 1 Hz,
the low-battery landing no later than its timer and two battery polls allow.

The integration tests fly the real process, where the machine's load decides
how late things happen; the exact bounds are checked here, where it cannot.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("MAVLINK20", "1")

import itertools

from pymavlink.dialects.v20 import ardupilotmega as mavlink

from cloudrone.flight.backends import SimBackend
from cloudrone.flight.bridge import Bridge
from cloudrone.flight.config import parse_config

FRAME = 0.02
BATTERY_POLL = 0.2  # the bridge reads its battery monitor this often
GROUND = ("127.0.0.1", 14550)  # the default ground station: allowed to fly
CONFIG = """
status_file: null
realtime: {fifo_priority: 0, lock_memory: false}
failsafe: {ramp_s: 0.3, descent_s: 0.8, idle_s: 0.3}
battery: {low_voltage: 10.5, low_delay_s: 0.5}
"""


class FakeSocket:
    """Nothing to receive; every datagram sent is kept with the fake time it left."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[tuple[float, bytes]] = []

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        raise BlockingIOError

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        if addr == GROUND:
            self.sent.append((self.now, data))
        return len(data)

    def close(self) -> None:
        pass


class Run:
    def __init__(self) -> None:
        self.backend = SimBackend()
        self.bridge = Bridge(parse_config(CONFIG), backend=self.backend)
        self.sock = FakeSocket()
        self.bridge.sock = self.sock  # type: ignore[assignment]
        self.pilot = mavlink.MAVLink(None, srcSystem=255, srcComponent=190)
        self.k = 0
        self.t0 = 1000.0

    @property
    def now(self) -> float:
        return self.t0 + self.k * FRAME

    def send(self, msg: Any) -> None:
        self.bridge._datagram(msg.pack(self.pilot), GROUND, self.now)

    def frames(self, seconds: float, throttle: int | None = None) -> None:
        """Step the bridge at 50 Hz; a pilot at 25 Hz when ``throttle`` is given."""
        for _ in range(round(seconds / FRAME)):
            self.sock.now = self.now
            if throttle is not None and self.k % 2 == 0:
                self.send(mavlink.MAVLink_manual_control_message(1, 0, 0, throttle, 0, 0))
            self.bridge.step(self.now)
            self.k += 1

    def received(self, kind: str) -> list[tuple[float, Any]]:
        parser = mavlink.MAVLink(None)
        out = []
        for t, data in self.sock.sent:
            for msg in parser.parse_buffer(data) or []:
                if msg.get_type() == kind:
                    out.append((t, msg))
        return out


def test_a_frame_every_period_and_a_heartbeat_every_second() -> None:
    run = Run()
    run.frames(3.0)
    times = [f[0] for f in run.backend.frames]
    assert len(times) == 150
    assert all(abs(b - a - FRAME) < 1e-9 for a, b in itertools.pairwise(times))
    assert {f[2] for f in run.backend.frames} == {(1500, 1500, 1000, 1500)}
    beats = [t for t, _ in run.received("HEARTBEAT")]
    assert len(beats) == 3 and beats[0] == run.t0
    for a, b in itertools.pairwise(beats):
        assert 1.0 <= b - a <= 1.0 + FRAME + 1e-9


def test_low_battery_lands_after_its_timer_within_two_battery_polls() -> None:
    run = Run()
    run.frames(0.2, throttle=0)
    run.send(mavlink.MAVLink_command_long_message(1, 1, 400, 0, 1, 0, 0, 0, 0, 0, 0))
    run.frames(1.5, throttle=0)
    assert run.bridge.controller.mode.value == "armed"
    run.frames(0.3, throttle=800)
    assert run.bridge.battery is not None
    t_set = run.now
    run.bridge.battery.set_voltage(t_set, 10.1)
    run.frames(2.0, throttle=800)
    landing = [f for f in run.backend.frames if f[1] == "landing"]
    assert landing, {f[1] for f in run.backend.frames}
    # Read within one poll of the drop; low for low_delay_s at a later poll.
    assert 0.5 <= landing[0][0] - t_set <= 0.5 + 2 * BATTERY_POLL + FRAME + 1e-9
