"""The ground joystick client: ``cloudrone_cli fly`` (or ``python -m cloudrone.flight.ground``).

Like the paper's Pygame controller, but speaking MAVLink: it listens where a
ground station would (UDP 14550; the bridge speaks first), then sends
MANUAL_CONTROL at 25 Hz from a joystick, or from the keyboard when there is
none, and shows the drone's telemetry in a small window (and on stdout).

Keyboard: W/S throttle up/down (it stays where it is left), arrows pitch and
roll, A/D yaw (these spring back to centre), Enter arms, Backspace disarms,
Esc quits.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from pymavlink.dialects.v20 import ardupilotmega as mavlink

from cloudrone.flight.config import read_signing_key
from cloudrone.flight.signing import sign_with

GCS_SYSTEM_ID = 255
GCS_COMPONENT_ID = 190
ARM_COMMAND = mavlink.MAV_CMD_COMPONENT_ARM_DISARM


def parse_endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{text!r} is not ADDRESS:PORT, e.g. 0.0.0.0:14550")
    return host or "0.0.0.0", int(port)


# --------------------------------------------------------------------------- sticks


@dataclass
class StickState:
    """Stick positions as MANUAL_CONTROL wants them: x, y, r in -1000..1000, z 0..1000."""

    x: int = 0  # pitch, forward positive
    y: int = 0  # roll, right positive
    z: int = 0  # thrust
    r: int = 0  # yaw, right positive


@dataclass
class KeyboardSticks:
    """Keyboard as a transmitter: throttle holds its place, the other axes spring back."""

    throttle_rate: float = 500.0  # z units per second while W or S is held
    deflection: int = 600  # how far an arrow key pushes the stick
    held: set[str] = field(default_factory=set)
    z: float = 0.0

    def key(self, name: str, down: bool) -> None:
        if down:
            self.held.add(name)
        else:
            self.held.discard(name)

    def update(self, dt: float) -> StickState:
        if "w" in self.held:
            self.z = min(1000.0, self.z + self.throttle_rate * dt)
        if "s" in self.held:
            self.z = max(0.0, self.z - self.throttle_rate * dt)
        d = self.deflection

        def axis(plus: str, minus: str) -> int:
            return (d if plus in self.held else 0) - (d if minus in self.held else 0)

        return StickState(
            x=axis("up", "down"), y=axis("right", "left"), z=round(self.z), r=axis("d", "a")
        )


def parse_axes(text: str) -> dict[str, tuple[int, bool]]:
    """``yaw=0,throttle=-1,roll=3,pitch=-4``: joystick axis per stick, minus = inverted."""
    out: dict[str, tuple[int, bool]] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in ("roll", "pitch", "throttle", "yaw"):
            raise typer.BadParameter(f"{item!r}: write NAME=AXIS with roll, pitch, throttle, yaw")
        try:
            n = int(value)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: the axis must be a number") from None
        out[name] = (abs(n), value.strip().startswith("-"))
    missing = {"roll", "pitch", "throttle", "yaw"} - set(out)
    if missing:
        raise typer.BadParameter(f"no axis given for {', '.join(sorted(missing))}")
    return out


def joystick_sticks(values: list[float], axes: dict[str, tuple[int, bool]]) -> StickState:
    """Joystick axis values (-1..1) to MANUAL_CONTROL; throttle's -1..1 becomes 0..1000."""

    def get(name: str) -> float:
        index, inverted = axes[name]
        v = values[index] if index < len(values) else 0.0
        v = 0.0 if not math.isfinite(v) else max(-1.0, min(1.0, v))
        return -v if inverted else v

    return StickState(
        x=round(get("pitch") * 1000),
        y=round(get("roll") * 1000),
        z=round((get("throttle") + 1.0) * 500),
        r=round(get("yaw") * 1000),
    )


# --------------------------------------------------------------------------- link


@dataclass
class Telemetry:
    heard: float | None = None
    system_id: int | None = None
    armed: bool = False
    status: int = 0
    voltage: float | None = None
    remaining: int | None = None
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    fix_type: int = 0
    lat: float = 0.0
    lon: float = 0.0
    satellites: int = 0
    texts: list[str] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)


