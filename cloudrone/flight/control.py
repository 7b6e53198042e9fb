"""The flight bridge's state machine: arming gesture, failsafe, land-and-serve.

Pure logic: every method takes ``now`` (seconds, any monotonic origin) so that
tests drive it with their own clock. One :meth:`Controller.tick` per output
frame returns the pulses to send; pulses are produced in every state, armed or
not, so the KK2 never loses its receiver signal.

States::

    DISARMED --arm cmd--> ARMING (throttle zero, rudder right, held) --> ARMED
    ARMED --pilot silent > hold--> FAILSAFE (centre, throttle ramps to descent,
          descends, ramps to idle, idles) --> DISARMING --> DISARMED
    ARMED --battery low for delay--> LANDING (same descent, pilot may steer)
          --> DISARMING --> DISARMED (and arming refused while the battery is low)
    FAILSAFE --pilot back with throttle at zero--> ARMED
    ARMED --disarm cmd, throttle at zero--> DISARMING (throttle zero, rudder left)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from cloudrone.flight.config import FlightConfig
from cloudrone.flight.mapping import NEUTRAL, Pulses, Sticks, clamp, sticks_to_pulses


class Mode(StrEnum):
    DISARMED = "disarmed"
    ARMING = "arming"
    ARMED = "armed"
    DISARMING = "disarming"
    FAILSAFE = "failsafe"
    LANDING = "landing"


ARMED_MODES = (Mode.ARMED, Mode.FAILSAFE, Mode.LANDING, Mode.DISARMING)


class Result(IntEnum):
    """Same numbers as MAVLink's MAV_RESULT."""

    ACCEPTED = 0
    TEMPORARILY_REJECTED = 1
    DENIED = 2
    UNSUPPORTED = 3
    FAILED = 4
    IN_PROGRESS = 5


class Severity(IntEnum):
    """Same numbers as MAVLink's MAV_SEVERITY."""

    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6


@dataclass(frozen=True)
class Event:
    """Something the ground station must hear: a status text or a late command ACK."""

    text: str = ""
    severity: Severity = Severity.INFO
    ack: str | None = None  # "arm" or "disarm": the command whose ACK this is
    result: Result = Result.ACCEPTED


class Descent:
    """Throttle profile of a failsafe or low-battery landing.

    From the throttle at the start, ramp down to ``descent_us`` (never up), hold
    it for ``descent_s``, ramp to idle (throttle minimum), idle for ``idle_s``.
    Starting at zero throttle (on the ground) goes straight to the idle phase.
    """

    def __init__(
        self, start: float, from_us: int, config: FlightConfig, already_down: bool = False
    ) -> None:
        fs = config.failsafe
        self.start = start
        self.min_us = config.channels["throttle"].min_us
        self.from_us = from_us
        self.level_us = min(from_us, fs.descent_us)
        self.ramp = fs.ramp_s
        self.hold = 0.0 if already_down else fs.descent_s
        self.first_ramp = 0.0 if already_down else fs.ramp_s
        self.idle = fs.idle_s

    @property
    def duration(self) -> float:
        return self.first_ramp + self.hold + self.ramp + self.idle

    def throttle(self, now: float) -> int:
        e = max(0.0, now - self.start)
        if e < self.first_ramp:
            return round(self.from_us + (self.level_us - self.from_us) * e / self.first_ramp)
        e -= self.first_ramp
        if e < self.hold:
            return self.level_us
        e -= self.hold
        if e < self.ramp:
            return round(self.level_us + (self.min_us - self.level_us) * e / self.ramp)
        return self.min_us

    def done(self, now: float) -> bool:
        return now - self.start >= self.duration


