"""Bundle version 2: radio, access point, gateways, services; what the checker
catches, how the bundle becomes an inventory and a fleet, and that no bundle
whatsoever makes the loader fail in any way but a list of problems."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudrone.mission import schema
from cloudrone.mission.model import MissionError, load, missing_secrets
from cloudrone.mission.picture import draw, layers
from cloudrone.mission.plan import fleet_spec, placement, render_inventory, swarm_services
from tests.conftest import ROOT, tool

DEMO_DIR = ROOT / "missions" / "demo"
DEMO = (DEMO_DIR / "mission.yml").read_text()


def bundle(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "bundle"
    if not folder.exists():
        shutil.copytree(DEMO_DIR, folder)
    (folder / "mission.yml").write_text(text)
    return folder


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(MissionError) as caught:
        load(bundle(tmp_path, text))
    return caught.value.problems


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def docker_archive(path: Path, tag: str) -> Path:
    """A file in docker save's layout holding ``tag`` (its manifest is what is read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = json.dumps([{"Config": "abc123.json", "RepoTags": [tag], "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return path


def test_the_demo_tells_the_whole_story():
    mission = load(DEMO_DIR)
    assert mission.version == 2
    # three Pi 2 drones in a line: drone-1 and drone-3 never hear each other
    assert [d.model for d in mission.drones] == ["pi2"] * 3
    pairs = {tuple(sorted(p)) for p in mission.radio.in_range}
    assert pairs == {("drone-1", "drone-2"), ("drone-2", "drone-3")}
    (news,) = mission.services
    assert news.drones == ("drone-3",) and news.build is not None
    assert news.build[1] == (DEMO_DIR / "site").resolve()
    assert [(p.target, p.published) for p in news.ports] == [(8080, 80)]
    assert [d.swarm_role for d in mission.drones] == ["manager"] * 3


def test_the_demo_renders_services_names_radio_and_labels():
    mission = load(DEMO_DIR)
    inv = yaml.safe_load(render_inventory(mission))
    v = inv["drones"]["vars"]
    (svc,) = v["cloudrone_swarm_services"]
    assert svc["name"] == "news" and svc["replicas"] == 1
    assert svc["constraints"] == ["node.labels.cloudrone.serves.news==true"]
    assert "docker_archive_images" in svc["image"]  # the built archive's tag, read by Ansible
    assert v["cloudrone_services"] == [
        {"name": "news", "address": "10.42.0.13", "port": 80, "protocol": "tcp", "drone": "drone-3"}
    ]
    assert v["cloudrone_image_archives"][0]["path"].endswith("/missions/demo/images/news.tar")
    hosts = inv["drones"]["hosts"]
    assert hosts["drone-3"]["cloudrone_labels"] == {
        "zone": "north",
        "cloudrone.serves.news": "true",
    }
    assert "cloudrone_labels" not in hosts["drone-1"]
    assert (v["mesh_olsr_profile"], v["mesh_link_quality"], v["mesh_channel"]) == ("fast", "etx", 1)
    assert v["access_point_ssid"] == "relief-camp" and v["access_point_security"] == "open"
    assert "access_point_passphrase" not in v
    spec = fleet_spec(mission)
    assert spec.radio is not None
    assert spec.radio.loss("drone-1", "drone-2") == 0
    assert spec.radio.loss("drone-2", "drone-3") == 5
    assert spec.radio.loss("drone-1", "drone-3") is None


def test_secrets_come_from_the_environment_never_from_the_bundle(tmp_path, monkeypatch):
    text = DEMO.replace("security: open", "security: wpa2\n  passphrase: hunter2hunter2")
    (problem,) = problems(tmp_path, text)
    assert f":{line_of(text, 'passphrase: hunter2')} access_point.passphrase:" in problem
    assert "never goes in the bundle in clear" in problem and "passphrase_env" in problem

    text = DEMO.replace("security: open", "security: wpa2\n  passphrase_env: CAMP_WIFI")
    mission = load(bundle(tmp_path, text))
    monkeypatch.delenv("CAMP_WIFI", raising=False)
    (missing,) = missing_secrets(mission)
    assert "access_point.passphrase_env: $CAMP_WIFI is not set" in missing
    monkeypatch.setenv("CAMP_WIFI", "short")
    assert "holds 5 characters" in missing_secrets(mission)[0]
    monkeypatch.setenv("CAMP_WIFI", "a-long-enough-passphrase")
    assert missing_secrets(mission) == []
    v = yaml.safe_load(render_inventory(mission))["drones"]["vars"]
    # the inventory names the variable; the passphrase itself is read at run time
    assert v["access_point_passphrase"] == "{{ lookup('ansible.builtin.env', 'CAMP_WIFI') }}"
    assert "a-long-enough-passphrase" not in render_inventory(mission)


