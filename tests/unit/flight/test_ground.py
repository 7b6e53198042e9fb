"""The ground client's pure parts: keyboard and joystick to MANUAL_CONTROL, and its
pace on a fake clock."""

import io
import itertools
import math

import pytest
import typer

from cloudrone.flight.ground import (
    KeyboardSticks,
    StickState,
    Telemetry,
    joystick_sticks,
    parse_axes,
    parse_endpoint,
    telemetry_line,
)


def test_keyboard_throttle_holds_and_other_axes_spring_back() -> None:
    k = KeyboardSticks()
    k.key("w", True)
    assert k.update(1.0).z == 500
    assert k.update(2.0).z == 1000  # capped
    k.key("w", False)
    k.key("up", True)
    k.key("a", True)
    s = k.update(0.1)
    assert s == StickState(x=600, y=0, z=1000, r=-600)
    k.key("up", False)
    k.key("a", False)
    assert k.update(0.1) == StickState(z=1000)  # throttle stays where it was left
    k.key("s", True)
    assert k.update(5.0).z == 0


def test_joystick_axes_mapping_and_inversion() -> None:
    axes = parse_axes("yaw=0,throttle=-1,roll=3,pitch=-4")
    assert axes["throttle"] == (1, True) and axes["roll"] == (3, False)
    s = joystick_sticks([0.5, -1.0, 0.0, -0.25, 1.0], axes)
    assert s == StickState(x=-1000, y=-250, z=1000, r=500)
    # Missing axes read as centre, broken values as centre, range clamped.
    s = joystick_sticks([math.nan, 3.0], axes)
    assert s == StickState(x=0, y=0, z=0, r=0)


@pytest.mark.parametrize("bad", ["roll=1", "roll=x,pitch=1,throttle=2,yaw=3", "spin=1"])
def test_bad_axes_are_explained(bad: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_axes(bad)


def test_endpoints() -> None:
    assert parse_endpoint("0.0.0.0:14550") == ("0.0.0.0", 14550)
    assert parse_endpoint(":14550") == ("0.0.0.0", 14550)
    with pytest.raises(typer.BadParameter):
        parse_endpoint("14550")


def test_telemetry_line() -> None:
    tm = Telemetry(
        heard=10.0,
        system_id=3,
        armed=True,
        voltage=11.8,
        remaining=60,
        roll=math.radians(10),
        fix_type=3,
        lat=52.2,
        lon=0.1,
        satellites=9,
    )
    line = telemetry_line(tm, StickState(z=400), 10.5)
    assert "system 3 ARMED" in line and "battery 11.80 V 60%" in line
    assert "roll +10" in line and "3D 52.20000,0.10000 sats 9" in line and "z400" in line
    assert "LINK LOST" in telemetry_line(tm, StickState(), 20.0)
    assert "waiting" in telemetry_line(Telemetry(), StickState(), 0.0)


class CountingLink:
    """Stands in for GroundLink: counts MANUAL_CONTROL on the fake clock."""

    def __init__(self) -> None:
        self.tm = Telemetry()
        self.now = 0.0
        self.sent: list[float] = []

    def poll(self, now: float) -> None:
        pass

    def manual_control(self, sticks: StickState) -> None:
        self.sent.append(self.now)

    def heartbeat(self, now: float) -> None:
        pass

    def arm(self, on: bool) -> None:
        pass


def test_the_client_sends_at_its_rate_on_a_fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    from cloudrone.flight.ground import Ground

    link = CountingLink()
    g = Ground(link, rate=25.0, use_keyboard=True, window=False, out=io.StringIO())  # type: ignore[arg-type]
    try:

        def run(start: float, seconds: float) -> None:
            for k in range(round(seconds / 0.005)):  # the client's loop runs at 200 Hz
                link.now = start + k * 0.005
                g.step(link.now)

        run(1000.0, 4.0)
        assert len(link.sent) == 100  # 25 Hz from the first step: no burst at start
        gaps = [b - a for a, b in itertools.pairwise(link.sent)]
        assert all(0.04 - 1e-9 <= gap <= 0.045 + 1e-9 for gap in gaps), sorted(gaps)[:3]
        # After a stall (a slow frame, a busy machine) it goes on from there at its
        # pace with the newest sticks: no burst to make up for the missed ones.
        before = len(link.sent)
        run(1004.5, 1.0)
        after = link.sent[before:]
        assert after[0] == 1004.5 and len(after) == 25
        gaps = [b - a for a, b in itertools.pairwise(after)]
        assert all(0.04 - 1e-9 <= gap <= 0.045 + 1e-9 for gap in gaps), sorted(gaps)[:3]
    finally:
        g.close()
