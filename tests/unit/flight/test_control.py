"""The state machine with an injected clock: gesture, failsafe, land-and-serve."""

from dataclasses import replace

import pytest

from cloudrone.flight.config import FailsafeConfig, FlightConfig, parse_config
from cloudrone.flight.control import Controller, Descent, Mode, Result
from cloudrone.flight.mapping import Sticks

FRAME = 0.02


class Sim:
    """Drives a Controller at 50 Hz on a fake clock; the pilot sends at 25 Hz."""

    def __init__(self, config: FlightConfig | None = None) -> None:
        self.c = Controller(config or parse_config("{}"))
        self.t = 0.0
        self.frames: list[tuple[float, Mode, tuple[int, int, int, int]]] = []

    def run(self, seconds: float, sticks: Sticks | None = None, pilot: bool = True) -> None:
        end = self.t + seconds
        n = 0
        while self.t < end - 1e-9:
            if pilot and n % 2 == 0:
                self.c.on_pilot(self.t, sticks or self.c.pilot)
            pulses = self.c.tick(self.t).as_tuple()
            self.frames.append((self.t, self.c.mode, pulses))
            self.t += FRAME
            n += 1

    def arm(self) -> None:
        self.run(0.1, Sticks())
        assert self.c.request_arm(self.t) == Result.IN_PROGRESS
        self.run(1.3, Sticks())
        assert self.c.mode == Mode.ARMED


def test_disarmed_outputs_neutral_with_throttle_zero() -> None:
    s = Sim()
    s.run(0.2, Sticks(roll=1, pitch=1, throttle=1, yaw=1))
    assert {f[2] for f in s.frames} == {(1500, 1500, 1000, 1500)}


def test_arm_gesture_holds_throttle_zero_rudder_right_then_acks() -> None:
    s = Sim()
    s.run(0.1, Sticks())
    assert s.c.request_arm(s.t) == Result.IN_PROGRESS
    start = s.t
    s.run(1.5, Sticks())
    gesture = [f for f in s.frames if f[1] == Mode.ARMING]
    assert all(f[2] == (1500, 1500, 1000, 2000) for f in gesture)
    held = gesture[-1][0] - gesture[0][0] + FRAME
    assert 1.2 <= held <= 1.2 + 2 * FRAME
    assert gesture[0][0] == pytest.approx(start)
    acks = [e for e in s.c.drain_events() if e.ack]
    assert [(e.ack, e.result) for e in acks] == [("arm", Result.ACCEPTED)]
    assert s.frames[-1][2][3] == 1500  # rudder back to centre once armed


def test_arm_refused_without_pilot_input_or_on_low_battery() -> None:
    s = Sim()
    assert s.c.request_arm(0.0) == Result.DENIED
    s.run(0.1, Sticks())
    s.c.on_battery(s.t, 9.0)
    s.c.on_battery(s.t + 3.1, 9.0)
    assert s.c.battery_low
    assert s.c.request_arm(s.t + 3.1) == Result.DENIED
    assert any("battery low" in e.text for e in s.c.drain_events())


def test_throttle_interlock_after_arming() -> None:
    s = Sim()
    s.run(0.1, Sticks(throttle=0.5))
    s.c.request_arm(s.t)
    s.run(1.3, Sticks(throttle=0.5))
    assert s.c.mode == Mode.ARMED
    # Pilot's throttle high right after arming: held at zero until brought low once.
    s.run(0.2, Sticks(throttle=0.5))
    assert s.frames[-1][2][2] == 1000
    s.run(0.1, Sticks(throttle=-1))
    s.run(0.1, Sticks(throttle=0.5))
    assert s.frames[-1][2][2] == 1750


def test_sticks_pass_through_while_armed() -> None:
    s = Sim()
    s.arm()
    s.run(0.1, Sticks(throttle=-1))
    s.run(0.2, Sticks(roll=0.5, pitch=-0.5, throttle=0.2, yaw=0.1))
    assert s.frames[-1][2] == (1750, 1250, 1600, 1550)


def test_yaw_is_kept_out_of_the_gesture_corner_at_zero_throttle() -> None:
    s = Sim()
    s.arm()
    s.run(2.0, Sticks(throttle=-1, yaw=-1))
    assert s.c.mode == Mode.ARMED  # a held full-left rudder did not disarm us
    assert s.frames[-1][2][3] == 1100  # 0.8 of the way left
    s.run(0.1, Sticks(throttle=0.0, yaw=-1))
    assert s.frames[-1][2][3] == 1000  # full authority in flight


def test_failsafe_starts_within_hold_plus_one_frame() -> None:
    s = Sim()
    s.arm()
    s.run(0.5, Sticks(throttle=0.4, roll=0.3))
    last_input = s.c.last_input
    assert last_input is not None
    s.run(3.0, pilot=False)
    first = next(f for f in s.frames if f[1] == Mode.FAILSAFE)
    assert last_input + 0.5 < first[0] <= last_input + 0.5 + FRAME + 1e-9
    # Roll, pitch and yaw centred at once; throttle ramps down from where it was.
    assert first[2][0] == 1500 and first[2][1] == 1500 and first[2][3] == 1500
    assert first[2][2] <= 1700
    assert any("Failsafe" in e.text for e in s.c.drain_events())


