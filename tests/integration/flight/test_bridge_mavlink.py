"""Fly the bridge process with a pymavlink ground station over loopback UDP.

Assertions are on the pulses the sim backend recorded (values and times), the
ACKs, status texts and telemetry the ground station received.

Timing margins: the bridge and the test run as ordinary (non real-time)
processes on a small shared machine, so every time bound adds SLACK = 0.15 s
for loopback delivery and scheduling delays of two processes. The bound
itself (hold + one 20 ms frame) is checked exactly, on a fake clock, in
tests/unit/flight/test_control.py.
"""

from __future__ import annotations

import itertools
import time

import pytest
from pymavlink import mavutil

pytestmark = pytest.mark.integration

M = mavutil.mavlink
ARM = M.MAV_CMD_COMPONENT_ARM_DISARM
FRAME = 0.02
SLACK = 0.15
QUICK_FAILSAFE = {"ramp_s": 0.3, "descent_s": 0.8, "idle_s": 0.3}


def wait_for(predicate, timeout: float = 5.0, step: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def arm(gs, b) -> None:  # type: ignore[no-untyped-def]
    gs.fly(z=0)
    time.sleep(0.2)
    gs.command(ARM, 1)
    first = gs.recv("COMMAND_ACK", cond=lambda m: m.command == ARM)
    assert first.result == M.MAV_RESULT_IN_PROGRESS
    final = gs.recv("COMMAND_ACK", timeout=4, cond=lambda m: m.command == ARM)
    assert final is not None and final.result == M.MAV_RESULT_ACCEPTED
    assert wait_for(lambda: b.status()["mode"] == "armed")


def test_heartbeat_telemetry_and_parameters(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge()
    gs = ground(b)
    hbs = []
    t0 = time.monotonic()
    while len(hbs) < 3:
        hb = gs.recv("HEARTBEAT", timeout=3)
        assert hb is not None
        hbs.append((time.monotonic(), hb))
    # 1 Hz: three heartbeats span about two seconds.
    assert 1.5 < hbs[-1][0] - hbs[0][0] < 2.8, time.monotonic() - t0
    hb = hbs[-1][1]
    assert hb.type == M.MAV_TYPE_QUADROTOR and hb.autopilot == M.MAV_AUTOPILOT_GENERIC
    assert hb.base_mode & M.MAV_MODE_FLAG_MANUAL_INPUT_ENABLED
    assert not hb.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED
    assert hb.system_status == M.MAV_STATE_STANDBY
    assert hb.get_srcSystem() == 1 and hb.get_srcComponent() == 1

    st = gs.recv("SYS_STATUS")
    assert st.voltage_battery == pytest.approx(12400, abs=5)
    assert st.battery_remaining == 92  # 4.133 V/cell on the 3.3-4.2 V scale
    assert st.onboard_control_sensors_present & M.MAV_SYS_STATUS_SENSOR_BATTERY
    att = gs.recv("ATTITUDE")
    assert abs(att.roll) < 0.01 and abs(att.pitch) < 0.01
    gps = gs.recv("GPS_RAW_INT")
    assert gps.fix_type == 3 and gps.lat == 522109000 and gps.lon == 917000

    gs.send(gs.conn.mav.param_request_list_send, 1, 1)
    names = set()
    while True:
        pv = gs.recv("PARAM_VALUE", timeout=2)
        if pv is None:
            break
        names.add(pv.param_id)
        count = pv.param_count
        if len(names) == count:
            break
    assert {"SYSID_THISMAV", "FS_HOLD_S", "BATT_LOW_VOLT", "SIM_BATT_VOLT"} <= names
    assert len(names) == count

    gs.send(gs.conn.mav.mission_request_list_send, 1, 1, 0)
    assert gs.recv("MISSION_COUNT").count == 0
    gs.command(M.MAV_CMD_REQUEST_MESSAGE, M.MAVLINK_MSG_ID_AUTOPILOT_VERSION)
    ack = gs.recv("COMMAND_ACK", cond=lambda m: m.command == M.MAV_CMD_REQUEST_MESSAGE)
    assert ack.result == M.MAV_RESULT_ACCEPTED
    assert gs.recv("AUTOPILOT_VERSION") is not None
    gs.command(M.MAV_CMD_NAV_TAKEOFF)
    ack = gs.recv("COMMAND_ACK", cond=lambda m: m.command == M.MAV_CMD_NAV_TAKEOFF)
    assert ack.result == M.MAV_RESULT_UNSUPPORTED
    # Pulses flow while disarmed too: 50 Hz, throttle at zero, sticks centred.
    frames = b.frames()
    assert {f[2] for f in frames} == {(1500, 1500, 1000, 1500)}
    span = frames[-1][0] - frames[0][0]
    assert len(frames) == pytest.approx(span / FRAME + 1, rel=0.05)


def test_arm_fly_sticks_and_disarm(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge()
    gs = ground(b)
    # No pilot input yet: arming is refused.
    gs.command(ARM, 1)
    ack = gs.recv("COMMAND_ACK", cond=lambda m: m.command == ARM)
    assert ack.result == M.MAV_RESULT_DENIED
    arm(gs, b)
    hb = gs.recv("HEARTBEAT", cond=lambda m: m.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED)
    assert hb.system_status == M.MAV_STATE_ACTIVE

    gs.fly(x=500, y=-500, z=600, r=200)
    time.sleep(0.4)
    gs.fly(z=0)
    time.sleep(0.3)
    gs.command(ARM, 0)
    assert gs.recv("COMMAND_ACK", cond=lambda m: m.command == ARM).result == 5
    done = gs.recv("COMMAND_ACK", timeout=4, cond=lambda m: m.command == ARM)
    assert done.result == M.MAV_RESULT_ACCEPTED
    time.sleep(0.2)

    frames = b.frames()
    start = next(i for i, f in enumerate(frames) if f[1] == "arming")
    end = next(i for i, f in enumerate(frames) if i > start and f[1] != "arming")
    assert {f[2] for f in frames[start:end]} == {(1500, 1500, 1000, 2000)}
    held = frames[end][0] - frames[start][0]  # until the first frame after the gesture
    assert 1.2 <= held <= 1.2 + FRAME + SLACK
    # x=500 pitch forward, y=-500 roll left, z=600 -> 1600, r=200 -> 1600
    assert (1250, 1750, 1600, 1600) in {f[2] for f in frames if f[1] == "armed"}
    disarm = [f for f in frames if f[1] == "disarming"]
    assert {f[2] for f in disarm} == {(1500, 1500, 1000, 1000)}
    assert frames[-1][1:] == ("disarmed", (1500, 1500, 1000, 1500))
    assert gs.recv("STATUSTEXT", cond=lambda m: m.text == "Disarmed") is not None
    texts = [m.text for m in gs.messages if m.get_type() == "STATUSTEXT"]
    assert "Armed" in texts


def test_silence_starts_failsafe_within_hold_plus_one_frame(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge(failsafe=QUICK_FAILSAFE)
    gs = ground(b)
    arm(gs, b)
    gs.fly(y=300, z=700, r=-100)
    time.sleep(0.5)
    last_sent = gs.silence()
    text = gs.recv("STATUSTEXT", cond=lambda m: m.text.startswith("Failsafe"))
    assert text is not None and text.severity == M.MAV_SEVERITY_CRITICAL
    assert wait_for(lambda: b.status()["mode"] == "disarmed", timeout=6)
    frames = b.frames()
    first = next(i for i, f in enumerate(frames) if f[1] == "failsafe")
    t_fs = frames[first][0]
    # Never before the hold (a message cannot arrive before it is sent); at most
    # hold + one frame after the last message, plus SLACK for delivery.
    assert 0.5 < t_fs - last_sent <= 0.5 + FRAME + SLACK
    assert frames[first - 1][2] == (1650, 1500, 1700, 1450)  # pilot's sticks up to then
    fs = [f for f in frames if f[1] == "failsafe"]
    assert all(f[2][0] == 1500 and f[2][1] == 1500 and f[2][3] == 1500 for f in fs)
    throttle = [f[2][2] for f in fs]
    assert throttle == sorted(throttle, reverse=True) and throttle[0] <= 1700
    assert 1400 in throttle and throttle[-1] == 1000
    assert any(f[1] == "disarming" for f in frames)
    # Pulses never stopped: no gap between recorded frames beyond two periods + slack.
    gaps = [b2[0] - a[0] for a, b2 in itertools.pairwise(frames)]
    assert max(gaps) < 2 * FRAME + SLACK
    assert b.status()["failsafes"] == 1


def test_control_returns_only_when_throttle_is_low(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge(failsafe={"ramp_s": 0.5, "descent_s": 20.0, "idle_s": 1.0})
    gs = ground(b)
    arm(gs, b)
    gs.fly(z=700)
    time.sleep(0.3)
    gs.silence()
    assert wait_for(lambda: b.status()["mode"] == "failsafe")
    gs.fly(z=700)  # back, throttle still high: failsafe holds
    warn = gs.recv("STATUSTEXT", cond=lambda m: "lower the throttle" in m.text)
    assert warn is not None
    time.sleep(0.3)
    assert b.status()["mode"] == "failsafe"
    assert b.frames()[-1][2][2] == 1400
    gs.fly(z=0)
    assert wait_for(lambda: b.status()["mode"] == "armed")
    gs.fly(z=500)
    time.sleep(0.3)
    assert b.frames()[-1][2] == (1500, 1500, 1500, 1500)


def test_low_battery_lands_and_keeps_serving(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge(failsafe=QUICK_FAILSAFE, battery={"low_voltage": 10.5, "low_delay_s": 0.5})
    gs = ground(b)
    arm(gs, b)
    gs.fly(x=200, z=800)
    time.sleep(0.3)
    gs.send(gs.conn.mav.param_set_send, 1, 1, b"SIM_BATT_VOLT", 10.1, M.MAV_PARAM_TYPE_REAL32)
    pv = gs.recv("PARAM_VALUE", cond=lambda m: m.param_id == "SIM_BATT_VOLT")
    assert pv.param_value == pytest.approx(10.1)
    t_set = time.monotonic()
    low = gs.recv("STATUSTEXT", cond=lambda m: m.text.startswith("Battery low"))
    assert low is not None and low.severity == M.MAV_SEVERITY_CRITICAL
    assert wait_for(lambda: b.status()["mode"] == "disarmed", timeout=6)
    landed = gs.recv("STATUSTEXT", cond=lambda m: "services keep running" in m.text)
    assert landed is not None
    frames = b.frames()
    landing = [f for f in frames if f[1] == "landing"]
    # Not before the sag timer ran out (0.5 s), and at most a battery poll (0.2 s) after.
    assert 0.5 <= landing[0][0] - t_set <= 0.5 + 0.2 + FRAME + SLACK
    assert all(f[2][2] <= 1800 for f in landing) and landing[-1][2][2] == 1000
    # The pilot kept steering while it landed (x=200 -> elevator 1600).
    assert all(f[2][1] == 1600 for f in landing)
    st = gs.recv("SYS_STATUS", cond=lambda m: m.voltage_battery < 10200)
    assert not st.onboard_control_sensors_health & M.MAV_SYS_STATUS_SENSOR_BATTERY
    # On the ground, serving: arming is refused, the bridge keeps talking.
    gs.command(ARM, 1)
    ack = gs.recv("COMMAND_ACK", cond=lambda m: m.command == ARM)
    assert ack.result == M.MAV_RESULT_DENIED
    assert gs.recv("HEARTBEAT") is not None
    status = b.status()
    assert status["battery"]["low"] and status["battery"]["landed_low_battery"]
    assert b.proc.poll() is None


def test_rc_override_drives_channels_and_bad_values_never_pass(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge()
    gs = ground(b)

    gs.override(1500, 1500, 1000, 1500)
    time.sleep(0.2)
    gs.command(ARM, 1)
    assert gs.recv("COMMAND_ACK", cond=lambda m: m.command == ARM).result == 5
    final = gs.recv("COMMAND_ACK", timeout=4, cond=lambda m: m.command == ARM)
    assert final.result == M.MAV_RESULT_ACCEPTED

    gs.override(1700, 1400, 1600, 1550)
    time.sleep(0.3)
    assert b.frames()[-1][2] == (1700, 1400, 1600, 1550)
    # Malformed roll and yaw (outside 800-2200) are dropped, 2100 throttle is clamped,
    # 65535 leaves pitch as it was.
    gs.override(5000, 65535, 2100, 300)
    time.sleep(0.3)
    assert b.frames()[-1][2] == (1700, 1400, 2000, 1550)
    gs.override(1500, 1500, 1000, 1500)
    time.sleep(0.2)
    # MANUAL_CONTROL far out of range is clamped; a wrong target is ignored.
    for _ in range(5):
        gs.send(gs.conn.mav.manual_control_send, 9, 1000, 1000, 1000, 1000, 0)
        gs.send(gs.conn.mav.manual_control_send, 1, -32768, 30000, -400, 0, 0)
        time.sleep(0.05)
    status = wait_for(lambda: (s := b.status()["mavlink"])["wrong_target"] >= 5 and s)
    assert status["input_dropped"] >= 2 and status["input_clamped"] >= 3
    gs.override(0, 0, 0, 0)  # release: back to MANUAL_CONTROL's values
    time.sleep(0.3)
    frames = b.frames()
    assert frames[-1][2] == (2000, 1000, 1000, 1500)
    for _, _, pulses in frames:
        assert all(1000 <= p <= 2000 for p in pulses)
