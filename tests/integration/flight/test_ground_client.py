"""``cloudrone_cli fly`` against the real bridge: pygame headless (SDL dummy
drivers), keyboard input, MANUAL_CONTROL at 25 Hz, telemetry shown.

Waits are on conditions with deadlines; the client's exact pace is checked on
a fake clock in tests/unit/flight/test_ground.py.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from cloudrone.bench.flightlab import NotInTime

pytestmark = pytest.mark.integration

SDL = {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


def test_fly_command_arms_streams_and_shows_telemetry(bridge) -> None:  # type: ignore[no-untyped-def]
    b = bridge()
    before = time.monotonic()
    duration = 4
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloudrone.flight.ground",
            "--listen",
            f"127.0.0.1:{b.gs_port}",
            "--keyboard",
            "--arm",
            "--duration",
            str(duration),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **SDL},
    )
    assert r.returncode == 0, r.stderr
    assert "input: keyboard" in r.stdout
    assert "battery 12.40 V 92%" in r.stdout and "3D 52.21090,0.09170 sats 10" in r.stdout
    assert "system 1 ARMED" in r.stdout
    ended = time.monotonic()
    frames = [f for f in b.frames() if f[0] > before]
    assert any(f[1] == "armed" for f in frames)
    # A status written after the client quit (the bridge writes one a second).
    status = b.wait_status(lambda s: s if s["time"] > ended else None)
    # It streamed, and never faster than 25 Hz over its run (its exact pace:
    # test_ground.py, on a fake clock).
    assert 25 <= status["mavlink"]["manual_control"] <= 25 * duration + 1


def test_fly_says_when_no_drone_answers() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloudrone.flight.ground",
            "--listen",
            f"127.0.0.1:{port}",
            "--duration",
            "1",
            "--no-window",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **SDL},
    )
    assert r.returncode == 1 and "no drone was heard" in r.stderr


def test_keyboard_keys_move_the_drones_pulses(bridge, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Key events through pygame's own queue become pulses at the KK2."""
    for k, v in SDL.items():
        monkeypatch.setenv(k, v)
    import pygame

    from cloudrone.flight.ground import Ground, GroundLink

    b = bridge()
    link = GroundLink(("127.0.0.1", b.gs_port), None, 0)
    g = Ground(link, use_keyboard=True, window=True, out=io.StringIO())

    def run_until(cond: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        """Run the client's loop (200 Hz) until ``cond`` holds."""
        deadline = time.monotonic() + timeout
        while not (value := cond()):
            if time.monotonic() > deadline:
                raise NotInTime(f"not within {timeout} s: {what}; last {b.last_frame()}")
            g.step(time.monotonic())
            time.sleep(0.005)  # paces the client's loop
        return value

    def pulses() -> tuple[int, int, int, int]:
        f = b.last_frame()
        return f[2] if f else (0, 0, 0, 0)

    def key(k: int, down: bool) -> None:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN if down else pygame.KEYUP, key=k))

    try:
        run_until(lambda: link.tm.heard is not None, "the drone heard")
        run_until(lambda: b.status()["pilot_link"], "the drone hears the pilot")  # else no arming
        key(pygame.K_RETURN, True)
        run_until(lambda: b.last_frame()[1] == "armed", "armed by Enter")
        key(pygame.K_w, True)  # throttle climbs 500 z per second while W is held
        run_until(lambda: pulses()[2] >= 1400, "throttle up to 1400 by W")
        key(pygame.K_w, False)
        key(pygame.K_RIGHT, True)
        run_until(lambda: pulses()[0] == 1800, "right arrow: 600 of 1000 roll")
        thr = pulses()[2]
        assert 1400 <= thr < 2000, thr
        key(pygame.K_RIGHT, False)
        run_until(lambda: pulses()[0] == 1500, "roll springs back")
        assert pulses()[2] == thr  # throttle holds where W left it
        key(pygame.K_ESCAPE, True)
        g.step(time.monotonic())
        assert g.quit
    finally:
        g.close()
        link.close()
