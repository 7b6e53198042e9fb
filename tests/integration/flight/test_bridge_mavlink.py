"""Fly the bridge process with a pymavlink ground station over loopback UDP.

Assertions are on the pulses the sim backend recorded (values and times), the
ACKs, status texts and telemetry the ground station received.

Every wait is on a condition with a deadline: the bridge and the test run as
ordinary (non real-time) processes, so how late something happens depends on
the machine's load. What cannot depend on it is kept: nothing happens *before*
its time (a failsafe before the hold, a landing before the battery timer). The
upper bounds (hold + one 20 ms frame, the gesture's length, the battery poll,
HEARTBEAT at 1 Hz) are checked exactly on a fake clock in
tests/unit/flight/test_control.py and test_bridge_schedule.py.
"""

from __future__ import annotations

import time

import pytest
from pymavlink import mavutil

from cloudrone.bench.flightlab import BridgeProcess

pytestmark = pytest.mark.integration

M = mavutil.mavlink
ARM = M.MAV_CMD_COMPONENT_ARM_DISARM
FRAME = 0.02
QUICK_FAILSAFE = {"ramp_s": 0.3, "descent_s": 0.8, "idle_s": 0.3}
CENTRED = (1500, 1500, 1000, 1500)  # sticks centred, throttle at zero


def every_deadline_accounted(b: BridgeProcess) -> None:
    """Pulses never stopped: each 20 ms deadline up to the last status either
    wrote a frame or was counted as missed by the loop (a late wake-up)."""
    status = b.status()
    loop = status["loop"]
    frames = [f for f in b.frames() if f[0] <= status["time"] + 0.001]
    assert len(frames) == loop["frames"], (len(frames), loop)
    span = frames[-1][0] - frames[0][0]
    assert loop["frames"] + loop["missed_frames"] == pytest.approx(span / FRAME + 1, abs=1.5)


def arm(gs, b) -> None:  # type: ignore[no-untyped-def]
    gs.fly(z=0)
    b.wait_status(lambda s: s["pilot_link"], what="the pilot's stream")
    gs.command(ARM, 1)
    first = gs.recv("COMMAND_ACK", cond=lambda m: m.command == ARM)
    assert first.result == M.MAV_RESULT_IN_PROGRESS
    final = gs.recv("COMMAND_ACK", timeout=4, cond=lambda m: m.command == ARM)
    assert final is not None and final.result == M.MAV_RESULT_ACCEPTED
    b.wait_mode("armed")


