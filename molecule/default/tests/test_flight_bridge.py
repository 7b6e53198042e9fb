"""The flight bridge on the simulated drone: running, checked config, pulses flowing."""

import json
import time

STATUS = "/run/cloudrone/flight-status.json"
FRAMES = "/run/cloudrone/flight-frames.csv"


def status(host) -> dict:
    return json.loads(host.file(STATUS).content_string)


def test_unit_enabled_and_running(host):
    unit = host.service("cloudrone-flight-bridge")
    assert unit.is_enabled
    assert unit.is_running


def test_config_passes_its_own_check(host):
    cmd = host.run(
        "/opt/cloudrone/venv/bin/cloudrone-flight-bridge --check /etc/cloudrone/flight.yml"
    )
    assert cmd.rc == 0, cmd.stderr


def test_loop_runs_on_the_sim_backend(host):
    first = status(host)
    assert first["running"] is True
    assert first["backend"] == "sim"
    time.sleep(1.0)
    second = status(host)
    # 50 Hz: about 50 frames a second; allow for a loaded machine
    assert second["loop"]["frames"] - first["loop"]["frames"] >= 20


def test_real_time_granted_or_the_refusal_reported(host):
    s = status(host)
    assert s["realtime"]["fifo"] is True or any("FIFO" in w for w in s["warnings"])


def test_frames_recorded_with_pulses_in_the_kk2_range(host):
    before = host.file(FRAMES).size
    time.sleep(0.5)
    assert host.file(FRAMES).size > before
    lines = host.check_output(f"tail -n 50 {FRAMES}").splitlines()
    rows = [line.split(",") for line in lines if not line.startswith("t,")]
    assert len(rows) >= 20
    for row in rows:
        pulses = [int(float(x)) for x in row[2:6]]
        assert all(1000 <= p <= 2000 for p in pulses), row


def test_mavlink_port_listens(host):
    assert host.socket("udp://0.0.0.0:14555").is_listening
