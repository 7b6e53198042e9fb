"""MAVSDK (the 4.x native binding, asyncio API), a real ground station, flies the bridge.

MAVSDK is stricter than pymavlink or MAVProxy: it sends unused COMMAND_LONG
parameters as NaN, waits for a COMMAND_ACK addressed to itself, reads
arming readiness from SYS_STATUS's pre-arm bit, the landed state from
EXTENDED_SYS_STATE and home from HOME_POSITION. Every wait here is on a
condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

mavsdk_asyncio = pytest.importorskip("mavsdk.asyncio")

from mavsdk.asyncio import ComponentType, Configuration, Mavsdk  # noqa: E402
from mavsdk.asyncio.plugins.action import ActionAsync, ActionError  # noqa: E402
from mavsdk.asyncio.plugins.manual_control import ManualControlAsync  # noqa: E402
from mavsdk.asyncio.plugins.telemetry import TelemetryAsync  # noqa: E402

pytestmark = pytest.mark.integration

QUICK_FAILSAFE = {"ramp_s": 0.3, "descent_s": 0.6, "idle_s": 0.3}


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "") -> Any:
    """Poll an async condition with a deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await asyncio.wait_for(check(), 2.0)
        except TimeoutError:
            last = None
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"MAVSDK: not within {timeout} s: {what} (last {last!r})")


class Pilot:
    """MAVSDK's manual control input at 25 Hz, as a joystick would send it."""

    def __init__(self, control: ManualControlAsync) -> None:
        self.control = control
        self.sticks = (0.0, 0.0, 0.0, 0.0)  # x pitch, y roll, z throttle 0..1, r yaw
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await self.control.set_manual_control_input(*self.sticks)
            await asyncio.sleep(0.04)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
        return time.monotonic()