def test_heartbeat_telemetry_and_parameters(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge()
    gs = ground(b)
    hbs = []
    while len(hbs) < 3:  # at 1 Hz (on a fake clock in test_bridge_schedule.py)
        hb = gs.recv("HEARTBEAT", timeout=5)
        assert hb is not None
        hbs.append(hb)
    hb = hbs[-1]
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
    # Pulses flow while disarmed too, every 20 ms, throttle at zero, sticks centred.
    assert {f[2] for f in b.frames()} == {CENTRED}
    every_deadline_accounted(b)


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

    # x=500 pitch forward, y=-500 roll left, z=600 -> 1600, r=200 -> 1600
    gs.fly(x=500, y=-500, z=600, r=200)
    b.wait_frame("armed", (1250, 1750, 1600, 1600))
    gs.fly(z=0)
    b.wait_frame("armed", CENTRED)
    gs.command(ARM, 0)
    assert gs.recv("COMMAND_ACK", cond=lambda m: m.command == ARM).result == 5
    done = gs.recv("COMMAND_ACK", timeout=4, cond=lambda m: m.command == ARM)
    assert done.result == M.MAV_RESULT_ACCEPTED
    b.wait_frame("disarmed", CENTRED)

    frames = b.frames()
    start = next(i for i, f in enumerate(frames) if f[1] == "arming")
    end = next(i for i, f in enumerate(frames) if i > start and f[1] != "arming")
    assert {f[2] for f in frames[start:end]} == {(1500, 1500, 1000, 2000)}
    held = frames[end][0] - frames[start][0]  # until the first frame after the gesture
    assert held >= 1.2  # never shorter; its exact length: test_control.py
    disarm = [f for f in frames if f[1] == "disarming"]
    assert {f[2] for f in disarm} == {(1500, 1500, 1000, 1000)}
    assert frames[-1][1:] == ("disarmed", CENTRED)
    assert gs.recv("STATUSTEXT", cond=lambda m: m.text == "Disarmed") is not None
    texts = [m.text for m in gs.messages if m.get_type() == "STATUSTEXT"]
    assert "Armed" in texts


def test_silence_starts_failsafe_within_hold_plus_one_frame(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge(failsafe=QUICK_FAILSAFE)
    gs = ground(b)
    arm(gs, b)
    gs.fly(y=300, z=700, r=-100)
    b.wait_frame("armed", (1650, 1500, 1700, 1450))
    last_sent = gs.silence()
    text = gs.recv("STATUSTEXT", timeout=10, cond=lambda m: m.text.startswith("Failsafe"))
    assert text is not None and text.severity == M.MAV_SEVERITY_CRITICAL
    b.wait_mode("disarmed", timeout=20)
    frames = b.frames()
    first = next(i for i, f in enumerate(frames) if f[1] == "failsafe")
    t_fs = frames[first][0]
    # Never before the hold (a message cannot arrive before it is sent); at most
    # hold + one frame after the last message: test_control.py, on a fake clock.
    assert t_fs - last_sent > 0.5
    assert frames[first - 1][2] == (1650, 1500, 1700, 1450)  # pilot's sticks up to then
    fs = [f for f in frames if f[1] == "failsafe"]
    assert all(f[2][0] == 1500 and f[2][1] == 1500 and f[2][3] == 1500 for f in fs)
    throttle = [f[2][2] for f in fs]
    assert throttle == sorted(throttle, reverse=True) and throttle[0] <= 1700
    assert 1400 in throttle and throttle[-1] == 1000
    assert any(f[1] == "disarming" for f in frames)
    every_deadline_accounted(b)  # pulses never stopped through the failsafe
    assert b.status()["failsafes"] == 1


def test_control_returns_only_when_throttle_is_low(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge(failsafe={"ramp_s": 0.5, "descent_s": 20.0, "idle_s": 1.0})
    gs = ground(b)
    arm(gs, b)
    gs.fly(z=700)
    b.wait_frame("armed", (1500, 1500, 1700, 1500))
    gs.silence()
    b.wait_mode("failsafe")
    gs.fly(z=700)  # back, throttle still high: failsafe holds
    warn = gs.recv("STATUSTEXT", timeout=10, cond=lambda m: "lower the throttle" in m.text)
    assert warn is not None
    b.wait_frame("failsafe", (1500, 1500, 1400, 1500))  # descending all the same
    heard = b.status()["mavlink"]["manual_control"]
    status = b.wait_status(
        lambda s: s if s["mavlink"]["manual_control"] >= heard + 10 else None,
        what="ten more high-throttle messages read",
    )
    assert status["mode"] == "failsafe" and status["pulses_us"]["throttle"] == 1400
    gs.fly(z=0)
    b.wait_mode("armed")
    gs.fly(z=500)
    b.wait_frame("armed", (1500, 1500, 1500, 1500))


def test_low_battery_lands_and_keeps_serving(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge(failsafe=QUICK_FAILSAFE, battery={"low_voltage": 10.5, "low_delay_s": 0.5})
    gs = ground(b)
    arm(gs, b)
    gs.fly(x=200, z=800)
    b.wait_frame("armed", (1500, 1600, 1800, 1500))
    t_sent = time.monotonic()  # before the bridge can have read it
    gs.send(gs.conn.mav.param_set_send, 1, 1, b"SIM_BATT_VOLT", 10.1, M.MAV_PARAM_TYPE_REAL32)
    pv = gs.recv("PARAM_VALUE", cond=lambda m: m.param_id == "SIM_BATT_VOLT")
    assert pv.param_value == pytest.approx(10.1)
    low = gs.recv("STATUSTEXT", timeout=10, cond=lambda m: m.text.startswith("Battery low"))
    assert low is not None and low.severity == M.MAV_SEVERITY_CRITICAL
    b.wait_mode("disarmed", timeout=20)
    landed = gs.recv("STATUSTEXT", cond=lambda m: "services keep running" in m.text)
    assert landed is not None
    frames = b.frames()
    landing = [f for f in frames if f[1] == "landing"]
    # Not before the sag timer ran out (0.5 s); how soon after: test_bridge_schedule.py.
    assert landing[0][0] - t_sent >= 0.5
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
    b.wait_status(lambda s: s["pilot_link"], what="the pilot's overrides")
    gs.command(ARM, 1)
    assert gs.recv("COMMAND_ACK", cond=lambda m: m.command == ARM).result == 5
    final = gs.recv("COMMAND_ACK", timeout=4, cond=lambda m: m.command == ARM)
    assert final.result == M.MAV_RESULT_ACCEPTED

    gs.override(1700, 1400, 1600, 1550)
    b.wait_frame("armed", (1700, 1400, 1600, 1550))
    # Malformed roll and yaw (outside 800-2200) are dropped, 2100 throttle is clamped,
    # 65535 leaves pitch as it was.
    gs.override(5000, 65535, 2100, 300)
    b.wait_frame("armed", (1700, 1400, 2000, 1550))
    gs.override(1500, 1500, 1000, 1500)
    b.wait_frame("armed", CENTRED)
    # MANUAL_CONTROL far out of range is clamped; a wrong target is ignored.
    for _ in range(5):
        gs.send(gs.conn.mav.manual_control_send, 9, 1000, 1000, 1000, 1000, 0)
        gs.send(gs.conn.mav.manual_control_send, 1, -32768, 30000, -400, 0, 0)
        time.sleep(0.05)  # paces the sender
    status = b.wait_status(lambda s: (m := s["mavlink"])["wrong_target"] >= 5 and m)
    assert status["input_dropped"] >= 2 and status["input_clamped"] >= 3
    gs.override(0, 0, 0, 0)  # release: back to MANUAL_CONTROL's values
    b.wait_frame("armed", (2000, 1000, 1000, 1500))
    frames = b.frames()
    for _, _, pulses in frames:
        assert all(1000 <= p <= 2000 for p in pulses)