def test_failsafe_descends_idles_and_disarms() -> None:
    cfg = parse_config("failsafe: {ramp_s: 0.5, descent_s: 1.0, idle_s: 0.5}")
    s = Sim(cfg)
    s.arm()
    s.run(0.2, Sticks(throttle=-1))
    s.run(0.5, Sticks(throttle=0.6))  # 1800 us
    s.run(4.5, pilot=False)
    fs = [f for f in s.frames if f[1] == Mode.FAILSAFE]
    throttles = [f[2][2] for f in fs]
    assert throttles == sorted(throttles, reverse=True)  # never goes up
    assert 1400 in throttles and throttles[-1] == 1000
    at_descent = [f for f in fs if f[2][2] == 1400]
    assert at_descent[-1][0] - at_descent[0][0] == pytest.approx(1.0, abs=2 * FRAME)
    assert s.c.mode == Mode.DISARMED
    modes = [f[1] for f in s.frames]
    assert Mode.DISARMING in modes
    assert all(f[2] == (1500, 1500, 1000, 1000) for f in s.frames if f[1] == Mode.DISARMING)


def test_control_returns_only_with_throttle_low() -> None:
    s = Sim()
    s.arm()
    s.run(0.2, Sticks(throttle=-1))
    s.run(0.3, Sticks(throttle=0.6))
    s.run(0.7, pilot=False)
    assert s.c.mode == Mode.FAILSAFE
    s.run(0.3, Sticks(throttle=0.6))  # back, but throttle high
    assert s.c.mode == Mode.FAILSAFE
    assert s.frames[-1][2][2] < 1800
    s.run(0.1, Sticks(throttle=-1))
    assert s.c.mode == Mode.ARMED
    s.run(0.1, Sticks(throttle=0.0))
    assert s.frames[-1][2][2] == 1500


def test_low_battery_lands_and_serves() -> None:
    cfg = parse_config(
        "failsafe: {ramp_s: 0.2, descent_s: 0.5, idle_s: 0.2}\n"
        "battery: {low_voltage: 10.5, low_delay_s: 1.0}"
    )
    s = Sim(cfg)
    s.arm()
    s.run(0.1, Sticks(throttle=-1))
    s.run(0.2, Sticks(throttle=0.5))
    # A sag shorter than the delay does nothing.
    s.c.on_battery(s.t, 10.0)
    s.run(0.5, Sticks(throttle=0.5))
    s.c.on_battery(s.t, 11.5)
    s.run(0.6, Sticks(throttle=0.5))
    assert s.c.mode == Mode.ARMED and not s.c.battery_low
    s.c.on_battery(s.t, 10.2)
    s.run(1.1, Sticks(throttle=0.5))
    s.c.on_battery(s.t, 10.2)
    s.run(0.6, Sticks(throttle=0.5, roll=0.5))
    assert s.c.mode == Mode.LANDING
    # The pilot may still steer while it lands, but not climb.
    assert s.frames[-1][2][0] == 1750
    assert s.frames[-1][2][2] <= 1400
    s.run(2.0, Sticks(throttle=0.5))
    assert s.c.mode == Mode.DISARMED and s.c.landed_low_battery
    texts = [e.text for e in s.c.drain_events()]
    assert any("Battery low" in t for t in texts)
    assert any("services keep running" in t for t in texts)
    assert s.c.request_arm(s.t) == Result.DENIED


def test_disarm_needs_throttle_at_zero_unless_forced() -> None:
    s = Sim()
    s.arm()
    s.run(0.1, Sticks(throttle=-1))
    s.run(0.1, Sticks(throttle=0.2))
    assert s.c.request_disarm(s.t) == Result.DENIED
    assert s.c.request_disarm(s.t, force=True) == Result.IN_PROGRESS
    s.run(1.3, Sticks(throttle=0.2))
    assert s.c.mode == Mode.DISARMED
    acks = [(e.ack, e.result) for e in s.c.drain_events() if e.ack]
    assert ("disarm", Result.ACCEPTED) in acks


def test_arming_aborts_when_the_link_drops() -> None:
    s = Sim()
    s.run(0.1, Sticks())
    s.c.request_arm(s.t)
    s.run(1.0, pilot=False)
    assert s.c.mode == Mode.DISARMED
    acks = [(e.ack, e.result) for e in s.c.drain_events() if e.ack]
    assert acks == [("arm", Result.FAILED)]


def test_descent_from_ground_skips_to_idle() -> None:
    cfg = replace(parse_config("{}"), failsafe=FailsafeConfig(ramp_s=1, descent_s=10, idle_s=2))
    d = Descent(0.0, 1000, cfg, already_down=True)
    assert d.duration == 3.0
    assert d.throttle(0.5) == 1000
    up = Descent(0.0, 1300, cfg)
    assert up.throttle(0.5) == 1300  # never raised to the descent value
