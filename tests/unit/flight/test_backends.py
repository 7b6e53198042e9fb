"""Pulse backends and sensors: register math against a fake SMBus (there is no
I2C here), the sim recorder, and clear failures when hardware is absent."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest

from cloudrone.flight.backends import (
    LED0_ON_L,
    MODE1,
    MODE2,
    PRE_SCALE,
    BackendError,
    Pca9685Backend,
    PigpioBackend,
    SimBackend,
    pca9685_counts,
    pca9685_prescale,
    read_frames,
)
from cloudrone.flight.mapping import Pulses
from cloudrone.flight.telemetry import GpsdSource, Ina219Battery, remaining_percent

OUTPUTS = {"aileron": 0, "elevator": 1, "throttle": 2, "rudder": 3}


class FakeSMBus:
    """Records register traffic like an smbus2.SMBus would carry it."""

    def __init__(self, bus: int, words: dict[int, int] | None = None, fail: bool = False):
        self.bus = bus
        self.regs: dict[int, int] = {MODE1: 0x11}  # power-on MODE1: SLEEP | ALLCALL
        self.writes: list[tuple[str, int, object]] = []
        self.words = words or {}
        self.fail = fail

    def _check(self) -> None:
        if self.fail:
            raise OSError(121, "Remote I/O error")

    def read_byte_data(self, addr: int, reg: int) -> int:
        self._check()
        return self.regs.get(reg, 0)

    def write_byte_data(self, addr: int, reg: int, value: int) -> None:
        self._check()
        self.regs[reg] = value
        self.writes.append(("byte", reg, value))

    def write_i2c_block_data(self, addr: int, reg: int, data: list[int]) -> None:
        self._check()
        self.writes.append(("block", reg, list(data)))

    def read_word_data(self, addr: int, reg: int) -> int:
        self._check()
        return self.words[reg]

    def close(self) -> None:
        pass


def test_prescale_and_counts_follow_the_datasheet() -> None:
    assert pca9685_prescale(50) == 121  # round(25e6 / (4096 * 50)) - 1
    assert pca9685_prescale(50, 27_000_000) == 131
    # One count is (121 + 1) / 25 MHz = 4.88 us.
    assert pca9685_counts(1500, 121) == 307
    assert pca9685_counts(1000, 121) == 205
    assert pca9685_counts(2000, 121) == 410
    assert pca9685_counts(100_000, 121) == 4095
    with pytest.raises(ValueError):
        pca9685_prescale(5000)


def test_pca9685_start_sequence_and_frame_writes() -> None:
    buses: list[FakeSMBus] = []

    def factory(n: int) -> FakeSMBus:
        buses.append(FakeSMBus(n))
        return buses[-1]

    b = Pca9685Backend(1, 0x40, OUTPUTS, smbus_factory=factory)
    b.start()
    bus = buses[0]
    assert bus.bus == 1
    assert bus.writes[:5] == [
        ("byte", MODE1, 0x11),  # asleep (prescale is only writable in sleep)
        ("byte", PRE_SCALE, 121),
        ("byte", MODE2, 0x04),  # totem-pole outputs
        ("byte", MODE1, 0x21),  # awake, auto-increment
        ("byte", MODE1, 0xA1),  # restart
    ]
    bus.writes.clear()
    b.write(0.0, "armed", Pulses(1000, 1500, 2000, 1500))
    assert bus.writes == [
        ("block", LED0_ON_L + 0, [0, 0, 205, 0]),
        ("block", LED0_ON_L + 4, [0, 0, 307 & 0xFF, 307 >> 8]),
        ("block", LED0_ON_L + 8, [0, 0, 410 & 0xFF, 410 >> 8]),
        ("block", LED0_ON_L + 12, [0, 0, 307 & 0xFF, 307 >> 8]),
    ]
    bus.writes.clear()
    b.write(0.02, "armed", Pulses(1000, 1500, 2000, 1600))  # only the rudder changed
    assert bus.writes == [("block", LED0_ON_L + 12, [0, 0, 328 & 0xFF, 328 >> 8])]


def test_pca9685_fails_clearly_without_i2c() -> None:
    with pytest.raises(BackendError) as info:
        Pca9685Backend(97, 0x40, OUTPUTS).start()
    msg = str(info.value)
    assert "/dev/i2c-97 does not exist" in msg and "backend.type: sim" in msg


def test_pca9685_fails_clearly_when_the_chip_does_not_answer() -> None:
    b = Pca9685Backend(1, 0x41, OUTPUTS, smbus_factory=lambda n: FakeSMBus(n, fail=True))
    with pytest.raises(BackendError, match=r"no answer from a PCA9685 at address 0x41"):
        b.start()


def test_pigpio_fails_clearly_without_the_daemon() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(BackendError) as info:
        PigpioBackend("127.0.0.1", port, OUTPUTS).start()
    assert f"cannot reach pigpiod at 127.0.0.1:{port}" in str(info.value)
    assert "systemctl enable --now pigpiod" in str(info.value)


def test_pigpio_speaks_the_socket_protocol() -> None:
    """A loopback stand-in for pigpiod that answers 16-byte commands."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    seen: list[tuple[int, int, int]] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(16, socket.MSG_WAITALL):
                cmd, p1, p2, _ = struct.unpack("<IIII", data)
                seen.append((cmd, p1, p2))
                result = 79 if cmd == 26 else 0
                conn.sendall(struct.pack("<IIIi", cmd, p1, p2, result))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    b = PigpioBackend(
        "127.0.0.1",
        server.getsockname()[1],
        {"aileron": 17, "elevator": 18, "throttle": 27, "rudder": 22},
    )
    b.start()
    assert b.version == 79
    b.write(0.0, "armed", Pulses(1100, 1200, 1300, 1400))
    b.stop()
    t.join(timeout=2)
    server.close()
    assert seen == [(26, 0, 0), (8, 17, 1100), (8, 18, 1200), (8, 27, 1300), (8, 22, 1400)]


