"""Pulse mapping: endpoints, trim, reversal, expo, MAVLink input conversion."""

import math

from hypothesis import given
from hypothesis import strategies as st

from cloudrone.flight.config import ChannelConfig
from cloudrone.flight.mapping import (
    InputCounters,
    PilotInput,
    Sticks,
    expo,
    manual_control_to_sticks,
    stick_to_pulse,
    sticks_to_pulses,
)

PLAIN = ChannelConfig(output=0, rc=1)
CHANNELS = {
    "aileron": ChannelConfig(output=0, rc=1),
    "elevator": ChannelConfig(output=1, rc=2),
    "throttle": ChannelConfig(output=2, rc=3),
    "rudder": ChannelConfig(output=3, rc=4),
}


def test_plain_channel_spans_1000_to_2000_with_centre_1500() -> None:
    assert stick_to_pulse(-1.0, PLAIN) == 1000
    assert stick_to_pulse(0.0, PLAIN) == 1500
    assert stick_to_pulse(1.0, PLAIN) == 2000
    assert stick_to_pulse(0.5, PLAIN) == 1750


def test_endpoints_are_per_side_travel_from_the_trimmed_centre() -> None:
    cal = ChannelConfig(output=0, rc=1, min_us=1100, max_us=1900, trim_us=20)
    assert stick_to_pulse(0.0, cal) == 1520
    assert stick_to_pulse(1.0, cal) == 1900
    assert stick_to_pulse(-1.0, cal) == 1100
    # Half stick is half of each side's own travel: 1520 + 190 and 1520 - 210.
    assert stick_to_pulse(0.5, cal) == 1710
    assert stick_to_pulse(-0.5, cal) == 1310


def test_reversal_mirrors_around_the_centre() -> None:
    cal = ChannelConfig(output=0, rc=1, reversed=True)
    assert stick_to_pulse(1.0, cal) == 1000
    assert stick_to_pulse(-1.0, cal) == 2000
    assert stick_to_pulse(0.25, cal) == 1375


def test_expo_softens_the_middle_and_keeps_the_ends() -> None:
    cal = ChannelConfig(output=0, rc=1, expo=0.5)
    assert stick_to_pulse(1.0, cal) == 2000
    assert stick_to_pulse(-1.0, cal) == 1000
    # 0.5 stick -> 0.5*0.5 + 0.5*0.125 = 0.3125 -> 1656
    assert stick_to_pulse(0.5, cal) == 1656
    assert expo(0.0, 1.0) == 0.0


def test_out_of_range_and_nan_never_leave_the_endpoints() -> None:
    assert stick_to_pulse(7.0, PLAIN) == 2000
    assert stick_to_pulse(-7.0, PLAIN) == 1000
    assert stick_to_pulse(math.nan, PLAIN) == 1500
    assert stick_to_pulse(math.inf, PLAIN) == 1500


@given(
    x=st.floats(allow_nan=True, allow_infinity=True),
    lo=st.integers(800, 1400),
    hi=st.integers(1600, 2200),
    trim=st.integers(-99, 99),
    rev=st.booleans(),
    e=st.floats(0.0, 1.0),
)
def test_any_stick_maps_inside_the_endpoints(
    x: float, lo: int, hi: int, trim: int, rev: bool, e: float
) -> None:
    cal = ChannelConfig(output=0, rc=1, min_us=lo, max_us=hi, trim_us=trim, reversed=rev, expo=e)
    assert lo <= stick_to_pulse(x, cal) <= hi


@given(a=st.floats(-1, 1), b=st.floats(-1, 1), e=st.floats(0, 1))
def test_mapping_is_monotonic(a: float, b: float, e: float) -> None:
    cal = ChannelConfig(output=0, rc=1, expo=e)
    lo, hi = sorted((a, b))
    assert stick_to_pulse(lo, cal) <= stick_to_pulse(hi, cal)


def test_manual_control_axes() -> None:
    c = InputCounters()
    s = manual_control_to_sticks(500, -1000, 1000, 250, Sticks(), c)
    assert s == Sticks(roll=-1.0, pitch=0.5, throttle=1.0, yaw=0.25)
    p = sticks_to_pulses(s, CHANNELS)
    assert p.as_tuple() == (1000, 1750, 2000, 1625)
    assert c.accepted == 1 and c.clamped == 0


def test_manual_control_clamps_and_keeps_unsent_axes() -> None:
    c = InputCounters()
    prev = Sticks(roll=0.3, pitch=0.0, throttle=0.0, yaw=0.0)
    s = manual_control_to_sticks(-32768, 32767, -5, 4000, prev, c)
    assert s.pitch == -1.0  # clamped
    assert s.roll == 0.3  # INT16_MAX: not sent, kept
    assert s.throttle == -1.0  # z below 0 clamped to zero thrust
    assert s.yaw == 1.0
    assert c.clamped == 3


def test_rc_override_set_ignore_release_and_drop() -> None:
    pilot = PilotInput()
    pilot.on_manual_control(0, 0, 600, 0)
    assert pilot.on_rc_override([1600, 65535, 1500, 1400, 0, 0, 0, 0], CHANNELS)
    assert pilot.sticks.roll == 0.2
    assert pilot.sticks.throttle == 0.0
    assert pilot.sticks.yaw == -0.2
    # 65535 = ignore: pitch stays with MANUAL_CONTROL
    assert pilot.sticks.pitch == 0.0
    # 0 = release back to MANUAL_CONTROL's throttle (z=600 -> 0.2)
    pilot.on_rc_override([65535, 65535, 0, 65535, 0, 0, 0, 0], CHANNELS)
    assert math.isclose(pilot.sticks.throttle, 0.2)
    # Malformed (outside 800..2200) is dropped, a slightly wide value clamped
    before = pilot.sticks
    assert not pilot.on_rc_override([5000, 65535, 65535, 65535, 0, 0, 0, 0], CHANNELS)
    assert pilot.sticks == before
    assert pilot.counters.dropped == 1
    pilot.on_rc_override([2100, 65535, 65535, 65535, 0, 0, 0, 0], CHANNELS)
    assert pilot.sticks.roll == 1.0
    assert pilot.counters.clamped == 1
