"""Fuzz the bridge's MAVLink input: random bytes and mutated valid frames.

Nothing may crash the loop and no pulse may leave the channel endpoints, in
whatever state the random input drives the bridge into (arming, failsafe,
low-battery landing included).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

os.environ.setdefault("MAVLINK20", "1")

from pymavlink.dialects.v20 import ardupilotmega as mavlink

from cloudrone.bench.flightlab import free_udp_port
from cloudrone.flight.backends import SimBackend
from cloudrone.flight.bridge import Bridge
from cloudrone.flight.config import parse_config

pytestmark = pytest.mark.integration

u8 = st.integers(0, 255)
u16 = st.integers(0, 65535)
i16 = st.integers(-32768, 32767)
f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
SYSID = st.sampled_from([0, 1, 1, 1, 2, 255])

MESSAGES = st.one_of(
    st.builds(mavlink.MAVLink_manual_control_message, SYSID, i16, i16, i16, i16, u16),
    st.builds(
        mavlink.MAVLink_rc_channels_override_message,
        SYSID,
        st.sampled_from([0, 1, 7]),
        *[st.one_of(u16, st.sampled_from([0, 800, 1000, 1500, 2000, 2200, 65535]))] * 8,
    ),
    st.builds(
        mavlink.MAVLink_command_long_message,
        SYSID,
        st.sampled_from([0, 1, 5]),
        st.sampled_from([400, 400, 400, 512, 520, 21, 0, 65535]),
        u8,
        st.one_of(st.sampled_from([0.0, 1.0, 2.0]), f32),
        st.one_of(st.just(21196.0), f32),
        f32,
        f32,
        f32,
        f32,
        f32,
    ),
    st.builds(
        mavlink.MAVLink_param_set_message,
        SYSID,
        u8,
        st.sampled_from([b"SIM_BATT_VOLT", b"FS_HOLD_S", b"", b"\xff" * 16]),
        f32,
        u8,
    ),
    st.builds(mavlink.MAVLink_param_request_read_message, SYSID, u8, st.binary(max_size=16), i16),
    st.builds(mavlink.MAVLink_param_request_list_message, SYSID, u8),
    st.builds(mavlink.MAVLink_mission_request_list_message, SYSID, u8, u8),
    st.builds(mavlink.MAVLink_heartbeat_message, u8, u8, u8, st.integers(0, 2**32 - 1), u8, u8),
)


def pack(msg: Any, v1: bool, src: int) -> bytes:
    mav = mavlink.MAVLink(None, srcSystem=src, srcComponent=190)
    if v1:
        mav.WIRE_PROTOCOL_VERSION = "1.0"
        return msg.pack(mav, force_mavlink1=True)
    return msg.pack(mav)


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "valid", "mutated", "truncated", "many"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=600))
    frames = [
        pack(draw(MESSAGES), draw(st.booleans()), draw(u8))
        for _ in range(draw(st.integers(1, 6 if kind == "many" else 1)))
    ]
    data = bytearray(b"".join(frames))
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(u8)
    elif kind == "truncated":
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


ARM_FRAMES = pack(mavlink.MAVLink_manual_control_message(1, 0, 0, 0, 0, 0), False, 255) + pack(
    mavlink.MAVLink_command_long_message(1, 1, 400, 0, 1, 0, 0, 0, 0, 0, 0), False, 255
)


def check(bridge: Bridge) -> None:
    pulses = bridge.controller.last
    for axis, value in zip(
        ("aileron", "elevator", "throttle", "rudder"), pulses.as_tuple(), strict=True
    ):
        ch = bridge.config.channels[axis]
        assert isinstance(value, int)
        assert ch.min_us <= value <= ch.max_us, (axis, value)


CONFIG = """
mavlink: {listen: "127.0.0.1:PORT", ground_station: "127.0.0.1:PORT2"}
failsafe: {hold_s: 0.2, ramp_s: 0.1, descent_s: 0.2, idle_s: 0.1}
kk2: {gesture_hold_s: 0.5}
battery: {low_delay_s: 0.1}
channels: {aileron: {min_us: 1100, max_us: 1900, expo: 0.4}, rudder: {reversed: true}}
status_file: null
realtime: {fifo_priority: 0, lock_memory: false}
"""


def test_random_and_mutated_frames_in_process() -> None:
    """Straight into the bridge's parser and handlers: many examples, fast."""
    ports = [str(free_udp_port()) for _ in range(2)]
    text = CONFIG.replace("PORT2", ports[1]).replace("PORT", ports[0])
    backend = SimBackend()
    bridge = Bridge(parse_config(text), backend=backend)
    bridge.start()
    clock = [time.monotonic()]
    try:

        @settings(
            max_examples=600,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(data=st.lists(datagrams(), min_size=1, max_size=4), frames=st.integers(1, 15))
        @example(data=[ARM_FRAMES], frames=15)
        def run(data: list[bytes], frames: int) -> None:
            # Each example starts on a charged battery: a fuzzed PARAM_SET SIM_BATT_VOLT
            # may drain it, and low battery (rightly) refuses every later arming.
            assert bridge.battery is not None
            bridge.battery.set_voltage(clock[0], 12.4)
            for d in data:
                bridge._datagram(d, ("127.0.0.1", 40000), clock[0])
            for _ in range(frames):
                clock[0] += 0.02
                bridge.step(clock[0])
                check(bridge)

        run()
    finally:
        bridge.close()
    assert bridge.counters["bad_frames"] > 0  # the fuzzer did reach the rejection paths
    assert bridge.counters["messages"] > 0  # ... and the handlers
    assert bridge.counters["handler_errors"] == 0
    modes = {f[1] for f in backend.frames}
    assert "arming" in modes, modes  # random input got as far as the gesture
    for _, _, values in backend.frames:
        assert min(values) >= 1000 and max(values) <= 2000


def test_random_and_mutated_frames_over_udp(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    """The real process on a real socket keeps flying through a hostile stream."""
    b = bridge(failsafe={"hold_s": 0.3, "ramp_s": 0.1, "descent_s": 0.3, "idle_s": 0.1})
    gs = ground(b)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
        @given(data=datagrams())
        def run(data: bytes) -> None:
            sock.sendto(data, ("127.0.0.1", b.port))
            time.sleep(0.002)  # paces the sender

        run()
    finally:
        sock.close()
    sent_all = time.monotonic()
    assert b.proc.poll() is None, b.log()
    assert gs.recv("HEARTBEAT", timeout=5) is not None
    # A status written after the last datagram (the bridge writes one a second).
    status = b.wait_status(lambda s: s if s["time"] > sent_all else None)
    assert status["mavlink"]["bad_frames"] > 0
    assert status["mavlink"]["handler_errors"] == 0
    frames = b.frames()
    assert frames, "no frames recorded"
    for _, _, values in frames:
        assert min(values) >= 1000 and max(values) <= 2000
    assert "Traceback" not in b.log()