def test_an_image_must_be_on_board(tmp_path):
    text = DEMO.replace(
        "    build:\n      recipe: tinyweb\n      content: site\n", "    image: camp/news:1\n"
    )
    (problem,) = problems(tmp_path, text)
    assert f":{line_of(text, 'image: camp/news:1')} services[0].image:" in problem
    assert "is in no archive of" in problem and "docker save" in problem
    docker_archive(tmp_path / "bundle" / "images" / "news.tar", "camp/news:1")
    mission = load(tmp_path / "bundle")
    assert mission.services[0].image == "camp/news:1"
    inv = yaml.safe_load(render_inventory(mission))["drones"]["vars"]
    assert inv["cloudrone_image_archives"] == [
        {"path": str((tmp_path / "bundle" / "images" / "news.tar").resolve())}
    ]


def test_a_registry_serves_images_under_its_name(tmp_path):
    text = DEMO.replace(
        "    build:\n      recipe: tinyweb\n      content: site\n",
        "    image: 10.250.0.254:5000/camp/news:1\n",
    ).replace("services:\n", "registry:\n  address: 10.250.0.254:5000\nservices:\n", 1)
    mission = load(bundle(tmp_path, text))
    assert mission.registry is not None and mission.registry.address == "10.250.0.254:5000"


# A corpus of broken bundles: (what is changed, what is said about it, the
# field reported). Each is the demo with one mistake.
BROKEN = [
    ("version: 2", "version: 3", "version", "write version: 2"),
    ("version: 2\n", "", "radio", "is a version 2 field; add version: 2"),
    ("  channel: 1\n", "  channel: 14\n", "radio.channel", "channel 14 is not one a drone"),
    ("  channel: 6\n", "  channel: 52\n", "access_point.channel", "pick one of 1-13 (2.4 GHz)"),
    ("  country: GB", "  country: gb", "radio.country", "ISO 3166 country code"),
    ("between: [drone-2, drone-3]", "between: [drone-2, drone-9]", "radio.range[1].between",
     "no drone named drone-9"),
    ("between: [drone-2, drone-3]", "between: [drone-2, drone-1]", "radio.range[1].between",
     "are already listed"),
    ("      loss: 5\n", "      loss: 100\n", "radio.range[1].loss", "percent of frames lost"),
    ("    - between: [drone-2, drone-3]\n      loss: 5\n", "", "radio.range",
     "2 groups that never hear each other (drone-1, drone-2 | drone-3)"),
    ("target: sim", "target: ssh", "radio.range", "range is for simulated fleets"),
    ("    model: pi2\n    labels:", "    model: pi2\n    swarm_role: worker\n    labels:", "drones",
     "2 drones manage the swarm"),
    ("drones: [drone-3]", "drones: [drone-4]", "services[0].drones", "no drone named drone-4"),
    ("    memory: 16M\n", "    memory: 900M\n", "services[0].memory", "fits on no drone"),
    ("    memory: 16M\n", "    memory: lots\n", "services[0].memory", "is not a size"),
    ("    memory_limit: 32M\n", "    memory_limit: 8M\n", "services[0].memory_limit",
     "below the reservation"),
    ("published: 80", "published: 22", "services[0].ports[0].published", "tcp 22 is SSH"),
    ("published: 80", "published: 14550, protocol: udp", "services[0].ports[0].published",
     "the flight bridge's MAVLink"),
    ("    replicas: 1\n", "    replicas: 2\n", "services[0].replicas",
     "2 replicas publishing a port need 2 drones"),
    ("      content: site\n", "      content: ../../etc\n", "services[0].build.content",
     "not a folder inside the bundle"),
    ("      recipe: tinyweb\n", "      recipe: nginx\n", "services[0].build.recipe", "tinyweb"),
    ("    dns: news\n", "    dns: News!\n", "services[0].dns", "lower-case letters"),
    ("    dns: news\n", "    dns: welcome\n", "services[0].dns", "is the landing page's name"),
    ("    replicas: 1\n", "    replicas: 1\n    placement: binpack\n", "services[0].drones",
     "binpack chooses the drones itself"),
    ("access_point:\n", "gateways:\n  - {drone: drone-1, metric: 1}\n  - {drone: drone-2, "
     "metric: 1}\naccess_point:\n", "gateways[1].metric", "metric 1 is already drone-1's"),
    ("access_point:\n", "gateways:\n  - {drone: drone-7}\naccess_point:\n", "gateways[0].drone",
     "no drone named drone-7"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "field", "said"), BROKEN, ids=[b[2] for b in BROKEN])