async def fly_with_mavsdk(b: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    config = Configuration.create_with_component_type(ComponentType.GROUND_STATION)
    async with Mavsdk(config) as sdk:
        await sdk.add_any_connection(f"udpin://127.0.0.1:{b.gs_port}")
        system = await sdk.first_autopilot(timeout_s=15.0)
        assert system is not None, "MAVSDK found no autopilot"
        assert await system.get_system_id() == 1
        telemetry = TelemetryAsync(system)
        action = ActionAsync(system)
        pilot = Pilot(ManualControlAsync(system))

        # Telemetry in the units the spec gives: MAVSDK converts them back.
        seen["battery"] = await until(
            lambda: _if(telemetry.battery(), lambda v: not math.isnan(v.voltage_v)),
            what="battery",
        )
        position = await until(
            lambda: _if(telemetry.position(), lambda p: not math.isnan(p.latitude_deg)),
            what="position",
        )
        seen["position"] = position
        seen["gps"] = await until(
            lambda: _if(telemetry.gps_info(), lambda g: g.num_satellites > 0), what="gps"
        )
        seen["home"] = await until(
            lambda: _if(telemetry.home(), lambda h: not math.isnan(h.latitude_deg)),
            what="home position",
        )
        # MAVSDK may hand out its unset value (NaN) before the first ATTITUDE lands
        seen["attitude"] = await until(
            lambda: _if(telemetry.attitude_euler(), lambda a: not math.isnan(a.roll_deg)),
            what="attitude",
        )
        seen["landed_state"] = await until(telemetry.landed_state, what="landed state")
        assert await telemetry.armed() is False

        # Not armable without a pilot's stream; armable once the sticks flow.
        pilot.start()
        await until(
            lambda: _if(telemetry.health(), lambda h: h.is_armable), what="health.is_armable"
        )
        await action.arm()  # raises ActionError on DENIED, FAILED or a timeout
        await until(telemetry.armed, what="armed")
        seen["armed_frame"] = await frame(b, "armed")

        # Sticks: x pitch, y roll, r yaw in -1..1, z throttle 0..1.
        pilot.sticks = (0.5, -0.5, 0.6, 0.2)
        seen["flying"] = await frame(b, "armed", (1250, 1750, 1600, 1600))
        seen["in_air"] = await until(telemetry.in_air, what="in_air")

        # A command the bridge cannot do is refused at once, not left to time out.
        started = time.monotonic()
        with pytest.raises(ActionError) as refused:
            await action.takeoff()
        seen["takeoff_error"] = str(refused.value)
        seen["takeoff_s"] = time.monotonic() - started

        pilot.sticks = (0.0, 0.0, 0.0, 0.0)
        await frame(b, "armed", (1500, 1500, 1000, 1500))
        await action.disarm()
        await until(lambda: _not(telemetry.armed()), what="disarmed")
        await frame(b, "disarmed", (1500, 1500, 1000, 1500))

        # Arm again, climb, then the pilot's link dies: failsafe, descent, disarm.
        await action.arm()
        pilot.sticks = (0.0, 0.3, 0.7, 0.0)
        await frame(b, "armed", (1650, 1500, 1700, 1500))
        seen["lost_at"] = await pilot.stop()
        seen["failsafe"] = await first_frame(b, "failsafe")
        await frame(b, "disarmed", timeout=15)
        await until(lambda: _not(telemetry.armed()), what="disarmed after failsafe")
    return seen


async def frame(
    b: Any, mode: str | None = None, pulses: tuple[int, ...] | None = None, timeout: float = 10.0
) -> Any:
    """The bridge's latest frame once it has this mode and pulses (the loop keeps running)."""

    async def check() -> Any:
        f = b.last_frame()
        return f if f and mode in (None, f[1]) and pulses in (None, f[2]) else None

    return await until(check, timeout, f"frame {mode} {pulses}, last {b.last_frame()}")


async def first_frame(b: Any, mode: str, timeout: float = 10.0) -> Any:
    async def check() -> Any:
        return next((f for f in b.frames() if f[1] == mode), None)

    return await until(check, timeout, f"a {mode} frame")


async def _if(value: Awaitable[Any], predicate: Callable[[Any], bool]) -> Any:
    v = await value
    return v if predicate(v) else None


async def _not(value: Awaitable[Any]) -> bool:
    return not await value


def test_mavsdk_flies_the_bridge(bridge) -> None:  # type: ignore[no-untyped-def]
    b = bridge(failsafe=QUICK_FAILSAFE)
    seen = asyncio.run(fly_with_mavsdk(b))

    battery = seen["battery"]
    assert battery.voltage_v == pytest.approx(12.4, abs=0.01)  # SYS_STATUS/BATTERY_STATUS mV
    assert battery.remaining_percent == pytest.approx(92, abs=1)
    p = seen["position"]  # GLOBAL_POSITION_INT: degE7, mm
    assert p.latitude_deg == pytest.approx(52.2109, abs=1e-6)
    assert p.longitude_deg == pytest.approx(0.0917, abs=1e-6)
    assert p.absolute_altitude_m == pytest.approx(20.0, abs=0.01)
    assert p.relative_altitude_m == pytest.approx(0.0, abs=0.01)
    assert seen["gps"].num_satellites == 10
    assert seen["home"].latitude_deg == pytest.approx(52.2109, abs=1e-6)
    assert abs(seen["attitude"].roll_deg) < 1.0  # ATTITUDE radians -> degrees
    assert "UNSUPPORTED" in seen["takeoff_error"].upper()
    assert seen["takeoff_s"] < 1.5  # answered, not MAVSDK's own timeout
    assert seen["in_air"] is True

    # The failsafe came after the link was lost, never before the hold.
    assert seen["failsafe"][0] - seen["lost_at"] > 0.5 - 0.05
    frames = b.frames()
    fs = [f for f in frames if f[1] == "failsafe"]
    assert all(f[2][0] == 1500 and f[2][1] == 1500 and f[2][3] == 1500 for f in fs)
    assert fs[-1][2][2] == 1000
    status = b.status()
    assert status["failsafes"] == 1
    assert status["mavlink"]["handler_errors"] == 0
    assert status["mavlink"]["manual_control"] > 0
    assert "Traceback" not in b.log()
