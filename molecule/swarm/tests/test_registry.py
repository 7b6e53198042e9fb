"""The base camp's registry: one address, auth on, its password nowhere in clear;
every drone holds the image it serves before any service needs it."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CAMP = "basecamp-b1"
REGISTRY = "10.247.0.20:5000"
DRONES = ["drone-s1", "drone-s2", "drone-s3", "drone-s4"]


@pytest.fixture(scope="module")
def password() -> str:
    given = os.environ.get("CLOUDRONE_REGISTRY_PASSWORD")
    if given:
        return given
    folder = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    return (folder / "registry.password").read_text().strip()


def get(path: str, auth: tuple[str, str] | None = None):
    request = urllib.request.Request(f"http://{REGISTRY}{path}")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return urllib.request.urlopen(request, timeout=5)


def test_registry_refuses_a_stranger_and_a_wrong_password(password):
    for auth in (None, ("cloudrone", password + "x")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get("/v2/_catalog", auth)
        assert refused.value.code == 401


def test_registry_serves_the_mission_image_with_the_password(password):
    with get("/v2/_catalog", ("cloudrone", password)) as reply:
        assert reply.status == 200
        assert json.load(reply)["repositories"] == ["cloudrone/tinyweb"]


def test_registry_listens_on_the_management_address_only(on_drone):
    code, out = on_drone(CAMP, "ss -Hltn 'sport = :5000'")
    assert code == 0, out
    listening = [line.split()[3] for line in out.splitlines()]
    assert listening == [REGISTRY], listening


def test_password_file_is_private_and_holds_only_a_bcrypt_hash(on_drone, password):
    _code, out = on_drone(CAMP, "stat -c '%U %G %a' /etc/cloudrone/registry.htpasswd")
    assert out.split() == ["root", "docker-registry", "640"], out
    _code, out = on_drone(CAMP, "cat /etc/cloudrone/registry.htpasswd")
    assert out.strip().startswith("cloudrone:$2"), "not a bcrypt hash"
    assert password not in out


@pytest.mark.parametrize("host", [CAMP, *DRONES])
def test_password_is_in_no_journal(on_drone, host, password):
    # the scenario's own random password, so it may appear in this command line
    _code, out = on_drone(host, f"journalctl --no-pager -o cat | grep -cF '{password}' || true")
    assert out.strip() == "0", f"the registry password shows in {host}'s journal"


@pytest.mark.parametrize("drone", DRONES)
def test_every_drone_holds_the_image_pulled_from_the_base_camp(on_drone, drone):
    code, out = on_drone(
        drone, f"docker image ls --format '{{{{.Repository}}}}' {REGISTRY}/cloudrone/tinyweb"
    )
    assert code == 0 and out.strip() == f"{REGISTRY}/cloudrone/tinyweb", out