class GroundLink:
    """A UDP MAVLink ground station end: learns the drone from its first packet."""

    def __init__(
        self,
        listen: tuple[str, int],
        drone: tuple[str, int] | None,
        system_id: int,
        signing_key: bytes | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(listen)
        self.sock.setblocking(False)
        self.drone = drone
        self.wanted_system = system_id
        self.mav = mavlink.MAVLink(None, srcSystem=GCS_SYSTEM_ID, srcComponent=GCS_COMPONENT_ID)
        self.mav.robust_parsing = True
        self.out = mavlink.MAVLink(None, srcSystem=GCS_SYSTEM_ID, srcComponent=GCS_COMPONENT_ID)
        if signing_key is not None:
            # what we send is signed; what the drone sends must be (one shared state)
            self.mav.signing = sign_with(self.out, signing_key)
        self.tm = Telemetry()
        self.sent = 0
        self._last_heartbeat = 0.0

    @property
    def target(self) -> int:
        return self.wanted_system or self.tm.system_id or 1

    def send(self, msg: Any) -> None:
        if self.drone is None:
            return
        data = msg.pack(self.out)
        self.out.seq = (self.out.seq + 1) % 256
        try:
            self.sock.sendto(data, self.drone)
            self.sent += 1
        except OSError:
            pass

    def manual_control(self, s: StickState) -> None:
        self.send(mavlink.MAVLink_manual_control_message(self.target, s.x, s.y, s.z, s.r, 0))

    def arm(self, on: bool) -> None:
        self.send(
            mavlink.MAVLink_command_long_message(
                self.target, 1, ARM_COMMAND, 0, 1.0 if on else 0.0, 0, 0, 0, 0, 0, 0
            )
        )

    def heartbeat(self, now: float) -> None:
        if now - self._last_heartbeat >= 1.0:
            self._last_heartbeat = now
            self.send(
                mavlink.MAVLink_heartbeat_message(
                    mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, 4, 3
                )
            )

    def poll(self, now: float) -> None:
        for _ in range(200):
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                msgs = self.mav.parse_buffer(data) or []
            except Exception:
                continue
            for m in msgs:
                if m.get_type() == "BAD_DATA":
                    continue
                src = m.get_srcSystem()
                if self.wanted_system and src != self.wanted_system:
                    continue
                if self.drone is None or self.tm.system_id is None:
                    self.drone = addr
                self.tm.system_id = self.tm.system_id or src
                self.tm.heard = now
                self._take(m)

    def _take(self, m: Any) -> None:
        tm = self.tm
        kind = m.get_type()
        if kind == "HEARTBEAT":
            tm.armed = bool(m.base_mode & mavlink.MAV_MODE_FLAG_SAFETY_ARMED)
            tm.status = m.system_status
        elif kind == "SYS_STATUS":
            tm.voltage = None if m.voltage_battery == 0xFFFF else m.voltage_battery / 1000
            tm.remaining = None if m.battery_remaining < 0 else m.battery_remaining
        elif kind == "ATTITUDE":
            tm.roll, tm.pitch, tm.yaw = m.roll, m.pitch, m.yaw
        elif kind == "GPS_RAW_INT":
            tm.fix_type, tm.lat, tm.lon = m.fix_type, m.lat / 1e7, m.lon / 1e7
            tm.satellites = m.satellites_visible
        elif kind == "STATUSTEXT":
            tm.texts = [*tm.texts[-4:], m.text]
        elif kind == "COMMAND_ACK":
            tm.acks.append((m.command, m.result))

    def close(self) -> None:
        self.sock.close()


def telemetry_line(tm: Telemetry, sticks: StickState, now: float) -> str:
    if tm.heard is None:
        return "waiting for the drone (it speaks first)..."
    age = now - tm.heard
    batt = "battery ?" if tm.voltage is None else f"battery {tm.voltage:.2f} V"
    if tm.remaining is not None:
        batt += f" {tm.remaining}%"
    fix = {0: "no GPS", 1: "no fix", 2: "2D", 3: "3D"}.get(tm.fix_type, f"fix {tm.fix_type}")
    return (
        f"system {tm.system_id} {'ARMED' if tm.armed else 'disarmed'} | {batt} | "
        f"roll {math.degrees(tm.roll):+.0f} pitch {math.degrees(tm.pitch):+.0f} "
        f"yaw {math.degrees(tm.yaw):+.0f} deg | {fix} {tm.lat:.5f},{tm.lon:.5f} "
        f"sats {tm.satellites} | sticks x{sticks.x} y{sticks.y} z{sticks.z} r{sticks.r}"
        f"{' | LINK LOST' if age > 3 else ''}"
    )


# --------------------------------------------------------------------------- the client


class Ground:
    """One pygame session: input, MANUAL_CONTROL at ``rate``, telemetry, display."""

    KEYS = frozenset({"w", "s", "a", "d", "up", "down", "left", "right"})

    def __init__(
        self,
        link: GroundLink,
        rate: float = 25.0,
        use_keyboard: bool = False,
        joystick_index: int = 0,
        axes: dict[str, tuple[int, bool]] | None = None,
        window: bool = True,
        out: Any = sys.stdout,
    ) -> None:
        import pygame

        self.pg = pygame
        self.link = link
        self.period = 1.0 / rate
        self.out = out
        pygame.display.init()
        pygame.joystick.init()
        self.joystick: Any = None
        if not use_keyboard and pygame.joystick.get_count() > joystick_index:
            self.joystick = pygame.joystick.Joystick(joystick_index)
            self.joystick.init()
        self.axes = axes or parse_axes("yaw=0,throttle=-1,roll=3,pitch=-4")
        self.keyboard = KeyboardSticks()
        self.sticks = StickState()
        self.screen: Any = None
        self.font: Any = None
        if window:
            self.screen = pygame.display.set_mode((720, 220))
            pygame.display.set_caption("Cloudrone fly")
            pygame.font.init()
            self.font = pygame.font.Font(None, 22)
        self.quit = False
        self.next_send: float | None = None  # set by the first step: no burst at start
        self.next_print = 0.0
        self.last = time.monotonic()

    @property
    def source(self) -> str:
        return f"joystick {self.joystick.get_name()}" if self.joystick else "keyboard"

    def _events(self) -> None:
        pg = self.pg
        for e in pg.event.get():
            if e.type == pg.QUIT:
                self.quit = True
            elif e.type in (pg.KEYDOWN, pg.KEYUP):
                name = pg.key.name(e.key)
                down = e.type == pg.KEYDOWN
                if down and e.key == pg.K_ESCAPE:
                    self.quit = True
                elif down and e.key in (pg.K_RETURN, pg.K_KP_ENTER):
                    self.link.arm(True)
                elif down and e.key == pg.K_BACKSPACE:
                    self.link.arm(False)
                elif name in self.KEYS:
                    self.keyboard.key(name, down)

    def _draw(self, now: float) -> None:
        if self.screen is None:
            return
        tm = self.link.tm
        self.screen.fill((16, 24, 32))
        lines = [
            f"input: {self.source}   (W/S throttle, arrows, A/D yaw, Enter arm, Bksp disarm)",
            *telemetry_line(tm, self.sticks, now).split(" | "),
            *tm.texts[-3:],
        ]
        for i, text in enumerate(lines):
            self.screen.blit(self.font.render(text, True, (220, 230, 240)), (10, 8 + 20 * i))
        self.pg.display.flip()

    def step(self, now: float) -> None:
        """Poll input and telemetry; send when a period is due."""
        self._events()
        dt = max(0.0, min(0.2, now - self.last))
        self.last = now
        if self.joystick is not None:
            values = [self.joystick.get_axis(i) for i in range(self.joystick.get_numaxes())]
            self.sticks = joystick_sticks(values, self.axes)
        else:
            self.sticks = self.keyboard.update(dt)
        self.link.poll(now)
        if self.next_send is None:
            self.next_send = now
        if now >= self.next_send:
            # On schedule; after a stall, on from now: the newest sticks, never a burst.
            self.next_send += self.period
            if self.next_send <= now:
                self.next_send = now + self.period
            self.link.manual_control(self.sticks)
            self.link.heartbeat(now)
        if now >= self.next_print:
            self.next_print = now + 1.0
            print(telemetry_line(self.link.tm, self.sticks, now), file=self.out, flush=True)
            self._draw(now)

    def close(self) -> None:
        self.pg.display.quit()
        self.pg.joystick.quit()


def run(
    listen: tuple[str, int],
    drone: tuple[str, int] | None = None,
    system_id: int = 0,
    rate: float = 25.0,
    duration: float = 0.0,
    keyboard: bool = False,
    joystick: int = 0,
    axes: str = "yaw=0,throttle=-1,roll=3,pitch=-4",
    arm: bool = False,
    window: bool = True,
    signing_key: bytes | None = None,
) -> Telemetry:
    """Fly until Esc, the window closes or ``duration`` seconds pass; return the telemetry."""
    link = GroundLink(listen, drone, system_id, signing_key)
    ground = Ground(link, rate, keyboard, joystick, parse_axes(axes), window)
    print(f"cloudrone fly: listening on {listen[0]}:{listen[1]}, input: {ground.source}")
    start = time.monotonic()
    armed_sent = False
    try:
        while not ground.quit:
            now = time.monotonic()
            ground.step(now)
            if arm and not armed_sent and link.tm.heard is not None and now - start > 0.5:
                link.arm(True)
                armed_sent = True
            if duration and now - start >= duration:
                break
            time.sleep(0.005)
    finally:
        ground.close()
        link.close()
    return link.tm


def fly(
    listen: Annotated[
        str,
        typer.Option(
            help="ADDRESS:PORT to listen on; the bridge speaks first to its ground station"
        ),
    ] = "0.0.0.0:14550",
    drone: Annotated[
        str | None, typer.Option(help="the bridge's ADDRESS:PORT, to speak first instead")
    ] = None,
    system_id: Annotated[
        int, typer.Option(help="the drone's MAVLink system id (0: the first one heard)")
    ] = 0,
    rate: Annotated[float, typer.Option(help="MANUAL_CONTROL messages per second")] = 25.0,
    duration: Annotated[
        float, typer.Option(help="stop after this many seconds (0: until Esc)")
    ] = 0.0,
    keyboard: Annotated[
        bool, typer.Option("--keyboard", help="use the keyboard even if a joystick is plugged in")
    ] = False,
    joystick: Annotated[int, typer.Option(help="which joystick (pygame index)")] = 0,
    axes: Annotated[
        str, typer.Option(help="joystick axes: NAME=AXIS, a minus inverts")
    ] = "yaw=0,throttle=-1,roll=3,pitch=-4",
    arm: Annotated[bool, typer.Option("--arm", help="arm as soon as the drone answers")] = False,
    window: Annotated[
        bool, typer.Option("--window/--no-window", help="show the telemetry window")
    ] = True,
    key_file: Annotated[
        Path | None,
        typer.Option(
            help="the mission's signing key (64 hex digits; `cloudrone_cli mission "
            "ground-station` names its file): a drone with a key refuses unsigned control"
        ),
    ] = None,
) -> None:
    """Fly a drone with a joystick (or the keyboard) and watch its telemetry."""
    signing_key = None
    if key_file is not None:
        signing_key, problem = read_signing_key(str(key_file))
        if problem:
            print(f"--key-file {problem}", file=sys.stderr)
            raise typer.Exit(2)
    tm = run(
        parse_endpoint(listen),
        parse_endpoint(drone) if drone else None,
        system_id,
        rate,
        duration,
        keyboard,
        joystick,
        axes,
        arm,
        window,
        signing_key,
    )
    if tm.heard is None:
        print("no drone was heard: is the bridge's ground_station this address?", file=sys.stderr)
        raise typer.Exit(1)


def main() -> None:
    typer.run(fly)


if __name__ == "__main__":
    main()
