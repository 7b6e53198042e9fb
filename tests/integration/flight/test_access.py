"""Who may fly: only the ground stations, and with signing only those holding the key.

A stranger is another source address on loopback (127.0.0.2, which Linux
routes to lo like all of 127.0.0.0/8), sending the same frames a pilot would.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pymavlink.dialects.v20 import ardupilotmega as mavlink

from cloudrone.bench.flightlab import wait_until

pytestmark = pytest.mark.integration

ARM = mavlink.MAV_CMD_COMPONENT_ARM_DISARM
KEY = bytes(range(32))
WRONG_KEY = bytes(range(1, 33))


class Sender:
    """A raw MAVLink sender from a given loopback address, signed or not."""

    def __init__(
        self, address: str, key: bytes | None = None, system: int = 254, ahead_s: float = 0.0
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(0.05)
        self.mav = mavlink.MAVLink(None, srcSystem=system, srcComponent=190)
        if key is not None:
            self.mav.signing.secret_key = key
            self.mav.signing.sign_outgoing = True
            # a signing timestamp counts 10 us steps since 2015-01-01
            self.mav.signing.timestamp = int((time.time() + ahead_s - 1420070400) * 100_000)

    def send(self, port: int, *msgs: Any) -> None:
        for msg in msgs:
            self.sock.sendto(msg.pack(self.mav), ("127.0.0.1", port))

    def pilot(self, port: int, throttle: int = 0) -> None:
        self.send(port, mavlink.MAVLink_manual_control_message(1, 0, 0, throttle, 0, 0))

    def arm(self, port: int) -> None:
        self.send(port, mavlink.MAVLink_command_long_message(1, 1, ARM, 0, 1, 0, 0, 0, 0, 0, 0))

    def heard(self) -> int:
        """Datagrams the bridge sent back to this sender."""
        n = 0
        while True:
            try:
                self.sock.recv(65535)
                n += 1
            except TimeoutError:
                return n

    def close(self) -> None:
        self.sock.close()


def key_file(tmp_path: Path, key: bytes = KEY, mode: int = 0o600) -> Path:
    path = tmp_path / "flight-signing.key"
    path.write_text(key.hex() + "\n")
    path.chmod(mode)
    return path


def stream_until(send: Any, condition: Any, timeout: float = 10.0, what: str = "") -> Any:
    def step() -> Any:
        send()
        return condition()

    return wait_until(step, timeout, what)


def refused_until(b: Any, sender: Sender, counter: str, what: str) -> None:
    """``sender`` streams sticks and asks to arm until ``counter`` has refused 20 frames."""
    stream_until(
        lambda: (sender.pilot(b.port), sender.arm(b.port)),
        lambda: b.status()["mavlink"][counter] >= 20,
        what=what,
    )


def test_a_second_sender_is_refused_while_the_ground_station_flies(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    b = bridge()  # ground station 127.0.0.1: the only one allowed by default
    stranger = Sender("127.0.0.2")
    try:
        # The stranger streams sticks and asks to arm: refused, counted, never answered.
        refused_until(b, stranger, "rejected_sender", "stranger's frames counted")
        s = b.status()
        assert s["mode"] == "disarmed" and s["pilot_link"] is False
        assert s["mavlink"]["manual_control"] == 0 and s["mavlink"]["commands"] == 0
        assert s["mavlink"]["rejected_frames"] >= s["mavlink"]["rejected_sender"]
        assert "127.0.0.2" not in " ".join(s["mavlink"]["peers"])
        assert s["mavlink"]["allowed_senders"] == ["127.0.0.1/32"]
        assert stranger.heard() == 0  # no telemetry, no ACK
        assert "127.0.0.2" in b.log() and "not a ground station" in b.log()

        # The configured station is accepted: it arms and flies.
        gs = ground(b)
        gs.fly(z=0)
        wait_until(lambda: b.status()["pilot_link"], what="pilot link")
        gs.command(ARM, 1)
        ack = gs.recv("COMMAND_ACK", timeout=5, cond=lambda m: m.command == ARM and m.result == 0)
        assert ack is not None
        gs.fly(z=500)
        b.wait_frame("armed", (1500, 1500, 1500, 1500))
        # The stranger's full throttle never reaches the pulses.
        before = b.status()["mavlink"]["rejected_sender"]
        stream_until(
            lambda: stranger.pilot(b.port, throttle=1000),
            lambda: b.status()["mavlink"]["rejected_sender"] >= before + 10,
        )
        assert b.last_frame()[2] == (1500, 1500, 1500, 1500)
        assert all(f[2][2] <= 1500 for f in b.frames())
    finally:
        stranger.close()


def test_allowed_senders_lets_a_second_station_fly(bridge) -> None:  # type: ignore[no-untyped-def]
    b = bridge(mavlink={"allowed_senders": ["127.0.0.1", "127.0.0.2"]})
    second = Sender("127.0.0.2")
    try:
        stream_until(lambda: second.pilot(b.port), lambda: b.status()["pilot_link"])
        second.arm(b.port)
        stream_until(lambda: second.pilot(b.port), lambda: b.status()["mode"] == "armed")
        assert second.heard() > 0  # a station that speaks gets the telemetry
        assert b.status()["mavlink"]["rejected_sender"] == 0
    finally:
        second.close()


def test_signed_link_flies_unsigned_and_wrongly_signed_frames_are_refused(
    bridge, ground, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    b = bridge(mavlink={"signing_key_file": str(key_file(tmp_path))})
    assert b.status()["mavlink"]["signing"] is True
    unsigned = Sender("127.0.0.1")
    forger = Sender("127.0.0.1", key=WRONG_KEY)
    try:
        refused_until(b, unsigned, "rejected_unsigned", "unsigned frames refused")
        refused_until(b, forger, "rejected_bad_signature", "wrongly signed frames refused")
        s = b.status()
        assert s["mode"] == "disarmed" and s["pilot_link"] is False
        assert s["mavlink"]["manual_control"] == 0 and s["mavlink"]["commands"] == 0

        # A station with the mission's key: its frames are taken, the bridge's are signed.
        gs = ground(b, signing_key=KEY)
        hb = gs.recv("HEARTBEAT")
        assert hb is not None and hb._signed
        gs.fly(z=0)
        wait_until(lambda: b.status()["pilot_link"], what="pilot link")
        gs.command(ARM, 1)
        ack = gs.recv("COMMAND_ACK", timeout=5, cond=lambda m: m.command == ARM and m.result == 0)
        assert ack is not None and ack._signed
        b.wait_frame("armed")
    finally:
        unsigned.close()
        forger.close()


def test_missing_sensors_never_stop_the_bridge(bridge, ground) -> None:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        gpsd_port = s.getsockname()[1]  # nobody listens here once closed
    b = bridge(
        battery={"source": "ina219", "ina219": {"bus": 97}},
        gps={"source": "gpsd", "gpsd": f"127.0.0.1:{gpsd_port}"},
    )
    status = b.wait_status(lambda s: s.get("running") and s)
    sensors = status["sensors"]
    assert sensors["battery"]["ok"] is False and "/dev/i2c-97" in sensors["battery"]["error"]
    assert sensors["gps"]["ok"] is False and "gpsd" in sensors["gps"]["error"]
    assert any(w.startswith("BATTERY MISSING") for w in status["warnings"])
    assert any(w.startswith("GPS MISSING") for w in status["warnings"])

    gs = ground(b)
    text = gs.recv("STATUSTEXT", cond=lambda m: m.text.startswith("BATTERY MISSING"))
    assert text is not None and text.severity == mavlink.MAV_SEVERITY_WARNING
    st = gs.recv("SYS_STATUS")
    for sensor in (mavlink.MAV_SYS_STATUS_SENSOR_BATTERY, mavlink.MAV_SYS_STATUS_SENSOR_GPS):
        assert st.onboard_control_sensors_present & sensor  # configured...
        assert not st.onboard_control_sensors_health & sensor  # ...and not working
    assert st.voltage_battery == 0xFFFF and st.battery_remaining == -1  # "not known"
    gps = gs.recv("GPS_RAW_INT")
    assert gps.fix_type == mavlink.GPS_FIX_TYPE_NO_GPS

    # ...and it flies.
    gs.fly(z=0)
    wait_until(lambda: b.status()["pilot_link"])
    gs.command(ARM, 1)
    assert gs.recv("COMMAND_ACK", timeout=5, cond=lambda m: m.command == ARM and m.result == 0)
    b.wait_frame("armed")
    assert b.proc.poll() is None


DAY_S = 86_400.0


def test_a_forged_frame_from_the_future_locks_no_pilot_out(bridge, ground, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """pymavlink alone records a stream's timestamp before it checks the signature: one
    forged frame a day ahead, on the pilot's own stream (system 255, component 190,
    link 0), made every genuine frame after it "old" and started the failsafe."""
    b = bridge(mavlink={"signing_key_file": str(key_file(tmp_path))})
    forger = Sender("127.0.0.1", key=WRONG_KEY, system=255, ahead_s=DAY_S)
    try:
        refused_until(b, forger, "rejected_bad_signature", "the forger's frames refused")
        assert b.status()["mavlink"]["rejected_replay"] == 0
        gs = ground(b, signing_key=KEY)
        gs.fly(z=0)
        wait_until(lambda: b.status()["pilot_link"], what="the pilot's signed sticks taken")
        gs.command(ARM, 1)
        ack = gs.recv("COMMAND_ACK", timeout=5, cond=lambda m: m.command == ARM and m.result == 0)
        assert ack is not None and ack._signed
        b.wait_frame("armed")
        # the forger keeps at it while the pilot flies: nothing of it counts
        before = b.status()["mavlink"]["manual_control"]
        refused_until(b, forger, "rejected_bad_signature", "still refused")
        force_disarm = mavlink.MAVLink_command_long_message(1, 1, ARM, 0, 0, 21196, 0, 0, 0, 0, 0)
        forger.send(b.port, force_disarm)
        wait_until(
            lambda: b.status()["mavlink"]["manual_control"] > before + 20,
            what="the pilot's sticks still taken",
        )
        s = b.status()
        assert s["mode"] == "armed" and s["pilot_link"] is True
        assert s["mavlink"]["rejected_replay"] == 0
    finally:
        forger.close()


def test_a_signed_frame_too_far_ahead_is_refused_and_its_sender_told(
    bridge, ground, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A key holder whose clock runs a day ahead would push the drone's counter a day
    forward, and every station keeping time would then be "old": refused, counted, told."""
    b = bridge(mavlink={"signing_key_file": str(key_file(tmp_path)), "signing_max_ahead_s": 30})
    gs = ground(b, signing_key=KEY)
    gs.fly(z=0)
    wait_until(lambda: b.status()["pilot_link"], what="pilot link")
    ahead = Sender("127.0.0.1", key=KEY, system=255, ahead_s=DAY_S)  # the pilot's own stream
    try:
        refused_until(b, ahead, "rejected_ahead", "frames a day ahead refused")
        s = b.status()
        assert s["mavlink"]["rejected_bad_signature"] == 0
        assert s["mavlink"]["commands"] == 0  # its arm requests never reached the controller
        assert s["mode"] == "disarmed"
        # the genuine pilot still flies: its frames are not "old"
        gs.command(ARM, 1)
        ack = gs.recv("COMMAND_ACK", timeout=5, cond=lambda m: m.command == ARM and m.result == 0)
        assert ack is not None
        b.wait_frame("armed")
        assert b.status()["mavlink"]["rejected_replay"] == 0
        # the sender holds the key, so it is told why (in a signed STATUSTEXT)
        assert ahead.heard() > 0
        assert "ahead of this drone's" in b.log()
    finally:
        ahead.close()
