"""`cloudrone_cli mission` end to end: real fleet, provision.yml over SSH, faults, bad input."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest

from cloudrone.bench.lab import wait_until
from cloudrone.fleet import sim
from cloudrone.mission import deploy
from cloudrone.mission.model import load
from cloudrone.mission.plan import fleet_spec
from tests.browser import chromium, record_archive_reads, wait_map_drawn
from tests.conftest import BIN, ROOT, tool

pytestmark = pytest.mark.integration

DEMO = ROOT / "missions" / "demo"
NAME = "itest-demo"
MGMT = {"drone-1": "10.252.0.11", "drone-2": "10.252.0.12", "drone-3": "10.252.0.13"}


def demo_text(key: Path) -> str:
    """The demo mission itself, on networks of its own (the demo may be up beside it)."""
    text = (DEMO / "mission.yml").read_text()
    text = (
        text.replace("mission: demo", f"mission: {NAME}")
        .replace("admin_user: cloudrone", f"admin_user: pilot\nssh_key: {key}")
        .replace("10.250.0.", "10.252.0.")
        .replace("10.42.0.", "10.252.1.")
        .replace("ground: 10.43.0.0/16", "ground: 10.252.64.0/18")
    )
    assert "10.250." not in text and "10.42." not in text and "10.43.0.0" not in text, text
    return text


# The relief camp's map beside the demo's page, on the relay drone: a phone on
# drone-1 reads its tiles across one radio hop.
CAMP_MAP = ROOT / "missions" / "relief-camp" / "maps" / "camp.geojson"
MAP_SERVICE = """\
  - name: map
    build: {recipe: offline-map, content: maps/camp.geojson}
    drones: [drone-2]
    memory: 16M
    memory_limit: 32M
    ports: [{target: 8080, published: 80}]
"""
# The camp board on both ends of the line: cutting drone-2/drone-3 puts one
# copy on each side of the split.
BOARD_SERVICE = """\
  - name: board
    build: {recipe: board}
    replicas: 2
    drones: [drone-1, drone-3]
    memory: 32M
    memory_limit: 48M
    ports: [{target: 8080, published: 8088}]
"""
BOARD = {"drone-1": "10.252.1.11", "drone-3": "10.252.1.13"}
ARTIFACTS = ROOT / "build" / "test-artifacts" / "phone"


# the first format: one drone, no services (still loads)
MISSION = """\
---
mission: itest-v1
target: sim
ssh_key: {key}
networks:
  management: 10.249.0.0/24
  mesh: 10.249.1.0/24
  ground: 10.249.64.0/18
drones:
  - name: solo
    management_address: 10.249.0.21
    mesh_address: 10.249.1.21
    model: pi2
"""


# The CLI's environment. A secret the controller happens to hold must not
# end up in anything a run writes down.
ENV = {"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
SECRET = "vault-pass-5e1f0c2a9d"
STARTED: dict[str, float] = {}


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("cloudrone_cli"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=ENV,
    )


@pytest.fixture(scope="module", autouse=True)
def state_home(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    ENV["CLOUDRONE_STATE_DIR"] = str(state)
    ENV["CLOUDRONE_WPA_PASSPHRASE"] = SECRET
    ENV["ANSIBLE_VAULT_PASSWORD"] = SECRET
    yield state
    for name in ("CLOUDRONE_STATE_DIR", "CLOUDRONE_WPA_PASSPHRASE", "ANSIBLE_VAULT_PASSWORD"):
        ENV.pop(name)


def changed_count(output: str) -> int:
    match = re.search(r"Fleet ready: (\d+) task\(s\) changed", output)
    assert match, output
    return int(match.group(1))


def ssh(key: Path, command: str, *options: str, drone: str = "drone-1"):
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", *options,
         f"pilot@{MGMT[drone]}", command],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def status_json(folder: Path) -> tuple[int, dict]:
    result = cli("mission", "status", "--json", str(folder))
    return result.returncode, json.loads(result.stdout)


OFFLINE_TABLE = "cloudrone_itest_offline"
OFFLINE: dict[str, subprocess.CompletedProcess] = {}


@contextmanager
def package_cache_unreachable():
    """The fleet's drones no longer reach the controller's online apt-cacher-ng
    (port 3142); other fleets (a molecule scenario beside this) still do."""
    nft = ["nft", "-f", "-"]
    rules = (
        f"table inet {OFFLINE_TABLE} {{\n"
        "  chain input { type filter hook input priority -10; policy accept;\n"
        "    ip saddr 10.252.0.0/24 tcp dport 3142 drop\n  }\n}\n"
    )
    subprocess.run(nft, input=rules, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", OFFLINE_TABLE], check=False)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, drone_image):
    """The demo, packed and brought up from its pack once for the whole module,
    with the package cache out of the drones' reach: every check below reads it."""
    folder = tmp_path_factory.mktemp("bundle")
    shutil.copytree(DEMO / "site", folder / "site")
    (folder / "maps").mkdir()
    shutil.copyfile(CAMP_MAP, folder / "maps" / "camp.geojson")
    key = folder / "key"
    (folder / "mission.yml").write_text(demo_text(key) + MAP_SERVICE + BOARD_SERVICE)
    sim.down(NAME, log=lambda _m: None)
    archive = folder.parent / f"{NAME}-pack.tar"
    packed = cli("mission", "pack", str(folder), "-o", str(archive))
    assert packed.returncode == 0, packed.stdout + packed.stderr
    OFFLINE["pack"] = packed
    STARTED["up"] = time.time()
    try:
        with package_cache_unreachable():
            first = cli("mission", "up", "--from", str(archive), timeout=900)
            assert first.returncode == 0, first.stdout + first.stderr
            probe = "timeout 3 bash -c 'echo > /dev/tcp/10.252.0.254/{}' && echo open || echo shut"
            OFFLINE["online"] = ssh(key, probe.format(3142))
            OFFLINE["offline"] = ssh(key, probe.format(3143))
        yield folder, key, first, archive
    finally:
        # also when up failed: its fleet and its offline package cache go
        cli("mission", "down", "--purge", str(folder))
        sim.down(NAME, log=lambda _m: None)


