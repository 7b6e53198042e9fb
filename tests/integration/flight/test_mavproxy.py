"""MAVProxy, a real ground station run headless, flies the bridge.

MAVProxy's ``--non-interactive`` stops it reading standard input at all (its
main thread only sleeps), so commands could only be given once at start with
``--cmd``, before the vehicle is even detected. Without that flag it reads
commands line by line from a pipe (no terminal needed), so this test pipes
``rc``, ``arm throttle``, ``disarm`` and ``param set`` to it, as a pilot types
them, and reads its console output from another pipe.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cloudrone.bench.flightlab import wait_until
from cloudrone.flight.signing import passphrase_key

pytestmark = pytest.mark.integration

MAVPROXY = shutil.which("mavproxy.py") or str(Path(sys.executable).parent / "mavproxy.py")


class MavProxy:
    def __init__(
        self, gs_port: int, workdir: Path, extra: tuple[str, ...] = (), home: Path | None = None
    ) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if home is not None:  # MAVProxy reads ~/.mavproxy/signing.keys
            env["HOME"] = str(home)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                MAVPROXY,
                f"--master=udp:127.0.0.1:{gs_port}",
                "--nowait",
                "--no-state",
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=workdir,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def type(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def expect(self, text: str, timeout: float = 8.0, after: int = 0) -> int:
        """Index of the first console line from ``after`` on that contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(after, len(self.lines)):
                if text in self.lines[i]:
                    return i
            time.sleep(0.05)
        raise AssertionError(f"MAVProxy never printed {text!r}:\n" + "\n".join(self.lines[-40:]))

    def kill(self) -> float:
        self.proc.kill()
        t = time.monotonic()
        self.proc.wait(timeout=5)
        return t


@pytest.mark.skipif(not Path(MAVPROXY).exists(), reason="MAVProxy is not installed")
def test_mavproxy_flies_the_bridge(bridge, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = bridge(
        failsafe={"ramp_s": 0.3, "descent_s": 0.6, "idle_s": 0.3},
        battery={"low_voltage": 10.5, "low_delay_s": 0.5, "resume_voltage": 11.0},
    )
    mp = MavProxy(b.gs_port, tmp_path)
    try:
        mp.expect("online system 1", timeout=20)
        mp.expect("Received 8 parameters", timeout=20)  # the parameter answer did not stall it

        # Throttle down, then arm: the KK2 gesture, acknowledged.
        mp.type("rc 3 1000")
        wait_until(lambda: b.status()["pilot_link"], what="MAVProxy's overrides")
        mark = len(mp.lines)
        mp.type("arm throttle")
        mp.expect("COMPONENT_ARM_DISARM: IN_PROGRESS", after=mark)
        mp.expect("COMPONENT_ARM_DISARM: ACCEPTED", after=mark)

        # Sticks through RC override (MAVProxy repeats it at 10 Hz).
        mp.type("rc 3 1600")
        mp.type("rc 1 1700")
        mp.type("rc 4 1450")
        b.wait_frame("armed", (1700, 1500, 1600, 1450))

        # Disarm needs the throttle at zero.
        mark = len(mp.lines)
        mp.type("disarm")
        mp.expect("COMPONENT_ARM_DISARM: DENIED", after=mark)
        mp.expect("Disarm refused: bring the throttle to zero", after=mark)
        mp.type("rc 3 1000")
        b.wait_frame("armed", (1700, 1500, 1000, 1450))
        mark = len(mp.lines)
        mp.type("disarm")
        mp.expect("COMPONENT_ARM_DISARM: ACCEPTED", after=mark)
        b.wait_frame("disarmed", (1500, 1500, 1000, 1500))

        # Low battery while flying: land, disarm, keep serving; arming refused.
        mark = len(mp.lines)
        mp.type("arm throttle")
        mp.expect("COMPONENT_ARM_DISARM: ACCEPTED", after=mark)
        mp.type("rc 3 1700")
        b.wait_frame("armed", (1700, 1500, 1700, 1450))
        mp.type("param set SIM_BATT_VOLT 10.0")
        mp.expect("Battery low: 10.00 V", after=mark)
        mp.expect("Landed on low battery", after=mark, timeout=6)
        b.wait_frame("disarmed")
        landing = [f for f in b.frames() if f[1] == "landing"]
        assert landing and landing[0][2][2] <= 1700 and landing[-1][2][2] == 1000
        mark = len(mp.lines)
        mp.type("arm throttle")
        mp.expect("COMPONENT_ARM_DISARM: DENIED", after=mark)

        # A fresh battery, fly again, then the pilot's link dies with MAVProxy.
        mp.type("param set SIM_BATT_VOLT 12.5")
        mp.expect("Battery recovered", after=mark)
        mp.type("rc 3 1000")
        b.wait_frame("disarmed", (1500, 1500, 1000, 1500))
        mark = len(mp.lines)
        mp.type("arm throttle")
        mp.expect("COMPONENT_ARM_DISARM: ACCEPTED", after=mark)
        mp.type("rc 3 1650")
        mp.type("rc 2 1300")
        b.wait_frame("armed", (1700, 1300, 1650, 1450))  # rc 1 and 4 still held
        killed = mp.kill()
    finally:
        if mp.proc.poll() is None:
            mp.kill()
    b.wait_frame("disarmed", timeout=15)
    frames = b.frames()
    first = next(f for f in frames if f[1] == "failsafe" and f[0] > killed - 1)
    # MAVProxy's last override left at most 0.1 s before the kill (10 Hz): the
    # failsafe never comes before the hold. (Its upper bound, hold + one frame, is
    # checked on a fake clock in tests/unit/flight/test_control.py.)
    assert first[0] - killed > 0.5 - 0.1
    assert first[2][:2] == (1500, 1500) and first[2][3] == 1500
    assert frames[-1][1:] == ("disarmed", (1500, 1500, 1000, 1500))
    assert b.proc.poll() is None


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _mavsdk_arms_and_flies(b, port: int) -> None:  # type: ignore[no-untyped-def]
    """MAVSDK (no signing of its own) arms and flies through MAVProxy, which signs."""
    from mavsdk.asyncio import ComponentType, Configuration, Mavsdk
    from mavsdk.asyncio.plugins.action import ActionAsync
    from mavsdk.asyncio.plugins.manual_control import ManualControlAsync

    config = Configuration.create_with_component_type(ComponentType.GROUND_STATION)
    async with Mavsdk(config) as sdk:
        await sdk.add_any_connection(f"udpin://127.0.0.1:{port}")
        system = await sdk.first_autopilot(timeout_s=20.0)
        assert system is not None, "MAVSDK found no autopilot behind MAVProxy"
        action, control = ActionAsync(system), ManualControlAsync(system)
        sticks = [0.0, 0.0, 0.0, 0.0]

        async def pilot() -> None:
            while True:
                await control.set_manual_control_input(*sticks)
                await asyncio.sleep(0.04)

        task = asyncio.create_task(pilot())
        try:
            deadline = time.monotonic() + 15
            while not b.status()["pilot_link"] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await action.arm()
            sticks[2] = 0.6
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                f = b.last_frame()
                if f and f[1] == "armed" and f[2][2] == 1600:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"MAVSDK's throttle never reached the pulses: {f}")
            sticks[2] = 0.0
            await asyncio.sleep(0.3)
            await action.disarm()
        finally:
            task.cancel()


