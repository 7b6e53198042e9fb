"""Pulse outputs: where the KK2's four receiver inputs come from.

* ``sim``: records every frame (monotonic time, mode, four pulse widths) in
  memory and, if configured, to a CSV file; for tests and the simulated fleet.
* ``pca9685``: a PCA9685 16-channel PWM board over I2C (smbus2), any OS.
* ``pigpio``: servo pulses from the pigpio daemon (Raspberry Pi OS), spoken to
  over its socket protocol so no extra library is needed.

A backend that cannot start raises :class:`BackendError` with a message that
says what is missing and how to fix it: the bridge never flies on another one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from cloudrone.flight.config import AXES, FlightConfig
from cloudrone.flight.mapping import Pulses


class BackendError(RuntimeError):
    """The pulse output cannot be used; the message tells the operator why."""


class Backend(Protocol):
    name: str

    def start(self) -> None: ...

    def write(self, now: float, mode: str, pulses: Pulses) -> None: ...

    def stop(self) -> None: ...


# --------------------------------------------------------------------------- sim


class SimBackend:
    """Records frames; the record file is CSV: ``t,mode,aileron,elevator,throttle,rudder``.

    ``t`` is CLOCK_MONOTONIC seconds, comparable with ``time.monotonic()`` in any
    process on the same machine. Past ``max_frames`` lines the file is moved to
    ``FILE.1`` and a new one is started, so a long-running drone keeps bounded logs.
    """

    name = "sim"
    HEADER = "t,mode,aileron_us,elevator_us,throttle_us,rudder_us\n"

    def __init__(
        self, record_file: str | None = None, max_frames: int = 180_000, keep: int = 100_000
    ) -> None:
        self.record_file = Path(record_file) if record_file else None
        self.max_frames = max_frames
        self.frames: deque[tuple[float, str, tuple[int, int, int, int]]] = deque(maxlen=keep)
        self._fh: Any = None
        self._lines = 0

    def start(self) -> None:
        if self.record_file is None:
            return
        try:
            self.record_file.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError as exc:
            raise BackendError(
                f"sim backend: cannot write the frame record {self.record_file} "
                f"({exc.strerror}); fix backend.sim.record_file or its directory's permissions"
            ) from None

    def _open(self) -> None:
        assert self.record_file is not None
        self._fh = self.record_file.open("w", encoding="ascii", buffering=1)
        self._fh.write(self.HEADER)
        self._lines = 0

    def write(self, now: float, mode: str, pulses: Pulses) -> None:
        values = pulses.as_tuple()
        self.frames.append((now, mode, values))
        if self._fh is not None:
            if self._lines >= self.max_frames:
                self._fh.close()
                assert self.record_file is not None
                os.replace(self.record_file, f"{self.record_file}.1")
                self._open()
            self._fh.write(f"{now:.6f},{mode},{values[0]},{values[1]},{values[2]},{values[3]}\n")
            self._lines += 1

    def stop(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_frames(path: str | Path) -> list[tuple[float, str, tuple[int, int, int, int]]]:
    """Read a sim record file back (for tests and the simulated fleet's status)."""
    out = []
    with open(path, encoding="ascii") as fh:
        next(fh, None)
        for line in fh:
            parts = line.rstrip("\n").split(",")
            if len(parts) != 6:
                continue  # a line being written right now
            t, mode, a, e, th, r = parts
            out.append((float(t), mode, (int(a), int(e), int(th), int(r))))
    return out


# --------------------------------------------------------------------------- PCA9685

MODE1 = 0x00
MODE2 = 0x01
LED0_ON_L = 0x06
PRE_SCALE = 0xFE
MODE1_RESTART = 0x80
MODE1_AI = 0x20
MODE1_SLEEP = 0x10
MODE1_ALLCALL = 0x01
MODE2_OUTDRV = 0x04


def pca9685_prescale(frequency_hz: float, oscillator_hz: int = 25_000_000) -> int:
    """PRE_SCALE register value for an output frequency (datasheet 7.3.5)."""
    value = round(oscillator_hz / (4096 * frequency_hz)) - 1
    if not 3 <= value <= 255:
        raise ValueError(f"{frequency_hz} Hz is outside the PCA9685's range")
    return value


def pca9685_counts(pulse_us: float, prescale: int, oscillator_hz: int = 25_000_000) -> int:
    """Off-count (of 4096 per period) that gives a pulse of ``pulse_us``."""
    tick_us = (prescale + 1) * 1e6 / oscillator_hz
    return max(0, min(4095, round(pulse_us / tick_us)))


def i2c_bus_factory(device: str, factory: Any, missing: str) -> Any:
    """What opens an I2C bus: the given factory (tests), else smbus2's SMBus.

    Without a factory, a missing ``device`` fails at once with ``missing``,
    which says what to fix, instead of an errno from deep in smbus2.
    """
    if factory is not None:
        return factory
    if not os.path.exists(device):
        raise BackendError(missing)
    from smbus2 import SMBus

    return SMBus


class Pca9685Backend:
    """Four KK2 inputs on PCA9685 channels; the chip keeps pulsing between writes."""

    name = "pca9685"

    def __init__(
        self,
        bus: int,
        address: int,
        outputs: dict[str, int],
        oscillator_hz: int = 25_000_000,
        frequency_hz: float = 50.0,
        smbus_factory: Any = None,
    ) -> None:
        self.bus_number = bus
        self.address = address
        self.outputs = outputs
        self.oscillator_hz = oscillator_hz
        self.prescale = pca9685_prescale(frequency_hz, oscillator_hz)
        self._factory = smbus_factory
        self.bus: Any = None
        self._last: dict[int, int] = {}

    def start(self) -> None:
        device = f"/dev/i2c-{self.bus_number}"
        factory = i2c_bus_factory(
            device,
            self._factory,
            f"pca9685 backend: {device} does not exist: I2C bus {self.bus_number} is "
            "not enabled (on a Pi: dtparam=i2c_arm=on in config.txt, or raspi-config) "
            "or backend.pca9685.bus is wrong; or choose backend.type: sim",
        )
        try:
            self.bus = factory(self.bus_number)
            old = self.bus.read_byte_data(self.address, MODE1)
            sleep = (old & ~MODE1_RESTART) | MODE1_SLEEP
            self.bus.write_byte_data(self.address, MODE1, sleep)
            self.bus.write_byte_data(self.address, PRE_SCALE, self.prescale)
            self.bus.write_byte_data(self.address, MODE2, MODE2_OUTDRV)
            awake = (sleep & ~MODE1_SLEEP) | MODE1_AI
            self.bus.write_byte_data(self.address, MODE1, awake)
            time.sleep(0.0005)  # the oscillator needs 500 us after leaving sleep
            self.bus.write_byte_data(self.address, MODE1, awake | MODE1_RESTART)
        except OSError as exc:
            raise BackendError(
                f"pca9685 backend: no answer from a PCA9685 at address {self.address:#04x} on "
                f"{device} ({exc.strerror or exc}); check the wiring and power, "
                "`i2cdetect -y BUS`, and backend.pca9685.address"
            ) from None

    def write(self, now: float, mode: str, pulses: Pulses) -> None:
        values = dict(zip(AXES, pulses.as_tuple(), strict=True))
        for axis, channel in self.outputs.items():
            off = pca9685_counts(values[axis], self.prescale, self.oscillator_hz)
            if self._last.get(channel) == off:
                continue
            self.bus.write_i2c_block_data(
                self.address, LED0_ON_L + 4 * channel, [0, 0, off & 0xFF, off >> 8]
            )
            self._last[channel] = off

    def stop(self) -> None:
        if self.bus is not None:
            with contextlib.suppress(OSError):
                self.bus.close()
            self.bus = None


# --------------------------------------------------------------------------- pigpio

PI_CMD_SERVO = 8
PI_CMD_PIGPV = 26


class PigpioBackend:
    """Servo pulses on GPIOs through pigpiod's socket commands (16-byte requests)."""

    name = "pigpio"

    def __init__(self, host: str, port: int, outputs: dict[str, int]) -> None:
        self.host = host
        self.port = port
        self.outputs = outputs
        self.sock: socket.socket | None = None
        self.version = 0

    def _command(self, cmd: int, p1: int = 0, p2: int = 0) -> int:
        assert self.sock is not None
        self.sock.sendall(struct.pack("<IIII", cmd, p1, p2, 0))
        reply = b""
        while len(reply) < 16:
            chunk = self.sock.recv(16 - len(reply))
            if not chunk:
                raise ConnectionError("pigpiod closed the connection")
            reply += chunk
        return struct.unpack("<12si", reply)[1]

    def start(self) -> None:
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=2.0)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.version = self._command(PI_CMD_PIGPV)
        except OSError as exc:
            self.sock = None
            raise BackendError(
                f"pigpio backend: cannot reach pigpiod at {self.host}:{self.port} "
                f"({exc.strerror or exc}); start it (`systemctl enable --now pigpiod` on "
                "Raspberry Pi OS) or choose backend.type: pca9685 or sim"
            ) from None
        if self.version <= 0:
            raise BackendError(
                f"pigpio backend: {self.host}:{self.port} does not answer like pigpiod "
                f"(version {self.version}); check backend.pigpio.port"
            )

    def write(self, now: float, mode: str, pulses: Pulses) -> None:
        values = dict(zip(AXES, pulses.as_tuple(), strict=True))
        for axis, gpio in self.outputs.items():
            result = self._command(PI_CMD_SERVO, gpio, values[axis])
            if result < 0:
                raise BackendError(f"pigpio backend: GPIO {gpio} refused a servo pulse ({result})")

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# --------------------------------------------------------------------------- factory


def open_backend(config: FlightConfig) -> Backend:
    """The backend the configuration names (not started yet)."""
    outputs = {axis: ch.output for axis, ch in config.channels.items()}
    b = config.backend
    if b.type == "sim":
        return SimBackend(b.sim.record_file, b.sim.max_frames)
    if b.type == "pca9685":
        return Pca9685Backend(
            b.pca9685.bus, b.pca9685.address, outputs, b.pca9685.oscillator_hz, config.rate_hz
        )
    if b.type == "pigpio":
        return PigpioBackend(b.pigpio.host, b.pigpio.port, outputs)
    raise BackendError(f"unknown backend {b.type!r}; choose sim, pca9685 or pigpio")