def test_up_ends_with_a_phone_on_every_access_point_fetching_the_page(bundle):
    _, key, first, _ = bundle
    out = " ".join(first.stdout.split())
    assert changed_count(first.stdout) > 0
    for drone in MGMT:
        # the page on drone-3, by name, from each phone: two radio hops from drone-1's
        assert re.search(
            rf"ok cloudrone-{NAME}-phone-{drone}: http://news\.cloudrone\.internal/ -> "
            r"10\.252\.1\.13: HTTP 200, 376 bytes",
            out,
        ), out
    assert f"service {NAME}_news: 1/1 running on drone-3" in out
    assert "ssh -i" in out and "pilot@10.252.0.11" in out
    assert key.exists()


def test_a_phones_internet_check_opens_the_landing_page_of_its_drone(bundle):
    phone = sim.Phone(docker.from_env().containers.get(f"cloudrone-{NAME}-phone-drone-1"))
    # no gateway in the demo: Android's check reaches drone-1 and is sent to the page
    status, location, _ = phone.http("http://connectivitycheck.gstatic.com/generate_204")
    assert [str(status), location] == ["302", "http://welcome.cloudrone.internal/"]
    status, _, page = phone.http("http://welcome.cloudrone.internal/")
    assert status == 200 and "Welcome to relief-camp" in page
    assert '<a href="http://news.cloudrone.internal/">news</a>' in page and "drone-3" in page