@pytest.mark.skipif(not Path(MAVPROXY).exists(), reason="MAVProxy is not installed")
def test_mavproxy_flies_a_signed_bridge_and_signs_for_mavsdk(bridge, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The mission's passphrase in MAVProxy's signing.keys (as `mission ground-station`
    says): MAVProxy flies the signed bridge, and signs what MAVSDK sends through it."""
    pytest.importorskip("mavsdk.asyncio")
    passphrase = "itest-" + secrets.token_urlsafe(18)
    key_file = tmp_path / "signing.key"
    key_file.write_text(passphrase_key(passphrase).hex() + "\n")
    key_file.chmod(0o600)
    b = bridge(mavlink={"signing_key_file": str(key_file)})
    home = tmp_path / "home"
    (home / ".mavproxy").mkdir(parents=True)
    (home / ".mavproxy" / "signing.keys").write_text(f"udp:127.0.0.1:{b.gs_port} {passphrase}\n")
    out_port = _free_udp_port()
    # MAVProxy signs what it forwards by packing it again under its own ids: it takes
    # MAVSDK's ground station ids (245, 190), so the ACKs find MAVSDK
    mp = MavProxy(
        b.gs_port,
        tmp_path,
        (f"--out=udp:127.0.0.1:{out_port}", "--source-system=245", "--source-component=190"),
        home=home,
    )
    try:
        mp.expect("online system 1", timeout=20)
        mp.type("rc 3 1000")
        wait_until(lambda: b.status()["pilot_link"], what="MAVProxy's signed overrides")
        mark = len(mp.lines)
        mp.type("arm throttle")
        mp.expect("COMPONENT_ARM_DISARM: ACCEPTED", after=mark)
        b.wait_frame("armed")
        mark = len(mp.lines)
        mp.type("disarm")
        mp.expect("COMPONENT_ARM_DISARM: ACCEPTED", after=mark)
        b.wait_frame("disarmed")
        mp.type("rc 3 0")  # hand the sticks to MAVSDK: MAVProxy overrides nothing now
        asyncio.run(_mavsdk_arms_and_flies(b, out_port))
        b.wait_frame("disarmed")
        m = b.status()["mavlink"]
        assert m["signing"] is True
        # everything that reached the bridge was signed with the mission's key
        assert m["rejected_unsigned"] == 0 and m["rejected_bad_signature"] == 0, m
        assert m["commands"] >= 4  # two arms, two disarms
    finally:
        if mp.proc.poll() is None:
            mp.kill()
