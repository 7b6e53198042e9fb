"""Pure pulse mapping: stick positions in, KK2 receiver pulse widths out.

Stick space is what an RC transmitter's sticks are: every axis from -1 to +1,
roll +1 = right, pitch +1 = pushed forward, yaw +1 = right, throttle -1 = fully
down and +1 = full power. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cloudrone.flight.config import PULSE_CEILING_US, PULSE_FLOOR_US, ChannelConfig

MANUAL_AXIS_INVALID = 32767  # INT16_MAX marks an axis the ground station does not send
RC_IGNORE = 65535  # RC_CHANNELS_OVERRIDE: leave this channel as it is
RC_RELEASE = 0  # RC_CHANNELS_OVERRIDE: give the channel back (to MANUAL_CONTROL or neutral)
RC_VALID_MIN = PULSE_FLOOR_US  # override values outside this window are malformed: dropped
RC_VALID_MAX = PULSE_CEILING_US


@dataclass(frozen=True)
class Sticks:
    """Stick positions, each -1..+1."""

    roll: float = 0.0
    pitch: float = 0.0
    throttle: float = -1.0
    yaw: float = 0.0

    def replace(self, **changes: float) -> Sticks:
        return Sticks(**{**self.__dict__, **changes})


NEUTRAL = Sticks()


@dataclass(frozen=True)
class Pulses:
    """Pulse widths in microseconds for the four KK2 inputs."""

    aileron: int
    elevator: int
    throttle: int
    rudder: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.aileron, self.elevator, self.throttle, self.rudder)


def clamp(value: float, lo: float, hi: float) -> float:
    """``value`` limited to ``lo..hi``; NaN becomes ``lo`` (never a wild value)."""
    if math.isnan(value):
        return lo
    return lo if value < lo else hi if value > hi else value


def expo(x: float, amount: float) -> float:
    """RC-style exponential: soft around centre, full travel kept at the ends."""
    return (1.0 - amount) * x + amount * x * x * x


def centre_us(cal: ChannelConfig) -> float:
    return clamp(1500.0 + cal.trim_us, cal.min_us, cal.max_us)


def stick_to_pulse(x: float, cal: ChannelConfig) -> int:
    """Map one stick position to a pulse inside the channel's endpoints.

    Expo first (in stick space), then reversal, then the two half-travels from
    the trimmed centre to each endpoint.
    """
    x = clamp(x, -1.0, 1.0) if math.isfinite(x) else 0.0
    x = expo(x, cal.expo)
    if cal.reversed:
        x = -x
    c = centre_us(cal)
    pulse = c + x * (cal.max_us - c) if x >= 0 else c + x * (c - cal.min_us)
    return round(clamp(pulse, cal.min_us, cal.max_us))


def sticks_to_pulses(s: Sticks, channels: dict[str, ChannelConfig]) -> Pulses:
    return Pulses(
        aileron=stick_to_pulse(s.roll, channels["aileron"]),
        elevator=stick_to_pulse(s.pitch, channels["elevator"]),
        throttle=stick_to_pulse(s.throttle, channels["throttle"]),
        rudder=stick_to_pulse(s.yaw, channels["rudder"]),
    )


# --------------------------------------------------------------------------- MAVLink input


@dataclass
class InputCounters:
    accepted: int = 0
    clamped: int = 0  # values outside the legal range, limited to it
    dropped: int = 0  # values (or whole messages) ignored as malformed


def _axis(value: int, lo: int, hi: int, counters: InputCounters) -> float | None:
    if value == MANUAL_AXIS_INVALID:
        return None
    if value < lo or value > hi:
        counters.clamped += 1
        value = int(clamp(value, lo, hi))
    return float(value)


def manual_control_to_sticks(
    x: int, y: int, z: int, r: int, previous: Sticks, counters: InputCounters
) -> Sticks:
    """MANUAL_CONTROL (x pitch, y roll, z thrust 0..1000, r yaw; -1000..1000) to sticks.

    Values beyond the range are clamped; INT16_MAX means "axis not sent" and
    keeps the previous position.
    """
    out = previous
    px = _axis(x, -1000, 1000, counters)
    py = _axis(y, -1000, 1000, counters)
    pz = _axis(z, 0, 1000, counters)
    pr = _axis(r, -1000, 1000, counters)
    if px is not None:
        out = out.replace(pitch=px / 1000.0)
    if py is not None:
        out = out.replace(roll=py / 1000.0)
    if pz is not None:
        out = out.replace(throttle=pz / 500.0 - 1.0)
    if pr is not None:
        out = out.replace(yaw=pr / 1000.0)
    counters.accepted += 1
    return out


AXIS_FIELD = {"aileron": "roll", "elevator": "pitch", "throttle": "throttle", "rudder": "yaw"}


@dataclass
class PilotInput:
    """What the pilot's link currently says, merging MANUAL_CONTROL and RC override.

    An RC override on a channel wins until released (value 0); a released
    channel falls back to MANUAL_CONTROL's value, or neutral if it never came.
    """

    manual: Sticks = NEUTRAL
    override: dict[str, float] | None = None
    counters: InputCounters | None = None

    def __post_init__(self) -> None:
        if self.override is None:
            self.override = {}
        if self.counters is None:
            self.counters = InputCounters()

    @property
    def sticks(self) -> Sticks:
        assert self.override is not None
        return self.manual.replace(**self.override) if self.override else self.manual

    def on_manual_control(self, x: int, y: int, z: int, r: int) -> Sticks:
        assert self.counters is not None
        self.manual = manual_control_to_sticks(x, y, z, r, self.manual, self.counters)
        return self.sticks

    def on_rc_override(self, raw: list[int], channels: dict[str, ChannelConfig]) -> bool:
        """Apply RC_CHANNELS_OVERRIDE channel values (index 0 = channel 1).

        Returns True when at least one axis was set or released (a live input).
        """
        assert self.override is not None and self.counters is not None
        touched = False
        for axis, cal in channels.items():
            if cal.rc > len(raw):
                continue
            value = raw[cal.rc - 1]
            name = AXIS_FIELD[axis]
            if value == RC_IGNORE:
                continue
            if value == RC_RELEASE:
                self.override.pop(name, None)
                touched = True
                continue
            if not RC_VALID_MIN <= value <= RC_VALID_MAX:
                self.counters.dropped += 1
                continue
            if not 1000 <= value <= 2000:
                self.counters.clamped += 1
            # The ground station speaks in receiver microseconds: 1000..2000 is full travel.
            self.override[name] = clamp((value - 1500) / 500.0, -1.0, 1.0)
            touched = True
        if touched:
            self.counters.accepted += 1
        return touched