def test_sim_backend_records_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "run" / "frames.csv"
    b = SimBackend(str(path), max_frames=100)
    b.start()
    for i in range(150):
        b.write(i * 0.02, "armed", Pulses(1500, 1500, 1000 + i, 1500))
    b.stop()
    old = read_frames(f"{path}.1")
    new = read_frames(path)
    assert len(old) == 100 and len(new) == 50
    assert new[0] == (2.0, "armed", (1500, 1500, 1100, 1500))
    assert len(b.frames) == 150


def test_sim_backend_unwritable_record_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BackendError, match="cannot write the frame record"):
        SimBackend(str(blocker / "frames.csv")).start()


def test_ina219_voltage_and_current() -> None:
    # 12.4 V = 3100 * 4 mV, in bits 15..3; 2 A through 0.1 ohm = 0.2 V = 20000 * 10 uV.
    # SMBus words come back byte-swapped.
    def swap(w: int) -> int:
        return ((w & 0xFF) << 8) | (w >> 8)

    words = {0x02: swap(3100 << 3), 0x01: swap(20000)}
    ina = Ina219Battery(1, 0x40, 0.1, smbus_factory=lambda n: FakeSMBus(n, words=words))
    ina.start()
    r = ina.read(0.0)
    assert r.voltage == pytest.approx(12.4)
    assert r.current_a == pytest.approx(2.0)
    words[0x01] = swap((-500) & 0xFFFF)  # charging: negative shunt voltage
    assert ina.read(0.0).current_a == pytest.approx(-0.05)


def test_ina219_without_i2c_fails_clearly() -> None:
    with pytest.raises(BackendError, match=r"battery\.source: sim"):
        Ina219Battery(97, 0x40, 0.1).start()


def test_remaining_percent() -> None:
    assert remaining_percent(12.6, 3) == 100
    assert remaining_percent(9.9, 3) == 0
    assert remaining_percent(11.25, 3) == 50


def test_gpsd_reports_and_absent_daemon() -> None:
    g = GpsdSource("127.0.0.1", 1)
    g.feed(b'{"class":"SKY","uSat":9}')
    g.feed(b'{"class":"TPV","mode":3,"lat":52.2,"lon":0.12,"altMSL":31.5,"speed":2.5}')
    assert g.fix.fix_type == 3 and g.fix.satellites == 9 and g.fix.alt_m == 31.5
    g.feed(b"not json")
    g.feed(b'{"class":"TPV","mode":1}')
    assert g.fix.fix_type == 1
    with pytest.raises(BackendError, match=r"cannot reach gpsd at 127\.0\.0\.1:1"):
        g.start()
