"""mission pack and up --from without an engine: the package list, the archive's checks."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cloudrone.cli import app
from cloudrone.mission import pack
from cloudrone.mission.model import load
from cloudrone.mission.plan import render_inventory
from tests.conftest import ROOT

DEMO = ROOT / "missions" / "demo"


@pytest.fixture
def state(tmp_path, monkeypatch):
    home = tmp_path / "state"
    monkeypatch.setenv("CLOUDRONE_STATE_DIR", str(home))
    return home


def _apt_names(task: dict) -> object:
    for key in ("ansible.builtin.apt", "apt"):
        if key in task and isinstance(task[key], dict):
            return task[key].get("name")
    return None


def test_every_package_a_drone_role_installs_is_in_a_packages_list():
    # a literal name in a task would be installed at the base camp but never packed
    for role in pack.DRONE_ROLES:
        for tasks in (ROOT / "roles" / role / "tasks").glob("*.yml"):
            for task in yaml.safe_load(tasks.read_text()) or []:
                names = _apt_names(task)
                if names is None:
                    continue
                assert isinstance(names, str) and "_packages" in names, (tasks, task["name"])
    packages = pack.drone_packages()
    for expected in ("chrony", "docker.io", "docker-cli", "hostapd", "dnsmasq", "wpasupplicant"):
        assert expected in packages
    assert "skopeo" not in packages  # the base camp's, not a drone's


def test_cache_paths_follow_apt_cacher_ngs_layout():
    uri = "http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9%2bdeb12u14_arm64.deb"
    assert pack._cache_path(uri) == "debrep/pool/main/g/glibc/libc6_2.36-9+deb12u14_arm64.deb"
    with pytest.raises(pack.PackError, match="only Debian's archive"):
        pack._cache_path("http://archive.ubuntu.com/ubuntu/pool/x.deb")


def test_targets_follow_the_fleet_and_bad_ones_are_named():
    mission = load(DEMO)
    (native,) = pack.default_targets(mission, "bookworm")
    assert native.suite == "bookworm" and native.wheel.minor == 11
    targets = pack.parse_targets("bookworm", ["aarch64", "armv7l"])
    assert [(str(t.wheel), t.arch) for t in targets] == [
        ("cp311-aarch64", "arm64"),
        ("cp311-armv7l", "armhf"),
    ]
    with pytest.raises(pack.PackError, match="--machine i386: use one of"):
        pack.parse_targets("bookworm", ["i386"])
    with pytest.raises(pack.PackError, match="--suite jessie: use one of"):
        pack.parse_targets("jessie", ["aarch64"])


def _small_pack(tmp_path: Path) -> Path:
    files = tmp_path / "files"
    shutil.copytree(DEMO, files / "bundle")
    (files / "apt").mkdir()
    (files / "apt" / "InRelease").write_text("signed lists\n")
    members = {
        f"bundle/{p.relative_to(files / 'bundle').as_posix()}": p
        for p in (files / "bundle").rglob("*")
        if p.is_file()
    }
    members["apt/debrep/dists/bookworm/InRelease"] = files / "apt" / "InRelease"
    out = tmp_path / "demo-pack.tar"
    pack.write_archive(out, "demo", [], members)
    return out


def test_a_pack_unpacks_once_and_holds_the_bundle(tmp_path, state):
    archive = _small_pack(tmp_path)
    lines: list[str] = []
    unpacked = pack.unpack(archive, lines.append)
    assert unpacked.folder == state / "missions" / "demo" / "pack"
    assert load(unpacked.bundle).name == "demo"
    assert (unpacked.apt_cache / "debrep/dists/bookworm/InRelease").read_text() == "signed lists\n"
    assert "checked and unpacked" in lines[-1]
    pack.unpack(archive, lines.append)
    assert "unpacked already" in lines[-1]


def _rewrite(archive: Path, out: Path, change) -> Path:
    """A copy of ``archive`` whose members pass through ``change(name, data)``."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src:
            data = src.extractfile(member).read()
            result = change(member.name, data)
            if result is None:
                continue
            member.size = len(result)
            dst.addfile(member, io.BytesIO(result))
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda n, d: d.replace(b"signed", b"forged") if n.endswith("InRelease") else d,
            "does not match its checksum",
        ),
        (lambda n, d: None if n.endswith("InRelease") else d, "missing"),
        (lambda n, d: None if n == "manifest.json" else d, "not a mission pack"),
        (
            lambda n, d: (
                json.dumps({**json.loads(d), "format": 9}).encode() if n == "manifest.json" else d
            ),
            "pack format 9",
        ),
    ],
    ids=["altered", "member-missing", "no-manifest", "newer-format"],
)
def test_a_damaged_pack_is_refused_and_nothing_is_written(tmp_path, state, change, message):
    bad = _rewrite(_small_pack(tmp_path), tmp_path / "bad.tar", change)
    with pytest.raises(pack.PackError, match=message):
        pack.unpack(bad, lambda _m: None)
    assert not (state / "missions" / "demo" / "pack").exists()
    assert [p.name for p in (state / "missions" / "demo").glob(".pack-*")] == []


def test_up_from_a_damaged_or_absent_pack_says_so_and_changes_nothing(tmp_path, state):
    text = tmp_path / "notes.txt"
    text.write_text("not a tar\n")
    for archive in (text, tmp_path / "absent.tar", tmp_path):
        result = CliRunner().invoke(app, ["mission", "up", "--from", str(archive)])
        assert result.exit_code == 2, result.output
        out = " ".join(result.output.split())
        # the path may be wrapped anywhere at the terminal's width
        assert str(archive) in "".join(out.split()) and "nothing was changed" in out
    assert not state.exists() or not any(state.rglob("inventory.yml"))
    both = CliRunner().invoke(app, ["mission", "up", str(DEMO), "--from", str(text)])
    assert both.exit_code == 2 and "not both" in both.output


def test_the_offline_inventory_points_at_the_packs_cache_and_wheelhouse():
    mission = load(DEMO)
    offline = {"apt_proxy": "http://10.250.0.254:3143", "wheelhouse": "/state/pack/wheelhouse"}
    group = yaml.safe_load(render_inventory(mission, offline))["drones"]["vars"]
    assert group["base_apt_proxy"] == "http://10.250.0.254:3143"
    assert group["base_wheelhouse_src"] == "/state/pack/wheelhouse"
    online = yaml.safe_load(render_inventory(mission))["drones"]["vars"]
    assert online["base_apt_proxy"] == "http://10.250.0.254:3142"
    assert "base_wheelhouse_src" not in online