def test_a_broken_bundle_is_named_by_file_line_and_field(tmp_path, old, new, field, said):
    assert old in DEMO, old
    text = DEMO.replace(old, new, 1)
    found = problems(tmp_path, text)
    file = f"{tmp_path}/bundle/mission.yml:"
    assert any(p.startswith(file) and f" {field}: " in p and said in p for p in found), found


def test_two_services_on_one_port_may_not_meet_on_a_drone(tmp_path):
    second = (
        "  - name: board\n    build: {recipe: tinyweb}\n    drones: [drone-3]\n"
        "    ports: [{target: 8080, published: 80}]\n"
    )
    found = problems(tmp_path, DEMO + second)
    assert any("services[1].ports[0].published: tcp 80 is already published by news" in p
               for p in found), found  # fmt: skip
    # on another drone, the same port is fine
    load(bundle(tmp_path, DEMO + second.replace("[drone-3]", "[drone-2]")))


BOARD = (
    "  - name: board\n    build: {recipe: board}\n    replicas: 2\n    drones: [drone-1, drone-3]\n"
    "    ports: [{target: 8080, published: 8088}]\n"
)


def test_the_boards_replicas_know_each_other_by_mesh_address_and_keep_a_volume(tmp_path):
    mission = load(bundle(tmp_path, DEMO + BOARD))
    (entry,) = [s for s in swarm_services(mission) if s["name"] == "board"]
    peers = "drone-1=10.42.0.11:8088,drone-3=10.42.0.13:8088"
    assert entry["environment"] == {"BOARD_PEERS": peers, "BOARD_PORT": "8080"}
    assert entry["volumes"] == ["board-data:/data"] and entry["hostname_from_node"]
    assert entry["constraints"] == ["node.labels.cloudrone.serves.board==true"]


@pytest.mark.parametrize(
    ("old", "new", "field", "said"),
    [
        ("build: {recipe: board}", "build: {recipe: board, content: site}",
         "services[1].build.content", "takes no content; drop content"),
        ("    ports: [{target: 8080, published: 8088}]\n", "", "services[1].ports",
         "the board needs a published TCP port"),
    ],
)  # fmt: skip
def test_a_board_without_a_port_or_with_content_is_refused(tmp_path, old, new, field, said):
    found = problems(tmp_path, DEMO + BOARD.replace(old, new))
    assert any(f" {field}: " in p and said in p for p in found), found


def test_a_declared_partition_is_accepted(tmp_path):
    text = DEMO.replace("    - between: [drone-2, drone-3]\n      loss: 5\n", "").replace(
        "  range:\n", "  partitioned: true\n  range:\n"
    )
    mission = load(bundle(tmp_path, text))
    assert mission.radio.partitioned


def test_the_reference_page_and_schema_file_are_up_to_date():
    jsonschema.Draft202012Validator.check_schema(schema.SCHEMA)
    committed = json.loads((ROOT / "docs" / "mission-schema.json").read_text())
    assert committed == schema.SCHEMA, "run: python -m cloudrone.mission.schema"
    assert (ROOT / "docs" / "mission-reference.md").read_text() == schema.reference()
    # every field of the demo is on the page
    for key in ("radio.range[].loss", "services[].build.content", "access_point.security"):
        assert f"`{key}`" in schema.reference()


# -- no bundle whatsoever ends in anything but a list of problems ----------------
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["drone-1", "10.42.0.300", "1g", "tinyweb", "80"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


DEMO_DATA = yaml.safe_load(DEMO)
DEMO_PATHS = [p for p in _paths(DEMO_DATA) if p]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=st.lists(st.tuples(st.sampled_from(DEMO_PATHS), VALUES, st.booleans()), max_size=4))
def test_any_edit_of_the_demo_loads_or_is_explained(tmp_path, edits):
    data = copy.deepcopy(DEMO_DATA)
    for path, value, delete in edits:
        node = data
        try:
            for part in path[:-1]:
                node = node[part]
            if delete and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    folder = bundle(tmp_path, yaml.safe_dump(data))
    try:
        load(folder)
    except MissionError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.startswith(str(folder / "mission.yml")), p


def test_plan_places_pinned_spread_and_binpack_replicas(tmp_path):
    extra = (
        "  - name: board\n    build: {recipe: tinyweb}\n    replicas: 3\n"
        "    ports: [{target: 8080, published: 8081}]\n"
        "  - name: tiles\n    build: {recipe: tinyweb}\n    replicas: 3\n"
        "    placement: binpack\n    memory: 300M\n"
    )
    mission = load(bundle(tmp_path, DEMO + extra))
    planned = placement(mission)
    assert planned["news"] == {"drone-3": 1}
    assert planned["board"] == {"drone-1": 1, "drone-2": 1, "drone-3": 1}
    # a Pi 2 has 832 MiB for services: two 300M replicas fill drone-1, the third goes on
    assert planned["tiles"] == {"drone-1": 2, "drone-2": 1}


