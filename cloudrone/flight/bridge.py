"""The flight bridge: a MAVLink vehicle on UDP that drives the KK2 like an RC receiver.

One thread, one 50 Hz loop on absolute deadlines. Each frame it reads what the
ground stations sent (bounded, so a flood cannot stall it), advances the state
machine, writes the four pulses, then sends what is due: HEARTBEAT, SYS_STATUS,
ATTITUDE, GPS, command ACKs and status texts. The same loop pings systemd's
watchdog, so a stalled loop gets the service restarted.

Run: ``cloudrone-flight-bridge [--config /etc/cloudrone/flight.yml]``;
``--check CONFIG`` validates a file and changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mavlink

from cloudrone.flight.backends import Backend, BackendError, SimBackend, open_backend
from cloudrone.flight.config import DEFAULT_CONFIG_PATH, ConfigError, FlightConfig, load_config
from cloudrone.flight.control import ARMED_MODES, Controller, Event, Mode, Result, Severity
from cloudrone.flight.mapping import PilotInput
from cloudrone.flight.rt import (
    LoopStats,
    RealtimeReport,
    grant_rt_budget,
    setup_realtime,
    sleep_until,
)
from cloudrone.flight.signing import VerifyingMAVLink, sign_with
from cloudrone.flight.telemetry import (
    Fix,
    SimAttitude,
    SimBattery,
    open_battery,
    open_gps,
    remaining_percent,
)
from cloudrone.sdnotify import Notifier

log = logging.getLogger("cloudrone.flight")

COMPONENT_ID = 1
MAX_DATAGRAMS_PER_FRAME = 64  # a flood is read at most this much per frame
MAX_PEERS = 8
PEER_TIMEOUT_S = 5.0
FORCE_MAGIC = 21196  # MAV_CMD_COMPONENT_ARM_DISARM param2: force
SENSOR_GPS = mavlink.MAV_SYS_STATUS_SENSOR_GPS
SENSOR_AHRS = mavlink.MAV_SYS_STATUS_AHRS
SENSOR_RC = mavlink.MAV_SYS_STATUS_SENSOR_RC_RECEIVER
SENSOR_BATTERY = mavlink.MAV_SYS_STATUS_SENSOR_BATTERY
SENSOR_PREARM = mavlink.MAV_SYS_STATUS_PREARM_CHECK
SENSOR_RETRY_S = 5.0  # a missing sensor is looked for again this often
MAX_STRANGERS_LOGGED = 64
# Messages that change what the drone does: only the ground stations may send them.
CONTROL_MESSAGES = frozenset(
    {"MANUAL_CONTROL", "RC_CHANNELS_OVERRIDE", "COMMAND_LONG", "COMMAND_INT", "PARAM_SET"}
)
# Messages a station may ask for with MAV_CMD_REQUEST_MESSAGE.
REQUESTABLE = {
    mavlink.MAVLINK_MSG_ID_AUTOPILOT_VERSION: "autopilot_version",
    mavlink.MAVLINK_MSG_ID_HOME_POSITION: "home_position",
    mavlink.MAVLINK_MSG_ID_EXTENDED_SYS_STATE: "extended_sys_state",
    mavlink.MAVLINK_MSG_ID_SYS_STATUS: "sys_status",
    mavlink.MAVLINK_MSG_ID_BATTERY_STATUS: "battery_status",
    mavlink.MAVLINK_MSG_ID_HEARTBEAT: "heartbeat",
}
VERSION = (0, 1, 0)
# A signed frame refused, by why (cloudrone.flight.signing), and the counter it goes to.
SIGNED_REFUSAL_COUNTERS = {
    "bad_signature": "rejected_bad_signature",
    "replay": "rejected_replay",
    "stale": "rejected_replay",
    "ahead": "rejected_ahead",
}
# A key holder whose clock runs ahead is told why at most this often.
AHEAD_TELL_EVERY_S = 5.0


class StartError(RuntimeError):
    """The bridge cannot start (port taken, backend missing); the message says why."""


class _Param:
    def __init__(self, name: str, value: float, settable: bool = False) -> None:
        self.name = name
        self.value = value
        self.settable = settable


class Bridge:
    def __init__(self, config: FlightConfig, backend: Backend | None = None) -> None:
        self.config = config
        self.sysid = config.mavlink.system_id
        self.backend = backend or open_backend(config)
        self.controller = Controller(config)
        self.pilot = PilotInput()
        self.period_s = 1.0 / config.rate_hz
        self.stats = LoopStats(self.period_s)
        self.notifier = Notifier()
        self.realtime = RealtimeReport()
        self.sock: socket.socket | None = None
        self.ground_station = config.mavlink.ground_station
        self.peers: dict[tuple[str, int], float] = {}
        self.parsers: dict[tuple[str, int], Any] = {}
        self.mav = mavlink.MAVLink(None, srcSystem=self.sysid, srcComponent=COMPONENT_ID)
        self.counters: dict[str, int] = {
            "datagrams": 0,
            "messages": 0,
            "bad_frames": 0,
            "rejected_frames": 0,
            "rejected_sender": 0,
            "rejected_unsigned": 0,
            "rejected_bad_signature": 0,
            "rejected_replay": 0,
            "rejected_ahead": 0,
            "wrong_target": 0,
            "handler_errors": 0,
            "manual_control": 0,
            "rc_override": 0,
            "commands": 0,
            "sent": 0,
            "send_errors": 0,
        }
        self.start_time = time.monotonic()
        self.battery = open_battery(config, self.start_time)
        self.gps = open_gps(config)
        self.attitude = SimAttitude() if config.attitude_source == "sim" else None
        self.battery_reading: Any = None
        self.fix: Any = None
        self.pending_acks: dict[str, tuple[int, int]] = {}
        self.text_id = 0
        self._stop = False
        self._due: dict[str, float] = {}
        self.busy_s = 0.0
        self.params = self._make_params()
        self.warnings: list[str] = []
        self.senders = config.mavlink.senders
        self.strangers: set[str] = set()
        self._ahead_told: dict[tuple[str, int], float] = {}
        self.signing: Any = None
        if config.mavlink.signing_key is not None:
            self._setup_signing(config.mavlink.signing_key, config.mavlink.signing_link_id)
        # Optional sensors: None when working, else why not (the bridge flies without them).
        self.sensor_errors: dict[str, str | None] = {}
        self.home: Any = None  # the first position fix: HOME_POSITION, relative altitude

    # ------------------------------------------------------------------ setup
    def _setup_signing(self, key: bytes, link_id: int) -> None:
        """MAVLink 2 signing: our frames signed, unsigned and badly signed ones refused.

        One signing state for the sender and every station's parser, so a
        timestamp seen once is never accepted again (no replay), whichever
        address it comes from.
        """
        self.signing = sign_with(self.mav, key, link_id)

    def _allowed(self, host: str) -> bool:
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return any(address in net for net in self.senders)

    def _make_params(self) -> list[_Param]:
        c = self.config
        params = [
            _Param("SYSID_THISMAV", float(self.sysid)),
            _Param("FS_HOLD_S", c.failsafe.hold_s),
            _Param("FS_DESCENT_US", float(c.failsafe.descent_us)),
            _Param("BATT_LOW_VOLT", c.battery.low_voltage),
            _Param("BATT_LOW_TIMER", c.battery.low_delay_s),
            _Param("KK2_THR_ZERO_US", float(c.kk2.throttle_zero_us)),
            _Param("LOOP_RATE_HZ", c.rate_hz),
        ]
        if isinstance(self.battery, SimBattery):
            params.append(_Param("SIM_BATT_VOLT", self.battery.voltage, settable=True))
        return params

    def start(self) -> None:
        """Open everything; raise StartError with the fix on any failure."""
        try:
            self.backend.start()
        except BackendError as exc:
            raise StartError(str(exc)) from None
        # Sensors are optional: without them the bridge flies and says what is missing.
        for name, source in (("battery", self.battery), ("gps", self.gps)):
            if source is not None:
                self._start_sensor(name, source, time.monotonic())
        host, port = self.config.mavlink.listen
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            hint = "another program holds it" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise StartError(
                f"cannot listen for MAVLink on {host}:{port} ({hint}); "
                "change mavlink.listen or stop the other program"
            ) from None
        sock.setblocking(False)
        self.sock = sock
        rt = self.config.realtime
        self.realtime = setup_realtime(rt.fifo_priority, rt.lock_memory, rt.cpu_core)
        if not self.realtime.fifo and rt.fifo_priority == 0:
            self.warnings.append("real-time scheduling off (realtime.fifo_priority: 0)")
            log.warning(self.warnings[-1])
        elif not self.realtime.fifo:
            msg = (
                f"REAL-TIME SCHEDULING REFUSED: SCHED_FIFO not granted "
                f"({self.realtime.fifo_error}); the 50 Hz pulse loop runs at normal "
                "priority and may miss frames under load"
            )
            self.warnings.append(msg)
            log.warning("*" * 72)
            log.warning(msg)
            log.warning("*" * 72)
        if rt.lock_memory and not self.realtime.memory_locked:
            msg = f"memory not locked ({self.realtime.memory_error}); page faults may delay frames"
            self.warnings.append(msg)
            log.warning(msg)
        if self.realtime.affinity_error:
            self.warnings.append(f"CPU affinity refused: {self.realtime.affinity_error}")
            log.warning(self.warnings[-1])
        log.info(
            "flight bridge up: system %d, MAVLink on %s:%d, ground station %s:%d, backend %s, "
            "%.0f Hz, FIFO %s",
            self.sysid,
            host,
            port,
            *self.ground_station,
            self.backend.name,
            self.config.rate_hz,
            f"priority {self.realtime.fifo_priority}" if self.realtime.fifo else "REFUSED",
        )
        self.notifier.send("READY=1")

    def _start_sensor(self, name: str, source: Any, now: float) -> None:
        before = self.sensor_errors.get(name, "")
        try:
            source.start()
        except BackendError as exc:
            error = str(exc)
        else:
            error = None
        self.sensor_errors[name] = error
        self._due[f"retry_{name}"] = now + SENSOR_RETRY_S
        if error is None and before:
            self._drop_warnings(name)
            log.info("%s found: %s", name, source.name)
            if self.sock is not None:
                self._text(mavlink.MAV_SEVERITY_NOTICE, f"{name.capitalize()} sensor back", now)
        elif error is not None and before is not None and before != error:
            what = {
                "battery": "no battery voltage: low-battery landing is OFF",
                "gps": "no position",
            }[name]
            self._drop_warnings(name)
            self.warnings.append(f"{name.upper()} MISSING, flying without it ({what}): {error}")
            log.warning(self.warnings[-1])
            if self.sock is not None:
                self._text(mavlink.MAV_SEVERITY_WARNING, self.warnings[-1], now)

    def _drop_warnings(self, name: str) -> None:
        self.warnings = [w for w in self.warnings if not w.startswith(f"{name.upper()} ")]

    # ------------------------------------------------------------------ output
    def _targets(self, now: float) -> list[tuple[str, int]]:
        targets = [self.ground_station]
        for addr, heard in list(self.peers.items()):
            if now - heard > PEER_TIMEOUT_S:
                del self.peers[addr]
                self.parsers.pop(addr, None)
            elif addr != self.ground_station:
                targets.append(addr)
        return targets

    def _send(self, msg: Any, now: float, to: tuple[str, int] | None = None) -> None:
        assert self.sock is not None
        data = msg.pack(self.mav)
        self.mav.seq = (self.mav.seq + 1) % 256
        for addr in [to] if to else self._targets(now):
            try:
                self.sock.sendto(data, addr)
                self.counters["sent"] += 1
            except OSError:
                self.counters["send_errors"] += 1

    def _text(
        self, severity: int, text: str, now: float, to: tuple[str, int] | None = None
    ) -> None:
        """STATUSTEXT, split into 50-byte chunks sharing one id (MAVLink 2)."""
        raw = text.encode("utf-8", "replace")
        self.text_id = self.text_id % 65535 + 1
        chunks = [raw[i : i + 50] for i in range(0, len(raw), 50)] or [b""]
        for seq, chunk in enumerate(chunks):
            msg = mavlink.MAVLink_statustext_message(severity, chunk, self.text_id, seq)
            self._send(msg, now, to)

    def _due_now(self, name: str, now: float, interval: float) -> bool:
        if now >= self._due.get(name, 0.0):
            self._due[name] = now + interval
            return True
        return False

    def _boot_ms(self, now: float) -> int:
        return int((now - self.start_time) * 1000) & 0xFFFFFFFF

    def _heartbeat(self, now: float) -> None:
        c = self.controller
        # No custom mode: ground stations would read it as an ArduPilot flight mode.
        base = mavlink.MAV_MODE_FLAG_MANUAL_INPUT_ENABLED
        if c.mode in ARMED_MODES:
            base |= mavlink.MAV_MODE_FLAG_SAFETY_ARMED
        if c.mode in (Mode.FAILSAFE, Mode.LANDING):
            status = mavlink.MAV_STATE_CRITICAL
        elif c.mode == Mode.DISARMED:
            status = mavlink.MAV_STATE_STANDBY
        else:
            status = mavlink.MAV_STATE_ACTIVE
        msg = mavlink.MAVLink_heartbeat_message(
            mavlink.MAV_TYPE_QUADROTOR,
            mavlink.MAV_AUTOPILOT_GENERIC,
            base,
            0,
            status,
            3,
        )
        self._send(msg, now)

    def armable(self, now: float) -> bool:
        """Would an arm command be taken now (the pre-arm check of SYS_STATUS)."""
        c = self.controller
        return c.mode in (Mode.DISARMED, Mode.ARMED) and not c.battery_low and c.link_alive(now)

    def _sys_status(self, now: float) -> None:
        c = self.controller
        present = SENSOR_RC | SENSOR_PREARM
        health = SENSOR_RC if c.link_alive(now) else 0
        if c.armed or self.armable(now):
            health |= SENSOR_PREARM  # the spec: always healthy when armed
        voltage_mv, current_ca, remaining = 0xFFFF, -1, -1
        r = self.battery_reading
        if self.battery is not None:
            present |= SENSOR_BATTERY  # configured: a missing monitor shows as unhealthy
        if r is not None:
            if not c.battery_low:
                health |= SENSOR_BATTERY
            voltage_mv = min(0xFFFE, round(r.voltage * 1000))
            if r.current_a is not None:
                current_ca = max(-1, min(32767, round(r.current_a * 100)))
            remaining = remaining_percent(r.voltage, self.config.battery.cells)
        if self.gps is not None:
            present |= SENSOR_GPS
            fixed = self.fix is not None and self.fix.fix_type >= 2
            if fixed and not self.sensor_errors.get("gps"):
                health |= SENSOR_GPS
        if self.attitude is not None:
            present |= SENSOR_AHRS
            health |= SENSOR_AHRS
        load = min(1000, round(self.busy_s / self.period_s * 1000))
        errors = self.counters["bad_frames"] + self.pilot.counters.dropped
        msg = mavlink.MAVLink_sys_status_message(
            present,
            present,
            health,
            load,
            voltage_mv,
            current_ca,
            remaining,
            0,
            min(errors, 0xFFFF),
            self.stats.missed & 0xFFFF,
            0,
            0,
            0,
        )
        self._send(msg, now)

    def _battery_status(self, now: float, to: tuple[str, int] | None = None) -> None:
        r = self.battery_reading
        if self.battery is None or r is None:
            return
        mv = round(r.voltage * 1000)
        # No cell voltages: the whole pack in cell 0 (spilling into cell 1 above 65.534 V).
        cells = [min(mv, 0xFFFE)] + [0xFFFF] * 9
        if mv > 0xFFFE:
            cells[1] = mv - 0xFFFE
        current_ca = -1
        if r.current_a is not None:
            current_ca = max(-1, min(32767, round(r.current_a * 100)))
        state = (
            mavlink.MAV_BATTERY_CHARGE_STATE_LOW
            if self.controller.battery_low
            else mavlink.MAV_BATTERY_CHARGE_STATE_OK
        )
        msg = mavlink.MAVLink_battery_status_message(
            0,
            mavlink.MAV_BATTERY_FUNCTION_ALL,
            mavlink.MAV_BATTERY_TYPE_LIPO,
            0x7FFF,  # temperature unknown
            cells,
            current_ca,
            -1,  # consumed mAh unknown
            -1,  # consumed energy unknown
            remaining_percent(r.voltage, self.config.battery.cells),
            0,
            state,
        )
        self._send(msg, now, to)

    def _landed_state(self) -> int:
        c = self.controller
        if c.mode in (Mode.FAILSAFE, Mode.LANDING):
            return mavlink.MAV_LANDED_STATE_LANDING
        if c.mode == Mode.ARMED and c.last.throttle > self.config.kk2.throttle_zero_us:
            return mavlink.MAV_LANDED_STATE_IN_AIR
        return mavlink.MAV_LANDED_STATE_ON_GROUND

    def _extended_sys_state(self, now: float, to: tuple[str, int] | None = None) -> None:
        msg = mavlink.MAVLink_extended_sys_state_message(
            mavlink.MAV_VTOL_STATE_UNDEFINED, self._landed_state()
        )
        self._send(msg, now, to)

    def _home_position(self, now: float, to: tuple[str, int] | None = None) -> bool:
        h = self.home
        if h is None:
            return False
        msg = mavlink.MAVLink_home_position_message(
            round(h.lat * 1e7),
            round(h.lon * 1e7),
            round(h.alt_m * 1000),
            0.0,
            0.0,
            0.0,
            [1.0, 0.0, 0.0, 0.0],
            0.0,
            0.0,
            0.0,
            int(time.time() * 1e6),
        )
        self._send(msg, now, to)
        return True

    def _autopilot_version(self, now: float, to: tuple[str, int] | None = None) -> None:
        caps = (
            mavlink.MAV_PROTOCOL_CAPABILITY_MAVLINK2 | mavlink.MAV_PROTOCOL_CAPABILITY_PARAM_FLOAT
        )
        major, minor, patch = VERSION
        # FIRMWARE_VERSION_TYPE_OFFICIAL (255) in the lowest byte
        sw = (major << 24) | (minor << 16) | (patch << 8) | 255
        version = mavlink.MAVLink_autopilot_version_message(
            caps, sw, 0, 0, 0, [0] * 8, [0] * 8, [0] * 8, 0, 0, self.sysid
        )
        self._send(version, now, to)

    def _attitude(self, now: float) -> None:
        if self.attitude is None:
            return
        a = self.attitude.state
        msg = mavlink.MAVLink_attitude_message(
            self._boot_ms(now), a.roll, a.pitch, a.yaw, a.rollspeed, a.pitchspeed, a.yawspeed
        )
        self._send(msg, now)

    def _gps(self, now: float) -> None:
        if self.gps is None:
            return
        # A gpsd not reached at start is looked for by the retry in step().
        f = Fix(0) if self.sensor_errors.get("gps") else self.gps.read(now)
        self.fix = f
        # GPS_RAW_INT: eph is HDOP x 100 (unitless), h_acc the position error in mm.
        hdop = 0xFFFF if f.hdop is None else min(0xFFFE, round(f.hdop * 100))
        h_acc = 0 if f.eph_m is None else min(0xFFFFFFFF, round(f.eph_m * 1000))
        usec = int(time.time() * 1e6)
        self._send(
            mavlink.MAVLink_gps_raw_int_message(
                usec,
                f.fix_type,
                round(f.lat * 1e7),
                round(f.lon * 1e7),
                round(f.alt_m * 1000),
                hdop,
                0xFFFF,
                min(0xFFFE, round(f.speed_ms * 100)),
                round(f.track_deg * 100) % 36000,
                f.satellites,
                0,
                h_acc,
            ),
            now,
        )
        if f.fix_type >= 2:
            if self.home is None:
                self.home = f
                log.info("home set: %.7f, %.7f, %.1f m", f.lat, f.lon, f.alt_m)
                self._home_position(now)
            heading = 0xFFFF  # cdeg 0..35999, UINT16_MAX unknown
            if self.attitude is not None:
                heading = round(math.degrees(self.attitude.state.yaw % math.tau) * 100) % 36000
            track = math.radians(f.track_deg)
            self._send(
                mavlink.MAVLink_global_position_int_message(
                    self._boot_ms(now),
                    round(f.lat * 1e7),  # degE7
                    round(f.lon * 1e7),
                    round(f.alt_m * 1000),  # mm above mean sea level
                    round((f.alt_m - self.home.alt_m) * 1000),  # mm above home
                    round(f.speed_ms * math.cos(track) * 100),  # cm/s north
                    round(f.speed_ms * math.sin(track) * 100),  # cm/s east
                    0,  # cm/s down: not measured
                    heading,
                ),
                now,
            )

    def _servo_output(self, now: float) -> None:
        p = self.controller.last.as_tuple()
        usec = self._boot_ms(now) * 1000 & 0xFFFFFFFF
        self._send(mavlink.MAVLink_servo_output_raw_message(usec, 0, *p, 0, 0, 0, 0), now)

    def _events(self, events: list[Event], now: float) -> None:
        for e in events:
            if e.ack is not None:
                who = self.pending_acks.pop(e.ack, (0, 0))
                self._ack(mavlink.MAV_CMD_COMPONENT_ARM_DISARM, int(e.result), now, who)
            if e.text:
                log.log(logging.WARNING if e.severity <= Severity.WARNING else logging.INFO, e.text)
                self._text(int(e.severity), e.text, now)

    def _ack(self, command: int, result: int, now: float, who: tuple[int, int]) -> None:
        # To every station: a station that did not send the command ignores an ACK
        # addressed to another (target_system, target_component).
        msg = mavlink.MAVLink_command_ack_message(command, result, 0, 0, who[0], who[1])
        self._send(msg, now)

    # ------------------------------------------------------------------ input
    def _receive(self, now: float) -> None:
        assert self.sock is not None
        for _ in range(MAX_DATAGRAMS_PER_FRAME):
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP port unreachable reported on this socket
            self.counters["datagrams"] += 1
            self._datagram(data, addr, now)

    def _datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if not self._allowed(addr[0]):
            # Not a ground station: nothing it sends is read, nothing goes back to it.
            self.counters["rejected_sender"] += 1
            self.counters["rejected_frames"] += 1
            if addr[0] not in self.strangers and len(self.strangers) < MAX_STRANGERS_LOGGED:
                self.strangers.add(addr[0])
                log.warning(
                    "MAVLink from %s:%d refused: not a ground station (mavlink.allowed_senders)",
                    *addr,
                )
            return
        parser = self.parsers.get(addr)
        if parser is None:
            if len(self.parsers) >= MAX_PEERS:
                oldest = min(self.peers, key=lambda a: self.peers[a], default=None)
                if oldest is not None:
                    self.peers.pop(oldest, None)
                self.parsers.pop(oldest or next(iter(self.parsers)), None)
            parser = VerifyingMAVLink(
                None,
                srcSystem=self.sysid,
                srcComponent=COMPONENT_ID,
                max_ahead_s=self.config.mavlink.signing_max_ahead_s,
            )
            parser.robust_parsing = True
            if self.signing is not None:
                parser.signing = self.signing
            self.parsers[addr] = parser
        try:
            msgs = parser.parse_buffer(data) or []
        except Exception:  # a malformed frame must never stop the loop
            self.counters["bad_frames"] += 1
            self.parsers.pop(addr, None)
            return
        for msg in msgs:
            if msg.get_type() == "BAD_DATA":
                if "signature" in str(getattr(msg, "reason", "")):
                    raw = bytes(getattr(msg, "data", b"") or b"")
                    signed = len(raw) > 2 and raw[0] == 0xFD and raw[2] & 0x01
                    if signed and parser.refusals:
                        self._refused_signed(parser.refusals.popleft(), addr, now)
                    else:
                        self.counters["rejected_unsigned"] += 1
                    self.counters["rejected_frames"] += 1
                else:
                    self.counters["bad_frames"] += 1
                continue
            self.counters["messages"] += 1
            new_peer = addr not in self.peers
            self.peers[addr] = now
            if new_peer:
                log.info("ground station heard from %s:%d", *addr)
                for w in self.warnings:
                    self._text(mavlink.MAV_SEVERITY_WARNING, w, now, to=addr)
            try:
                self._handle(msg, addr, now)
            except Exception:
                self.counters["handler_errors"] += 1
                log.exception("dropped a message that could not be handled: %s", msg)
                if msg.get_type() in ("COMMAND_LONG", "COMMAND_INT"):
                    # Never leave a command unanswered: the station would only time out.
                    who = (msg.get_srcSystem(), msg.get_srcComponent())
                    self._ack(msg.command, int(Result.FAILED), now, who)

    def _refused_signed(
        self, refusal: tuple[str, float], addr: tuple[str, int], now: float
    ) -> None:
        """Count a signed frame that was refused, and tell its sender why when it holds
        the key but its clock runs ahead of the drone's."""
        reason, ahead_s = refusal
        self.counters[SIGNED_REFUSAL_COUNTERS[reason]] += 1
        if reason != "ahead":
            return
        if now - self._ahead_told.get(addr, -1e9) < AHEAD_TELL_EVERY_S:
            return
        self._ahead_told[addr] = now
        text = f"Signed frames refused: your clock is {ahead_s:.0f} s ahead of this drone's"
        log.warning(
            "MAVLink from %s:%d refused: signed, but its clock is %.0f s ahead of this "
            "drone's (mavlink.signing_max_ahead_s %g); set the drone's or the station's time",
            *addr,
            ahead_s,
            self.config.mavlink.signing_max_ahead_s,
        )
        self._text(mavlink.MAV_SEVERITY_WARNING, text[:50], now, to=addr)

    def _for_us(self, target: int, component: int | None = None) -> bool:
        ok = target in (0, self.sysid) and component in (None, 0, COMPONENT_ID)
        if not ok:
            self.counters["wrong_target"] += 1
        return ok

    def _handle(self, msg: Any, addr: tuple[str, int], now: float) -> None:
        kind = msg.get_type()
        if kind == "MANUAL_CONTROL":
            if msg.target != self.sysid:
                self.counters["wrong_target"] += 1
                return
            self.counters["manual_control"] += 1
            sticks = self.pilot.on_manual_control(msg.x, msg.y, msg.z, msg.r)
            self.controller.on_pilot(now, sticks)
        elif kind == "RC_CHANNELS_OVERRIDE":
            if msg.target_system != self.sysid or msg.target_component not in (0, COMPONENT_ID):
                self.counters["wrong_target"] += 1
                return
            raw = [getattr(msg, f"chan{i}_raw") for i in range(1, 9)]
            if self.pilot.on_rc_override(raw, dict(self.config.channels)):
                self.counters["rc_override"] += 1
                self.controller.on_pilot(now, self.pilot.sticks)
        elif kind == "COMMAND_LONG":
            if self._for_us(msg.target_system, msg.target_component):
                self._command(msg, now, addr)
        elif kind == "COMMAND_INT":
            if self._for_us(msg.target_system, msg.target_component):
                who = (msg.get_srcSystem(), msg.get_srcComponent())
                self._ack(msg.command, int(Result.UNSUPPORTED), now, who)
        elif kind == "PARAM_REQUEST_LIST":
            if self._for_us(msg.target_system, msg.target_component):
                for i in range(len(self.params)):
                    self._param_value(i, now, addr)
        elif kind == "PARAM_REQUEST_READ":
            if self._for_us(msg.target_system, msg.target_component):
                index = self._param_index(msg.param_id, msg.param_index)
                if index is not None:
                    self._param_value(index, now, addr)
        elif kind == "PARAM_SET":
            if self._for_us(msg.target_system, msg.target_component):
                self._param_set(msg, now, addr)
        elif kind == "MISSION_REQUEST_LIST" and self._for_us(
            msg.target_system, msg.target_component
        ):
            who = (msg.get_srcSystem(), msg.get_srcComponent())
            count = mavlink.MAVLink_mission_count_message(*who, 0, msg.mission_type)
            self._send(count, now, addr)

    def _command(self, msg: Any, now: float, addr: tuple[str, int]) -> None:
        self.counters["commands"] += 1
        who = (msg.get_srcSystem(), msg.get_srcComponent())
        if msg.command == mavlink.MAV_CMD_COMPONENT_ARM_DISARM:
            # Unused parameters may be NaN (MAVSDK sends them so, as the spec allows).
            force = math.isfinite(msg.param2) and round(msg.param2) == FORCE_MAGIC
            if msg.param1 == 1.0:
                action, result = "arm", self.controller.request_arm(now)
            elif msg.param1 == 0.0:
                action, result = "disarm", self.controller.request_disarm(now, force)
            else:
                self._ack(msg.command, int(Result.DENIED), now, who)
                return
            if result == Result.IN_PROGRESS:
                self.pending_acks[action] = who
            self._ack(msg.command, int(result), now, who)
            self._events(self.controller.drain_events(), now)
        elif msg.command == mavlink.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES:
            self._ack(msg.command, int(Result.ACCEPTED), now, who)
            self._autopilot_version(now, addr)
        elif msg.command in (mavlink.MAV_CMD_REQUEST_MESSAGE, mavlink.MAV_CMD_GET_HOME_POSITION):
            if msg.command == mavlink.MAV_CMD_GET_HOME_POSITION:
                wanted = mavlink.MAVLINK_MSG_ID_HOME_POSITION
            else:
                wanted = round(msg.param1) if math.isfinite(msg.param1) else -1
            name = REQUESTABLE.get(wanted)
            if name is None:
                self._ack(msg.command, int(Result.UNSUPPORTED), now, who)
            elif name == "home_position" and self.home is None:
                # No position fix yet: ask again later.
                self._ack(msg.command, int(Result.TEMPORARILY_REJECTED), now, who)
            elif name == "battery_status" and self.battery_reading is None:
                self._ack(msg.command, int(Result.FAILED), now, who)
            else:
                self._ack(msg.command, int(Result.ACCEPTED), now, who)
                if name in ("sys_status", "heartbeat"):
                    getattr(self, f"_{name}")(now)
                else:
                    getattr(self, f"_{name}")(now, addr)
        else:
            self._ack(msg.command, int(Result.UNSUPPORTED), now, who)

    def _param_index(self, param_id: Any, index: int) -> int | None:
        if 0 <= index < len(self.params):
            return index
        name = param_id.decode("ascii", "replace") if isinstance(param_id, bytes) else param_id
        name = str(name).rstrip("\x00")
        for i, p in enumerate(self.params):
            if p.name == name:
                return i
        return None

    def _param_value(self, index: int, now: float, to: tuple[str, int]) -> None:
        p = self.params[index]
        msg = mavlink.MAVLink_param_value_message(
            p.name.encode(),
            float(p.value),
            mavlink.MAV_PARAM_TYPE_REAL32,
            len(self.params),
            index,
        )
        self._send(msg, now, to)

    def _param_set(self, msg: Any, now: float, addr: tuple[str, int]) -> None:
        index = self._param_index(msg.param_id, -1)
        if index is None:
            return  # unknown parameter: no answer, as the parameter protocol says
        p = self.params[index]
        value = float(msg.param_value)
        if p.settable and p.name == "SIM_BATT_VOLT" and 0.0 <= value <= 60.0:
            assert isinstance(self.battery, SimBattery)
            self.battery.set_voltage(now, value)
            p.value = value
            log.info("simulated battery set to %.2f V", value)
        self._param_value(index, now, addr)

    # ------------------------------------------------------------------ the frame
    def step(self, now: float) -> None:
        """One output frame: read input, decide, write pulses, send what is due."""
        self._receive(now)
        c = self.controller
        if self.battery is not None:
            self._read_battery(now)
        if (
            self.gps is not None
            and self.sensor_errors.get("gps")
            and self._due_now("retry_gps", now, SENSOR_RETRY_S)
        ):
            self._start_sensor("gps", self.gps, now)
        pulses = c.tick(now)
        self.backend.write(now, c.mode.value, pulses)
        self._events(c.drain_events(), now)
        if self.attitude is not None:
            flying = c.mode in ARMED_MODES and pulses.throttle > self.config.kk2.throttle_zero_us
            self.attitude.update(now, c.pilot, flying)
        if self._due_now("gps", now, 0.5):
            self._gps(now)
        if self._due_now("heartbeat", now, 1.0):
            self._heartbeat(now)
            self._sys_status(now)
            self._extended_sys_state(now)
            self._battery_status(now)
        if self._due_now("home", now, 5.0):
            self._home_position(now)
        if self._due_now("attitude", now, 0.1):
            self._attitude(now)
        if self._due_now("servo", now, 0.5):
            self._servo_output(now)
        if self._due_now("status", now, 1.0):
            self.write_status(now)
        if self.warnings and self._due_now("warnings", now, 60.0):
            for w in self.warnings:  # repeated: a station that joins later hears it too
                self._text(mavlink.MAV_SEVERITY_WARNING, w, now)
        self.notifier.watchdog(now)

    def _read_battery(self, now: float) -> None:
        assert self.battery is not None
        if self.sensor_errors.get("battery"):
            if self._due_now("retry_battery", now, SENSOR_RETRY_S):
                self._start_sensor("battery", self.battery, now)
            return
        if not self._due_now("battery", now, 0.2):
            return
        try:
            self.battery_reading = self.battery.read(now)
        except OSError as exc:  # an I2C glitch must not stop the pulses
            self.battery_reading = None
            self.sensor_errors["battery"] = f"battery monitor stopped answering ({exc})"
            self._due["retry_battery"] = now + SENSOR_RETRY_S
            self.warnings.append(f"BATTERY MISSING: {self.sensor_errors['battery']}")
            log.warning(self.warnings[-1])
            self._text(mavlink.MAV_SEVERITY_WARNING, self.warnings[-1], now)
            return
        if isinstance(self.battery, SimBattery):
            self.params[-1].value = round(self.battery_reading.voltage, 3)
        self.controller.on_battery(now, self.battery_reading.voltage)

    def _sensors_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, source in (("battery", self.battery), ("gps", self.gps)):
            if source is None:
                out[name] = {"source": "none", "ok": False, "error": None}
            else:
                error = self.sensor_errors.get(name)
                out[name] = {"source": source.name, "ok": error is None, "error": error}
        return out

    def status(self, now: float) -> dict[str, Any]:
        c = self.controller
        r = self.battery_reading
        return {
            "running": True,
            "time": round(now, 3),
            "system_id": self.sysid,
            "mode": c.mode.value,
            "armed": c.armed,
            "pilot_link": c.link_alive(now),
            "pilot_input_age_s": None if c.last_input is None else round(now - c.last_input, 3),
            "pulses_us": dict(
                zip(("aileron", "elevator", "throttle", "rudder"), c.last.as_tuple(), strict=True)
            ),
            "failsafes": c.failsafes,
            "battery": {
                "voltage": None if r is None else round(r.voltage, 3),
                "low": c.battery_low,
                "landed_low_battery": c.landed_low_battery,
            },
            "backend": self.backend.name,
            "record_file": self.config.backend.sim.record_file
            if isinstance(self.backend, SimBackend)
            else None,
            "mavlink": {
                "listen": "{}:{}".format(*self.config.mavlink.listen),
                "ground_station": "{}:{}".format(*self.ground_station),
                "allowed_senders": [str(n) for n in self.senders],
                "signing": self.signing is not None,
                "peers": sorted(f"{a[0]}:{a[1]}" for a in self.peers),
                **self.counters,
                "input_clamped": self.pilot.counters.clamped,
                "input_dropped": self.pilot.counters.dropped,
            },
            "sensors": self._sensors_status(),
            "armable": self.armable(now),
            "landed_state": self._landed_state(),
            "loop": {"rate_hz": self.config.rate_hz, **self.stats.summary()},
            "realtime": self.realtime.as_dict(),
            "warnings": self.warnings,
        }

    def write_status(self, now: float) -> None:
        path = self.config.status_file
        if not path:
            return
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self.status(now), fh, indent=1)
            os.replace(tmp, path)
        except OSError as exc:
            if "status file" not in " ".join(self.warnings):
                self.warnings.append(f"status file {path} not written: {exc.strerror}")
                log.warning(self.warnings[-1])

    def stop(self) -> None:
        self._stop = True

    def run(self, duration: float | None = None) -> None:
        """The 50 Hz loop on absolute deadlines until stop() or ``duration`` seconds."""
        period_ns = round(1e9 / self.config.rate_hz)
        deadline = time.monotonic_ns() + period_ns
        end = None if duration is None else time.monotonic() + duration
        while not self._stop:
            sleep_until(deadline)
            wake_ns = time.monotonic_ns()
            skipped = self.stats.record(deadline / 1e9, wake_ns / 1e9)
            now = wake_ns / 1e9
            self.step(now)
            self.busy_s = time.monotonic() - now
            deadline += period_ns * (1 + skipped)
            if end is not None and now >= end:
                break

    def write_failure(self, error: str) -> None:
        """Status of a bridge that could not start: no pulses, only the reason."""
        path = self.config.status_file
        if not path:
            return
        with contextlib.suppress(OSError):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(
                json.dumps({"running": False, "error": error, "backend": self.backend.name})
            )

    def close(self) -> None:
        now = time.monotonic()
        if self.controller.armed:
            log.critical("flight bridge stopping while ARMED (%s)", self.controller.mode.value)
        if self.sock is not None:
            with contextlib.suppress(Exception):
                self.write_status(now)
        with contextlib.suppress(Exception):
            self.notifier.send("STOPPING=1")
        with contextlib.suppress(Exception):
            self.backend.stop()
        for source in (self.gps,):
            if source is not None:
                with contextlib.suppress(Exception):
                    source.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _describe(config: FlightConfig) -> str:
    m = config.mavlink
    return (
        f"{config.source}: OK (system {m.system_id}, MAVLink on {m.listen[0]}:{m.listen[1]}, "
        f"ground station {m.ground_station[0]}:{m.ground_station[1]}, "
        f"backend {config.backend.type}, failsafe hold {config.failsafe.hold_s} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cloudrone-flight-bridge",
        description="MAVLink from the pilot to KK2 receiver pulses, with failsafe and telemetry.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--check",
        type=Path,
        metavar="CONFIG",
        help="validate CONFIG and exit: 0 if good, 1 with the problems if not",
    )
    parser.add_argument("--duration", type=float, help="run this many seconds, then exit")
    parser.add_argument(
        "--grant-rt-budget",
        type=int,
        metavar="US",
        help="give this process's cgroup (and its parents) US microseconds of real-time "
        "CPU per second where the kernel has RT group scheduling, then exit (systemd's "
        "ExecStartPre uses it)",
    )
    parser.add_argument("--verbose", action="store_true", help="log debug detail")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.grant_rt_budget is not None:
        for line in grant_rt_budget(args.grant_rt_budget):
            print(line)
        return 0
    path = args.check or args.config
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    if args.check:
        print(_describe(config))
        return 0
    bridge = Bridge(config)
    try:
        bridge.start()
    except StartError as exc:
        log.error("%s", exc)
        bridge.write_failure(str(exc))
        bridge.close()
        return 2
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    signal.signal(signal.SIGINT, lambda *_: bridge.stop())
    try:
        bridge.run(args.duration)
    finally:
        bridge.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