class Controller:
    def __init__(self, config: FlightConfig) -> None:
        self.config = config
        self.channels = dict(config.channels)
        self.mode = Mode.DISARMED
        self.pilot = NEUTRAL
        self.last_input: float | None = None
        self.throttle_locked = True
        self.gesture_start = 0.0
        self.descent: Descent | None = None
        self.pending: set[str] = set()  # commands waiting for their final ACK
        self.voltage: float | None = None
        self.battery_low = False
        self.low_since: float | None = None
        self.landed_low_battery = False
        self.failsafes = 0
        self._told_throttle_high = False
        self._events: list[Event] = []
        self.last = sticks_to_pulses(NEUTRAL, self.channels)

    # ------------------------------------------------------------------ helpers
    @property
    def armed(self) -> bool:
        return self.mode in ARMED_MODES

    def link_alive(self, now: float) -> bool:
        return self.last_input is not None and now - self.last_input <= self.config.failsafe.hold_s

    def _pilot_pulses(self) -> Pulses:
        return sticks_to_pulses(self.pilot, self.channels)

    def _throttle_at_zero(self, us: int) -> bool:
        return us <= self.config.kk2.throttle_zero_us

    def _say(self, text: str, severity: Severity = Severity.INFO) -> None:
        self._events.append(Event(text=text, severity=severity))

    def _ack(self, action: str, result: Result) -> None:
        if action in self.pending:
            self.pending.discard(action)
            self._events.append(Event(ack=action, result=result))

    def drain_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _start_gesture(self, now: float, mode: Mode) -> None:
        self.mode = mode
        self.gesture_start = now

    def _start_descent(self, now: float, mode: Mode) -> None:
        self.mode = mode
        at = self.last.throttle
        self.descent = Descent(now, at, self.config, already_down=self._throttle_at_zero(at))

    # ------------------------------------------------------------------ inputs
    def on_pilot(self, now: float, sticks: Sticks) -> None:
        """A valid control message arrived (MANUAL_CONTROL or RC override)."""
        self.pilot = sticks
        self.last_input = now

    def on_battery(self, now: float, voltage: float) -> None:
        b = self.config.battery
        self.voltage = voltage
        if voltage < b.low_voltage:
            if self.low_since is None:
                self.low_since = now
            if not self.battery_low and now - self.low_since >= b.low_delay_s:
                self.battery_low = True
                what = "landing" if self.armed else "arming refused"
                self._say(
                    f"Battery low: {voltage:.2f} V below {b.low_voltage:.2f} V for "
                    f"{b.low_delay_s:.1f} s; {what}, services keep running",
                    Severity.CRITICAL,
                )
        else:
            self.low_since = None
            if self.battery_low and voltage >= b.resume_voltage:
                self.battery_low = False
                self.landed_low_battery = False
                self._say(f"Battery recovered: {voltage:.2f} V", Severity.NOTICE)

    def request_arm(self, now: float) -> Result:
        if self.mode == Mode.ARMED:
            return Result.ACCEPTED
        if self.mode == Mode.ARMING:
            return Result.IN_PROGRESS
        if self.mode in (Mode.FAILSAFE, Mode.LANDING):
            self._say(f"Arm refused: {self.mode.value} in progress", Severity.WARNING)
            return Result.DENIED
        if self.mode == Mode.DISARMING:
            return Result.TEMPORARILY_REJECTED
        if self.battery_low:
            self._say("Arm refused: battery low (land-and-serve)", Severity.WARNING)
            return Result.DENIED
        if not self.link_alive(now):
            self._say(
                "Arm refused: no pilot input; send MANUAL_CONTROL or RC override first",
                Severity.WARNING,
            )
            return Result.DENIED
        self._start_gesture(now, Mode.ARMING)
        self.pending.add("arm")
        self._say("Arming: KK2 gesture (throttle zero, rudder right)")
        return Result.IN_PROGRESS

    def request_disarm(self, now: float, force: bool = False) -> Result:
        if self.mode == Mode.DISARMED:
            return Result.ACCEPTED
        if self.mode == Mode.DISARMING:
            return Result.IN_PROGRESS
        if self.mode == Mode.ARMING:
            self.mode = Mode.DISARMED
            self._ack("arm", Result.FAILED)
            self._say("Arming cancelled")
            return Result.ACCEPTED
        if not force and not self._throttle_at_zero(self.last.throttle):
            self._say("Disarm refused: bring the throttle to zero first", Severity.WARNING)
            return Result.DENIED
        self._start_gesture(now, Mode.DISARMING)
        self.pending.add("disarm")
        self._say("Disarming: KK2 gesture (throttle zero, rudder left)")
        return Result.IN_PROGRESS

    # ------------------------------------------------------------------ the frame
    def _advance(self, now: float) -> None:
        hold = self.config.kk2.gesture_hold_s
        if self.mode == Mode.ARMING:
            if not self.link_alive(now):
                self.mode = Mode.DISARMED
                self._ack("arm", Result.FAILED)
                self._say("Arming aborted: pilot link lost", Severity.WARNING)
            elif now - self.gesture_start >= hold:
                self.mode = Mode.ARMED
                self.throttle_locked = True
                self._ack("arm", Result.ACCEPTED)
                self._say("Armed")
        elif self.mode == Mode.DISARMING and now - self.gesture_start >= hold:
            self.mode = Mode.DISARMED
            self._ack("disarm", Result.ACCEPTED)
            if self.landed_low_battery:
                self._say("Landed on low battery; disarmed, services keep running")
            else:
                self._say("Disarmed")
        if self.mode == Mode.ARMED:
            if not self.link_alive(now):
                self.failsafes += 1
                self._told_throttle_high = False
                self._start_descent(now, Mode.FAILSAFE)
                self._say(
                    f"Failsafe: pilot link silent for {self.config.failsafe.hold_s:.2f} s; "
                    "levelling and descending",
                    Severity.CRITICAL,
                )
            elif self.battery_low:
                self._start_descent(now, Mode.LANDING)
        elif self.mode == Mode.FAILSAFE:
            assert self.descent is not None
            if self.link_alive(now):
                if self._throttle_at_zero(self._pilot_pulses().throttle):
                    self.mode = Mode.ARMED
                    self.throttle_locked = False
                    self.descent = None
                    self._say("Pilot link back: pilot has control", Severity.NOTICE)
                    return
                if not self._told_throttle_high:
                    self._told_throttle_high = True
                    self._say(
                        "Pilot link back: lower the throttle to zero to take control",
                        Severity.WARNING,
                    )
            if self.descent.done(now):
                self._start_gesture(now, Mode.DISARMING)
        elif self.mode == Mode.LANDING:
            assert self.descent is not None
            if self.descent.done(now):
                self.landed_low_battery = True
                self._start_gesture(now, Mode.DISARMING)

    def _guard_yaw(self, sticks: Sticks, throttle_us: int) -> Sticks:
        """Keep the rudder out of the KK2's arm/disarm corner while throttle is at zero."""
        if self._throttle_at_zero(throttle_us):
            g = self.config.kk2.gesture_guard
            return sticks.replace(yaw=clamp(sticks.yaw, -g, g))
        return sticks

    def tick(self, now: float) -> Pulses:
        self._advance(now)
        thr = self.channels["throttle"]
        if self.mode == Mode.DISARMED:
            out = sticks_to_pulses(NEUTRAL, self.channels)
        elif self.mode == Mode.ARMING:
            out = sticks_to_pulses(Sticks(throttle=-1.0, yaw=1.0), self.channels)
        elif self.mode == Mode.DISARMING:
            out = sticks_to_pulses(Sticks(throttle=-1.0, yaw=-1.0), self.channels)
        elif self.mode == Mode.ARMED:
            pilot = self._pilot_pulses()
            if self.throttle_locked and self._throttle_at_zero(pilot.throttle):
                self.throttle_locked = False
            throttle = thr.min_us if self.throttle_locked else pilot.throttle
            sticks = self._guard_yaw(self.pilot, throttle)
            out = sticks_to_pulses(sticks, self.channels)
            out = Pulses(out.aileron, out.elevator, throttle, out.rudder)
        else:  # FAILSAFE or LANDING
            assert self.descent is not None
            throttle = self.descent.throttle(now)
            if self.mode == Mode.LANDING and self.link_alive(now):
                throttle = min(throttle, self._pilot_pulses().throttle)
                sticks = self._guard_yaw(self.pilot, throttle)
            else:
                sticks = NEUTRAL
            out = sticks_to_pulses(sticks, self.channels)
            out = Pulses(out.aileron, out.elevator, throttle, out.rudder)
        self.last = out
        return out
