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


def main_pid(host) -> int:
    pid = int(host.check_output("systemctl show -p MainPID --value cloudrone-flight-bridge"))
    assert pid > 0
    return pid


def proc_status(host, pid: int) -> dict:
    out = {}
    for line in host.file(f"/proc/{pid}/status").content_string.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


CAP_IPC_LOCK = 14
CAP_SYS_NICE = 23


def test_runs_as_its_own_user_not_root(host):
    user = host.user("cloudrone-flight")
    assert user.exists and user.uid != 0
    assert user.shell == "/usr/sbin/nologin"
    status = proc_status(host, main_pid(host))
    uids = status["Uid"].split()
    assert set(uids) == {str(user.uid)}, uids  # real, effective, saved, fs
    assert status["NoNewPrivs"] == "1"


def test_holds_only_the_capabilities_it_needs(host):
    status = proc_status(host, main_pid(host))
    wanted = (1 << CAP_IPC_LOCK) | (1 << CAP_SYS_NICE)
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[field], 16) == wanted, (field, status[field])


def test_fifo_still_granted_to_the_unprivileged_bridge(host):
    # The root-only ExecStartPre (+) handed RT time down to the unit's cgroup;
    # CAP_SYS_NICE lets the bridge's user take SCHED_FIFO with it.
    s = status(host)
    assert s["realtime"]["fifo"] is True, s["realtime"]
    policy = host.check_output(f"chrt -p {main_pid(host)}")
    assert "SCHED_FIFO" in policy, policy
    assert s["realtime"]["memory_locked"] is True, s["realtime"]


def test_listens_on_the_management_address_only(host):
    s = status(host)
    listen = s["mavlink"]["listen"]
    assert not listen.startswith("0.0.0.0:")
    assert host.socket(f"udp://{listen}").is_listening
    assert not host.socket("udp://0.0.0.0:14555").is_listening


def test_only_the_ground_station_may_fly(host):
    # by default the management network's last host address: the controller's
    s = status(host)
    assert s["mavlink"]["allowed_senders"] == ["10.251.0.254/32"]
    fragment = host.file("/etc/cloudrone/firewall.d/30-flight-bridge.nft")
    assert fragment.exists and "10.251.0.254" in fragment.content_string
    ruleset = host.check_output("nft list set inet cloudrone ground_stations")
    assert "10.251.0.254" in ruleset


def test_the_flight_port_is_reached_on_the_management_link_alone(host):
    # the interface holding the management address, and no other
    addresses = json.loads(host.check_output("ip -j -4 addr show"))
    management = [
        a["ifname"]
        for a in addresses
        for info in a["addr_info"]
        if info["local"].startswith("10.251.0.")
    ]
    assert len(management) == 1, addresses
    flight_ifaces = host.check_output("nft -j list set inet cloudrone flight_ifaces")
    elements = json.loads(flight_ifaces)["nftables"][1]["set"].get("elem", [])
    assert elements == management


def test_reverse_path_filtering_is_strict(host):
    for key in ("all", "default"):
        assert host.file(f"/proc/sys/net/ipv4/conf/{key}/rp_filter").content_string.strip() == "1"


def test_the_sandbox_is_on(host):
    props = host.check_output(
        "systemctl show -p ProtectSystem -p ProtectHome -p PrivateTmp -p NoNewPrivileges "
        "-p User cloudrone-flight-bridge"
    )
    for expected in (
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "User=cloudrone-flight",
    ):
        assert expected in props.splitlines(), props


def test_status_and_frames_written_by_the_bridge_user(host):
    for path in (STATUS, FRAMES):
        assert host.file(path).user == "cloudrone-flight"


def test_signed_where_a_key_is_given_unsigned_only_by_the_explicit_word(host):
    # drone-m1 has the scenario's key; drone-m2 says flight_bridge_allow_unsigned
    key = host.file("/etc/cloudrone/flight-signing.key")
    config = host.file("/etc/cloudrone/flight.yml").content_string
    signed = host.backend.get_hostname() == "drone-m1"
    assert status(host)["mavlink"]["signing"] is signed
    if signed:
        assert key.exists and key.mode == 0o600 and key.user == "cloudrone-flight"
        assert "signing_key_file: /etc/cloudrone/flight-signing.key" in config
    else:
        assert not key.exists
        assert "signing_key_file" not in config