def test_a_phone_in_a_browser_goes_from_its_internet_check_to_the_map_across_the_mesh(
    bundle, tmp_path
):
    """Chromium as the phone on drone-1 (its network namespace, its lease, its
    drone's DNS): Android's check opens the landing page, whose link opens the
    map, whose tiles come by range requests from drone-2 across the radio."""
    phone = sim.Phone(docker.from_env().containers.get(f"cloudrone-{NAME}-phone-drone-1"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(executable=str(phone.browser(tmp_path))) as browser:
        page = browser.new_page(viewport={"width": 412, "height": 800})
        archive_reads = record_archive_reads(page)
        page.goto("http://connectivitycheck.gstatic.com/generate_204")
        assert page.url == "http://welcome.cloudrone.internal/"
        page.screenshot(path=ARTIFACTS / "landing-page.png")
        page.get_by_role("link", name="map").first.click()
        page.wait_for_url("http://map.cloudrone.internal/")
        wait_map_drawn(page)
        tents = page.evaluate(
            "window.cloudroneMapObject.queryRenderedFeatures({layers: ['buildings']})"
            ".filter(f => f.properties.kind === 'tent').length"
        )
        page.screenshot(path=ARTIFACTS / "map.png")
    assert tents >= 100, tents
    assert archive_reads, "the map read nothing from its archive"
    for read in archive_reads:
        assert read.status == 206 and read.range.startswith("bytes="), read
        assert read.server == "10.252.1.12", read  # drone-2, across the radio


# What a phone's app does with the board: resolve its name, post a form, read
# the posts (of the replica its name gives it, or of the one at an address).
PHONE_BOARD = r"""
import json, socket, sys, urllib.parse, urllib.request
action, url = sys.argv[1], sys.argv[2]
if action == "resolve":
    host = urllib.parse.urlsplit(url).hostname
    found = socket.getaddrinfo(host, 80, socket.AF_INET, socket.SOCK_STREAM)
    print(json.dumps(sorted({a[4][0] for a in found})))
elif action == "post":
    request = urllib.request.Request(
        url + "post", data=sys.argv[3].encode(), headers={"Accept": "application/json"})
    print(urllib.request.urlopen(request, timeout=5).read().decode())
else:
    print(urllib.request.urlopen(url + action, timeout=5).read().decode())
"""
BOARD_URL = "http://board.cloudrone.internal:8088/"


def board_call(phone: sim.Phone, action: str, url: str = BOARD_URL, form: str = ""):
    """The JSON a phone got, or None when it got nothing."""
    code, out = phone.sh(
        f"python3 -c {shlex.quote(PHONE_BOARD)} {action} {url} {shlex.quote(form)}", timeout=20
    )
    try:
        return json.loads(out.strip().splitlines()[-1]) if code == 0 else None
    except (IndexError, json.JSONDecodeError):
        return None


def board_ids(phone: sim.Phone, drone: str) -> set[str] | None:
    posts = board_call(phone, "posts.json", f"http://{BOARD[drone]}:8088/")
    return None if posts is None else {p["id"] for p in posts["posts"]}


def board_phones() -> dict[str, sim.Phone]:
    client = docker.from_env()
    return {d: sim.Phone(client.containers.get(f"cloudrone-{NAME}-phone-{d}")) for d in BOARD}


def test_a_phone_in_a_browser_posts_to_the_board_and_the_other_copy_has_it(bundle, tmp_path):
    """Chromium as the phone on drone-3: the landing page links the board, the
    phone's post is on the board it sees, then on drone-1's copy too."""
    phones = board_phones()

    def copies_in_reach() -> bool:
        # each copy pulls from the other every few seconds; a fleet just up may
        # not have had its first good round yet
        health = [
            board_call(phones["drone-3"], "health", f"http://{a}:8088/") for a in BOARD.values()
        ]
        return all(h and h["peers"] and all(s["ok"] for s in h["peers"].values()) for h in health)

    assert wait_until(copies_in_reach, timeout=60), (
        "the board's two copies never reached each other"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(executable=str(phones["drone-3"].browser(tmp_path))) as browser:
        page = browser.new_page(viewport={"width": 412, "height": 800})
        page.goto("http://welcome.cloudrone.internal/")
        page.get_by_role("link", name="board").first.click()
        page.wait_for_url(BOARD_URL)
        page.get_by_label("Name").fill("Amina Yusuf")
        page.get_by_label("Where (tent, area)").fill("tent C-12")
        page.get_by_role("button", name="Post").click()
        page.wait_for_url(BOARD_URL)
        safe = page.locator("#safe li").all_inner_texts()
        copy = page.locator("p.meta").inner_text()
        page.screenshot(path=ARTIFACTS / "board.png")
    assert any("Amina Yusuf (tent C-12)" in item for item in safe), safe
    # the copy names its drone (either: the name gives both) and hears the other one
    assert re.search(r"This copy: drone-[13]\. Copies in reach: 1 of 1\.", copy), copy
    # drone-1's copy has it within a few rounds, across two radio hops
    on_one = wait_until(
        lambda: [p for p in (board_call(phones["drone-1"], "posts.json") or {"posts": []})["posts"]
                 if p["name"] == "Amina Yusuf"],
        timeout=30,
    )  # fmt: skip
    assert on_one and on_one[0]["place"] == "tent C-12", on_one


def test_the_board_takes_posts_on_both_sides_of_a_split_and_has_them_all_when_it_heals(bundle):
    folder = bundle[0]
    fleet = sim.SimFleet(fleet_spec(load(folder)), log=lambda _m: None)
    phones = board_phones()
    both = sorted(BOARD.values())
    for phone in phones.values():
        assert wait_until(lambda p=phone: board_call(p, "resolve") == both, timeout=60), (
            f"{phone.name} was not given both copies: {board_call(phone, 'resolve')}"
        )
    fleet.set_range("drone-2", "drone-3", None)  # the split: {drone-1, drone-2} | {drone-3}
    try:
        # each side's names give only the copy on its own side, within seconds
        started = time.monotonic()
        for drone, phone in phones.items():
            assert wait_until(lambda p=phone, d=drone: board_call(p, "resolve") == [BOARD[d]],
                              timeout=45), board_call(phone, "resolve")  # fmt: skip
        SPLIT["names_followed_s"] = round(time.monotonic() - started, 1)
        posted = {}
        for drone, phone in phones.items():
            for j in range(3):
                answer = board_call(phone, "post", form=f"kind=safe&name=split-{drone}-{j}")
                assert answer is not None and answer["name"] == f"split-{drone}-{j}", answer
                posted.setdefault(drone, set()).add(answer["id"])
        # the split is real: neither side has the other's posts
        time.sleep(3)
        assert not posted["drone-3"] & (board_ids(phones["drone-1"], "drone-1") or set())
        assert not posted["drone-1"] & (board_ids(phones["drone-3"], "drone-3") or set())
    finally:
        fleet.set_range("drone-2", "drone-3", 5)  # the heal, as the bundle has the link
    every = posted["drone-1"] | posted["drone-3"]
    started = time.monotonic()
    for drone, phone in phones.items():
        for replica in BOARD:
            assert wait_until(lambda p=phone, r=replica: every <= (board_ids(p, r) or set()),
                              timeout=90), (drone, replica, board_ids(phone, replica))  # fmt: skip
    SPLIT["healed_s"] = round(time.monotonic() - started, 1)
    # drone-3 was a manager cut off from the quorum: the swarm is whole again
    # (every node ready under one leader, every replica running) before the
    # tests after this one read it
    assert wait_until(lambda: fleet_settled(folder), timeout=120), status_json(folder)[1]
    SPLIT["swarm_whole_s"] = round(time.monotonic() - started, 1)
    print(f"board split and heal: {SPLIT}")


def fleet_settled(folder: Path) -> bool:
    code, status = status_json(folder)
    return (
        code == 0
        and status["swarm"]["leader"] is not None
        and all(d["mesh"] and d["swarm"]["status"] == "ready" for d in status["drones"])
        and all(s["running"] == s["desired"] for s in status["services"].values())
    )


SPLIT: dict[str, float] = {}


def test_run_state_stays_out_of_the_bundle_and_holds_no_secret(bundle, state_home):
    folder, _, _, _ = bundle
    # the bundle holds what the operator put there, and nothing a run wrote
    assert sorted(p.name for p in folder.iterdir()) == [
        "key",
        "key.pub",
        "maps",
        "mission.yml",
        "site",
    ]
    state = state_home / "missions" / NAME
    assert (state / "inventory.yml").is_file()
    assert (state / "images" / "news.tar").is_file()  # the page's image, built here
    records = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in records)  # ansible-runner's record of the run
    assert any(p.name == "stdout" for p in records)  # and the run's full log
    flight = state / "flight"
    passphrase = (flight / "passphrase").read_bytes().strip()
    hex_key = (flight / "signing.key").read_bytes().strip()
    for path in records:
        assert SECRET.encode() not in path.read_bytes(), f"{path} holds the controller's secret"
        if path.parent != flight:
            assert passphrase not in path.read_bytes(), f"{path} holds the flight passphrase"
            assert hex_key not in path.read_bytes(), f"{path} holds the flight key"


# --- Who may fly: strangers on the mesh and on the management link, the pilot ---------

GS = "10.252.0.254"  # the ground station's address: the controller's, on the management link
MESH = {"drone-1": "10.252.1.11", "drone-2": "10.252.1.12", "drone-3": "10.252.1.13"}


def bridge_status(drone: str) -> dict:
    c = docker.from_env().containers.get(f"cloudrone-{NAME}-{drone}")
    r = c.exec_run(["cat", "/run/cloudrone/flight-status.json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def control_frames(system_id: int, key: bytes | None = None) -> bytes:
    """What a pilot sends to arm: sticks (throttle zero) and ARM, signed with ``key`` or not."""
    from pymavlink.dialects.v20 import ardupilotmega as mavlink

    mav = mavlink.MAVLink(None, srcSystem=255, srcComponent=190)
    if key is not None:
        mav.signing.secret_key = key
        mav.signing.sign_outgoing = True
        mav.signing.timestamp = int((time.time() - 1420070400) * 100_000)
    arm = mavlink.MAV_CMD_COMPONENT_ARM_DISARM
    return mav.manual_control_encode(system_id, 0, 0, 0, 0, 0).pack(mav) + mav.command_long_encode(
        system_id, 1, arm, 0, 1, 0, 0, 0, 0, 0, 0
    ).pack(mav)


def drone_mac(drone: str, link: str) -> str:
    c = docker.from_env().containers.get(f"cloudrone-{NAME}-{drone}")
    return c.attrs["NetworkSettings"]["Networks"][f"cloudrone-{NAME}-{link}"]["MacAddress"]


STRANGER_SEND = (
    "import socket, sys, time\n"
    "src, dst, data = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind((src, 14550))\n"
    "for _ in range(50):\n"
    "    s.sendto(data, (dst, 14555)); time.sleep(0.04)\n"
)


def stranger_sends(stranger: sim.Phone, dst: str, data: bytes) -> None:
    code, out = stranger.sh(
        f"python3 -c {shlex.quote(STRANGER_SEND)} {GS} {dst} {data.hex()}", timeout=30
    )
    assert code == 0, out


def test_a_stranger_who_takes_the_ground_stations_address_flies_no_drone(bundle, drone_image):
    """Tried on this fleet before signing was the default: a container on the mesh that
    took the ground station's address armed every drone with unsigned COMMAND_LONG."""
    folder, _, _, _ = bundle
    spec = fleet_spec(load(folder))
    before = {d: bridge_status(d) for d in MGMT}
    assert all(s["mavlink"]["signing"] for s in before.values()), before
    assert all(s["mode"] == "disarmed" for s in before.values())
    on_mesh = sim.add_phone(spec, "mesh", "stranger-mesh", drone_image)
    on_mgmt = sim.add_phone(spec, "mgmt", "stranger-mgmt", drone_image)
    try:
        # On the mesh, with the ground station's address (it answers no ARP for it:
        # its neighbours are written in by hand, so it poisons no drone's cache).
        code, out = on_mesh.sh(f"ip addr add {GS}/32 dev eth0")
        assert code == 0, out
        for i, drone in enumerate(MGMT, 1):
            mac = drone_mac(drone, "mesh")
            code, out = on_mesh.sh(
                f"ip neigh replace {MESH[drone]} lladdr {mac} dev eth0 nud permanent && "
                f"ip route replace {MGMT[drone]}/32 via {MESH[drone]} dev eth0"
            )
            assert code == 0, out
            # the path is there: the drone answers a ping to its management address
            code, out = on_mesh.sh(f"busybox ping -c 1 -W 3 {MGMT[drone]}")
            assert code == 0, out
            stranger_sends(on_mesh, MGMT[drone], control_frames(i))
        # nothing of it reached a bridge: the management link is the only way in
        for drone in MGMT:
            s = bridge_status(drone)
            assert s["mode"] == "disarmed", (drone, s)
            assert (
                s["mavlink"]["rejected_unsigned"] == before[drone]["mavlink"]["rejected_unsigned"]
            ), (drone, s["mavlink"])

        # On the management link itself, the same address, unsigned and wrongly signed.
        code, out = on_mgmt.sh(
            f"ip addr add {GS}/32 dev eth0 && "
            f"ip neigh replace {MGMT['drone-1']} lladdr {drone_mac('drone-1', 'mgmt')} "
            "dev eth0 nud permanent"
        )
        assert code == 0, out
        stranger_sends(on_mgmt, MGMT["drone-1"], control_frames(1))
        stranger_sends(on_mgmt, MGMT["drone-1"], control_frames(1, key=bytes(32)))
        s = bridge_status("drone-1")
        m, was = s["mavlink"], before["drone-1"]["mavlink"]
        assert s["mode"] == "disarmed", s
        assert m["rejected_unsigned"] >= was["rejected_unsigned"] + 50, m
        assert m["rejected_bad_signature"] >= was["rejected_bad_signature"] + 50, m
        assert m["commands"] == was["commands"] and m["manual_control"] == was["manual_control"]
    finally:
        on_mesh.remove()
        on_mgmt.remove()


def test_the_pilot_with_the_missions_key_flies_a_drone(bundle, state_home):
    """The key mission up made (never in the bundle), where `mission ground-station` says."""
    import socket
    import threading

    from pymavlink.dialects.v20 import ardupilotmega as mavlink

    folder, _, _, _ = bundle
    key_file = state_home / "missions" / NAME / "flight" / "signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    shown = cli("mission", "ground-station", str(folder))
    assert shown.returncode == 0 and str(key_file) in " ".join(shown.stdout.split())
    key = bytes.fromhex(key_file.read_text().strip())
    assert key.hex() not in shown.stdout
    mav = mavlink.MAVLink(None, srcSystem=255, srcComponent=190)
    mav.signing.secret_key, mav.signing.sign_outgoing = key, True
    mav.signing.timestamp = int((time.time() - 1420070400) * 100_000)
    arm = mavlink.MAV_CMD_COMPONENT_ARM_DISARM
    stop, lock = threading.Event(), threading.Lock()
    was = bridge_status("drone-1")["mavlink"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gs:
        gs.bind((GS, 14550))  # where the bridges speak to their ground station

        def send(msg) -> None:  # type: ignore[no-untyped-def]
            with lock:
                gs.sendto(msg.pack(mav), (MGMT["drone-1"], 14555))

        def sticks() -> None:  # the pilot's stream, throttle at zero, 25 Hz
            while not stop.wait(0.04):
                send(mav.manual_control_encode(1, 0, 0, 0, 0, 0))

        pilot = threading.Thread(target=sticks, daemon=True)
        pilot.start()
        try:
            assert wait_until(lambda: bridge_status("drone-1")["pilot_link"], 15), "pilot link"
            send(mav.command_long_encode(1, 1, arm, 0, 1, 0, 0, 0, 0, 0, 0))
            assert wait_until(lambda: bridge_status("drone-1")["mode"] == "armed", 15), "armed"
            assert bridge_status("drone-2")["mode"] == "disarmed"  # system 1 alone
            send(mav.command_long_encode(1, 1, arm, 0, 0, 0, 0, 0, 0, 0, 0))
            assert wait_until(lambda: bridge_status("drone-1")["mode"] == "disarmed", 15)
        finally:
            stop.set()
            pilot.join(timeout=2)
    m = bridge_status("drone-1")["mavlink"]
    assert m["commands"] == was["commands"] + 2  # both taken
    for counter in ("rejected_bad_signature", "rejected_unsigned", "rejected_replay"):
        assert m[counter] == was[counter], (counter, m)  # none of the pilot's refused


def test_operator_logs_in_with_the_key_and_becomes_root(bundle):
    _, key, _, _ = bundle
    result = ssh(key, "hostname; sudo -n id -u", drone="drone-3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["drone-3", "0"]


def test_password_login_is_refused(bundle):
    _, key, _, _ = bundle
    result = ssh(
        key, "true", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"
    )
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_status_json_shows_the_line_the_swarm_and_the_service(bundle):
    folder, _, _, _ = bundle
    code, status = status_json(folder)
    assert code == 0, status
    drones = {d["name"]: d for d in status["drones"]}
    assert all(d["reachable"] and d["container"] == "running" for d in drones.values())
    hears = {
        name: sorted(n["drone"] for n in d["mesh"]["neighbors"] if n["symmetric"])
        for name, d in drones.items()
    }
    assert hears == {"drone-1": ["drone-2"], "drone-2": ["drone-1", "drone-3"],
                     "drone-3": ["drone-2"]}  # fmt: skip
    # drone-1 reaches drone-3 through drone-2, and drone-2 relays for both ends
    route = next(r for r in drones["drone-1"]["mesh"]["routes"]
                 if r["destination"] == "10.252.1.13")  # fmt: skip
    assert route["gateway"] == "10.252.1.12" and route["metric"] == 2
    assert drones["drone-1"]["mesh"]["mpr"]["mprs"] == ["10.252.1.12"]
    assert [d["swarm"]["role"] for d in drones.values()] == ["manager"] * 3
    assert status["swarm"]["leader"] in MGMT
    assert status["services"] == {
        f"{NAME}_news": {"running": 1, "desired": 1, "drones": ["drone-3"]},
        f"{NAME}_map": {"running": 1, "desired": 1, "drones": ["drone-2"]},
        f"{NAME}_board": {"running": 2, "desired": 2, "drones": ["drone-1", "drone-3"]},
    }
    assert sorted(drones["drone-3"]["services"]) == [f"{NAME}_board", f"{NAME}_news"]
    assert drones["drone-2"]["services"] == [f"{NAME}_map"]
    assert drones["drone-1"]["services"] == [f"{NAME}_board"]
    assert all(d["access_point"]["phones"] == 1 for d in drones.values())
    flight = drones["drone-2"]["flight"]
    assert flight["mode"] == "disarmed" and flight["battery"]["voltage"] == pytest.approx(12.4)


def test_the_mesh_is_drawn_for_an_operator_who_would_rather_look(bundle, tmp_path):
    folder, _, _, _ = bundle
    picture = tmp_path / "mesh.svg"
    result = cli("mission", "status", "--picture", str(picture), str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    svg = picture.read_text()
    # the three drones, the measured cost of each link, the page under drone-3
    assert all(name in svg for name in MGMT), svg[:500]
    assert len(re.findall(r"ETX \d\.\d\d", svg)) == 2
    assert "news" in svg


def test_a_key_that_locks_the_operator_out_is_rolled_back(bundle, state_home, tmp_path):
    _, key, _, _ = bundle
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    wrong_pub = (tmp_path / "wrong.pub").read_text().strip()
    state = state_home / "missions" / NAME

    def playbook(*args: str) -> tuple[int, str]:
        result = subprocess.run(
            [tool("ansible-playbook"), "-i", str(state / "inventory.yml"), "provision.yml",
             "--tags", "base", "--limit", "drone-1", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
            env={**ENV, "PATH": f"{BIN}:{ENV['PATH']}", "ANSIBLE_NOCOLOR": "1",
                 "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(state / "facts")},
        )  # fmt: skip
        return result.returncode, " ".join((result.stdout + result.stderr).split())

    rc, output = playbook("-e", json.dumps({
        "base_admin_authorized_keys": [wrong_pub],
        "base_ssh_guard_timeout": 8, "base_ssh_rollback_after": 20}))  # fmt: skip
    assert rc != 0, output[-3000:]
    assert "a fresh SSH connection with the operator's key could not get in" in output
    assert "The drone restored the settings it had before" in output
    # the operator's key gets in again, the wrong one is gone, and the drone says what it did
    guard_log = "/var/lib/cloudrone/ssh-guard/rollbacks.log"
    back = ssh(key, f"cat ~/.ssh/authorized_keys; sudo -n cat {guard_log}")
    assert back.returncode == 0, back.stderr
    assert (Path(str(key) + ".pub")).read_text().split()[1] in back.stdout
    assert wrong_pub.split()[1] not in back.stdout
    assert "restored the settings the operator last got in with" in back.stdout
    # and the drone is exactly as provisioned before
    rc, output = playbook("--check")
    assert rc == 0, output[-3000:]
    assert re.search(r"drone-1 : ok=\d+ changed=0 unreachable=0 failed=0", output), output[-2000:]


def test_packages_came_from_the_pack_with_the_package_cache_out_of_reach(bundle, state_home):
    # the pack: the bundle, the built image, the drones' Python bundle, Debian packages
    packed = " ".join(OFFLINE["pack"].stdout.split())
    assert re.search(r"bookworm/x86_64: \d{3} packages", packed), packed
    assert re.search(r"Packed \S+: \d+ files, \d+ MB", packed), packed
    # during up the drones reached the offline cache and not the online one
    assert OFFLINE["online"].stdout.strip() == "shut", OFFLINE["online"]
    assert OFFLINE["offline"].stdout.strip() == "open", OFFLINE["offline"]

    def clients(log: Path, package: str) -> set[str]:
        # apt-cacher-ng's log names each client it served a file to
        lines = [line.split("|") for line in log.read_text().splitlines() if line.count("|") >= 4]
        return {
            f[3]
            for f in lines
            if int(f[0]) >= int(STARTED["up"]) and f[1] == "O" and f"/{package}_" in f[4]
        }

    offline_log = state_home / "missions" / NAME / "apt-cacher-ng" / "apt-cacher.log"
    for package in ("chrony", "docker.io", "hostapd"):
        assert set(MGMT.values()) <= clients(offline_log, package), package
    online_log = Path("/var/log/apt-cacher-ng/apt-cacher.log")
    if online_log.exists():
        assert not set(MGMT.values()) & clients(online_log, "chrony")


def test_a_damaged_pack_is_refused_before_anything_changes(bundle, tmp_path):
    _, _, _, archive = bundle
    damaged = tmp_path / "damaged.tar"
    data = bytearray(archive.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    damaged.write_bytes(bytes(data))
    result = cli("mission", "up", "--from", str(damaged))
    assert result.returncode == 2, result.stdout + result.stderr
    assert re.search(r"does not match its checksum|cannot be (read|unpacked)", result.stderr)
    assert "nothing was changed" in " ".join(result.stderr.split())


def test_a_lost_manager_is_reported_the_page_stays_up_and_a_second_up_heals_it(bundle):
    """The second up of the module: after a manager's loss it starts the drone
    again, which rejoins as it was, so the run changes nothing and says so."""
    folder, key, _, archive = bundle
    marker = ssh(key, "sudo -n sh -c 'echo payload > /var/lib/cloudrone-itest-marker'")
    assert marker.returncode == 0, marker.stderr
    client = docker.from_env()
    client.containers.get(f"cloudrone-{NAME}-drone-1").kill()
    lost = cli("mission", "status", str(folder))
    assert lost.returncode == 1
    assert re.search(r"drone-1\s.*no answer \(container exited\)", lost.stdout), lost.stdout
    code, status = status_json(folder)
    assert code == 1
    reachable = {d["name"]: d["reachable"] for d in status["drones"]}
    assert reachable == {"drone-1": False, "drone-2": True, "drone-3": True}
    # two managers of three keep the swarm, and a phone on drone-2 still gets the page
    mission = load(folder)
    phone = sim.Phone(client.containers.get(f"cloudrone-{NAME}-phone-drone-2"))
    # within the names' round (2 s) and TTL (5 s): a knock lost while the swarm
    # reshuffles may leave the name out for one round
    fetched = wait_until(
        lambda: (f := deploy.fetch(phone, mission, "drone-2", mission.services[0])).ok and f,
        timeout=20,
    ) or deploy.fetch(phone, mission, "drone-2", mission.services[0])
    assert fetched.ok and fetched.detail["status"] == 200, fetched.line()
    _, status = status_json(folder)
    assert status["services"][f"{NAME}_news"]["running"] == 1
    # the next up starts drone-1 again; it rejoins with its configuration intact
    back = cli("mission", "up", "--from", str(archive))
    assert back.returncode == 0, back.stdout + back.stderr
    assert changed_count(back.stdout) == 0
    assert "Nothing to change: every drone is as the bundle says." in back.stdout
    assert ssh(key, "cat /var/lib/cloudrone-itest-marker").stdout.strip() == "payload"
    assert f"ok cloudrone-{NAME}-phone-drone-1: http://news.cloudrone.internal/" in " ".join(
        back.stdout.split()
    )
    code, status = status_json(folder)
    assert code == 0
    assert all(d["swarm"]["status"] == "ready" for d in status["drones"])


def test_down_removes_the_services_and_purge_the_fleet(bundle):
    folder, _, _, _ = bundle
    down = cli("mission", "down", str(folder))
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"Mission {NAME}: services removed" in down.stdout

    def gone() -> bool:
        return status_json(folder)[1]["services"] == {}

    assert wait_until(gone, 30)
    purge = cli("mission", "down", "--purge", str(folder))
    assert purge.returncode == 0, purge.stdout + purge.stderr
    label = {"label": f"{sim.LABEL_FLEET}={NAME}"}
    assert docker.from_env().containers.list(all=True, filters=label) == []
    assert docker.from_env().networks.list(filters=label) == []


def test_bad_bundle_is_explained_and_changes_nothing(tmp_path, docker_engine):
    text = (
        MISSION.format(key=tmp_path / "k")
        .replace("itest-v1", "itest-bad")
        .replace("mesh_address: 10.249.1.21", "mesh_address: 10.249.9.21")
    )
    (tmp_path / "mission.yml").write_text(text)
    result = cli("mission", "up", str(tmp_path))
    assert result.returncode == 2
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "10.249.9.21" in ln)
    assert (
        f"{tmp_path}/mission.yml:{line} drones[0].mesh_address: 10.249.9.21 is not a usable host "
        "address in 10.249.1.0/24" in " ".join(result.stderr.split())
    )
    client = docker.from_env()
    label = {"label": f"{sim.LABEL_FLEET}=itest-bad"}
    assert client.containers.list(all=True, filters=label) == []
    assert client.networks.list(filters=label) == []
    assert not (tmp_path / "k").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mission.yml"]


def test_a_missing_secret_stops_up_before_anything_changes(tmp_path, docker_engine):
    shutil.copytree(DEMO / "site", tmp_path / "site")
    text = demo_text(tmp_path / "k").replace(f"mission: {NAME}", "mission: itest-secret")
    text = text.replace("security: open", "security: wpa2\n  passphrase_env: ITEST_NO_SUCH_VAR")
    (tmp_path / "mission.yml").write_text(text)
    result = cli("mission", "up", str(tmp_path))
    assert result.returncode == 2
    assert "access_point.passphrase_env: $ITEST_NO_SUCH_VAR is not set" in result.stderr
    label = {"label": f"{sim.LABEL_FLEET}=itest-secret"}
    assert docker.from_env().containers.list(all=True, filters=label) == []


def test_check_mode_creates_no_drones(tmp_path, docker_engine):
    (tmp_path / "mission.yml").write_text(
        MISSION.format(key=tmp_path / "k").replace("itest-v1", "itest-dry")
    )
    result = cli("mission", "up", "--check", str(tmp_path))
    assert result.returncode == 2
    assert "solo would be created or started" in " ".join(result.stderr.split())
    label = {"label": f"{sim.LABEL_FLEET}=itest-dry"}
    assert docker.from_env().containers.list(all=True, filters=label) == []
    assert docker.from_env().networks.list(filters=label) == []


def test_down_on_real_drones_that_do_not_answer_removes_nothing(tmp_path, docker_engine):
    # a real drone at this machine's own loopback: nobody there manages a swarm
    text = MISSION.format(key=tmp_path / "k").replace("target: sim", "target: ssh")
    (tmp_path / "mission.yml").write_text(text.replace("10.249.0.21", "localhost"))
    result = cli("mission", "down", str(tmp_path))
    assert result.returncode == 1
    assert "no manager of itest-v1's swarm answers; nothing was removed" in " ".join(
        result.stderr.split()
    )


def test_plan_before_the_fleet_exists_shows_placement_and_changes_nothing(tmp_path, docker_engine):
    shutil.copytree(DEMO / "site", tmp_path / "site")
    text = demo_text(tmp_path / "k").replace(f"mission: {NAME}", "mission: itest-plan")
    (tmp_path / "mission.yml").write_text(text)
    result = cli("mission", "plan", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert re.search(r"news .*built here \(tinyweb\) .*spread .*1 .*drone-3 .*"
                     r"news\.cloudrone\.internal :80", out), out  # fmt: skip
    assert "drone-1, drone-2, drone-3 would be created or started" in out
    label = {"label": f"{sim.LABEL_FLEET}=itest-plan"}
    assert docker.from_env().containers.list(all=True, filters=label) == []
    assert not (tmp_path / "k").exists()