STATUS = {
    "mission": "demo",
    "swarm": {"leader": "drone-2"},
    "services": {"demo_news": {"running": 1, "desired": 1, "drones": ["drone-3"]}},
    "drones": [
        {"name": "drone-1", "reachable": True, "mesh": {
            "neighbors": [{"drone": "drone-2", "mpr": True}],
            "links": [{"drone": "drone-2", "status": "SYMMETRIC", "cost": 1.0}]}},
        {"name": "drone-2", "reachable": True, "mesh": {
            "neighbors": [{"drone": "drone-1", "mpr": False}, {"drone": "drone-3", "mpr": False}],
            "links": [{"drone": "drone-1", "status": "SYMMETRIC", "cost": 1.0},
                      {"drone": "drone-3", "status": "SYMMETRIC", "cost": 1.21}]}},
        {"name": "drone-3", "reachable": True, "mesh": {
            "neighbors": [{"drone": "drone-2", "mpr": True}],
            "links": [{"drone": "drone-2", "status": "SYMMETRIC", "cost": 1.19}]}},
        {"name": "drone-4", "reachable": False, "mesh": None},
    ],
}  # fmt: skip


def test_a_line_is_drawn_as_a_line_with_costs_relays_and_services(tmp_path):
    heard = {frozenset(("drone-1", "drone-2")), frozenset(("drone-2", "drone-3"))}
    where = layers(["drone-1", "drone-2", "drone-3", "drone-4"], heard)
    assert [where[n] for n in ("drone-1", "drone-2", "drone-3")] == [(0, 0), (1, 0), (2, 0)]
    assert where["drone-4"][0] == 3  # heard by no one: after the others
    svg = draw(STATUS, tmp_path / "mesh.svg").read_text()
    for text in ("drone-1", "drone-4", "ETX 1.21", "news", "silent", "swarm leader"):
        assert text in svg, text
    png = draw(STATUS, tmp_path / "mesh.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with pytest.raises(ValueError, match=r"give a \.png or \.svg"):
        draw(STATUS, tmp_path / "mesh.jpg")


def _vault(folder: Path, password: str, text: str, name: str = "secrets.yml") -> Path:
    """A file of the bundle encrypted by ansible-vault itself."""
    (folder / name).write_text(text)
    pw = folder.parent / "vault-password"
    pw.write_text(password + "\n")
    subprocess.run(
        [tool("ansible-vault"), "encrypt", "--vault-password-file", str(pw), str(folder / name)],
        check=True, capture_output=True,
    )  # fmt: skip
    return pw


def test_secrets_may_come_from_an_ansible_vault_in_the_bundle(tmp_path, monkeypatch):
    text = DEMO.replace("security: open", "security: wpa2\n  passphrase_env: CAMP_WIFI").replace(
        "version: 2\n", "version: 2\nsecrets: secrets.yml\n"
    )
    folder = bundle(tmp_path, text)
    # in clear, it is refused, and nothing else is said about it
    (folder / "secrets.yml").write_text("CAMP_WIFI: in-clear-passphrase\n")
    (problem,) = problems(tmp_path, text)
    assert "secrets: secrets.yml is not encrypted" in problem
    assert "ansible-vault encrypt secrets.yml" in problem
    password = _vault(folder, "opensesame", "CAMP_WIFI: a-vaulted-passphrase\n")
    monkeypatch.delenv("CAMP_WIFI", raising=False)
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    mission = load(folder)
    monkeypatch.delenv("CLOUDRONE_VAULT_PASSWORD_FILE", raising=False)
    assert "export CLOUDRONE_VAULT_PASSWORD_FILE" in missing_secrets(mission)[0]
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it\n")
    monkeypatch.setenv("CLOUDRONE_VAULT_PASSWORD_FILE", str(wrong))
    assert "does not open with the password in" in missing_secrets(mission)[0]
    monkeypatch.setenv("CLOUDRONE_VAULT_PASSWORD_FILE", str(password))
    assert missing_secrets(mission) == []
    inventory = render_inventory(mission)
    assert "a-vaulted-passphrase" not in inventory
    # Ansible itself reads the passphrase out of the vault, through the rendered inventory
    path = tmp_path / "inventory.yml"
    path.write_text(inventory)
    result = subprocess.run(
        [tool("ansible"), "-i", str(path), "drone-1", "-m", "ansible.builtin.debug",
         "-a", "msg=[{{ access_point_passphrase }}]"],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env={**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(password), "NO_COLOR": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[a-vaulted-passphrase]" in result.stdout
