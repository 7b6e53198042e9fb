"""``cloudrone_cli fly`` against the real bridge: pygame headless (SDL dummy
drivers), keyboard input, MANUAL_CONTROL at 25 Hz, telemetry shown."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

SDL = {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


def test_fly_command_arms_streams_and_shows_telemetry(bridge) -> None:  # type: ignore[no-untyped-def]
    b = bridge()
    before = time.monotonic()
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
            "4",
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
    frames = [f for f in b.frames() if f[0] > before]
    assert any(f[1] == "armed" for f in frames)
    time.sleep(1.1)
    status = b.status()
    # 25 Hz for about 3.5 s after the drone was first heard.
    assert 25 * 2.5 <= status["mavlink"]["manual_control"] <= 25 * 4.5


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

    def run_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            g.step(time.monotonic())
            time.sleep(0.005)

    def key(k: int, down: bool) -> None:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN if down else pygame.KEYUP, key=k))

    try:
        run_for(1.0)
        assert link.tm.heard is not None
        key(pygame.K_RETURN, True)
        run_for(2.0)
        assert link.tm.armed or b.frames()[-1][1] == "armed"
        key(pygame.K_w, True)
        run_for(1.0)  # 500 z per second: about half throttle
        key(pygame.K_w, False)
        key(pygame.K_RIGHT, True)
        run_for(0.4)
        thr = b.frames()[-1][2][2]
        assert 1400 <= thr <= 1600, thr
        assert b.frames()[-1][2][0] == 1800  # right arrow: 600 of 1000 roll
        key(pygame.K_RIGHT, False)
        run_for(0.3)
        assert b.frames()[-1][2][0] == 1500 and b.frames()[-1][2][2] == thr
        key(pygame.K_ESCAPE, True)
        g.step(time.monotonic())
        assert g.quit
    finally:
        g.close()
        link.close()
