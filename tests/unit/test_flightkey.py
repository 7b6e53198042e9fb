"""The mission's flight key: made once, kept for its owner alone, never in the bundle,
never in the inventory; the bundle's flight section and the validate command."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cloudrone.cli import app
from cloudrone.mission import flightkey
from cloudrone.mission.model import FLIGHT_PASSPHRASE_ENV, MissionError, load
from cloudrone.mission.plan import render_inventory
from tests.unit.test_mission_v2 import DEMO, bundle, line_of, problems


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("CLOUDRONE_STATE_DIR", str(folder))
    monkeypatch.delenv(FLIGHT_PASSPHRASE_ENV, raising=False)
    return folder


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_is_made_once_kept_private_and_named_not_written_in_the_inventory(tmp_path):
    mission = load(bundle(tmp_path, DEMO))
    assert mission.flight.signing is True  # signed unless the bundle says otherwise
    made = flightkey.ensure(mission)
    assert made is not None and made.origin == "made"
    passphrase = made.passphrase_file.read_text().strip()
    assert len(passphrase) >= 40
    hex_key = made.key_file.read_text().strip()
    # the key a passphrase stands for, as MAVProxy's `signing key` derives it
    assert hex_key == hashlib.sha256(passphrase.encode()).hexdigest()
    assert _private(made.passphrase_file) and _private(made.key_file)
    assert stat.S_IMODE(made.folder.stat().st_mode) == 0o700
    assert not made.folder.is_relative_to(mission.bundle)

    again = flightkey.ensure(mission)
    assert again is not None and again.origin == "kept"
    assert again.key_file.read_text().strip() == hex_key  # the drones keep their key

    text = render_inventory(mission)
    assert passphrase not in text and hex_key not in text
    v = yaml.safe_load(text)["drones"]["vars"]
    assert v["flight_bridge_signing_key"] == (
        f"{{{{ lookup('ansible.builtin.file', '{made.key_file}') }}}}"
    )
    assert "flight_bridge_allow_unsigned" not in v


def test_an_operators_passphrase_wins_and_a_weak_one_is_refused(tmp_path, monkeypatch):
    mission = load(bundle(tmp_path, DEMO))
    monkeypatch.setenv(FLIGHT_PASSPHRASE_ENV, "too-short")
    problem = flightkey.problem(mission)
    assert problem is not None and "holds 9 characters" in problem
    monkeypatch.setenv(FLIGHT_PASSPHRASE_ENV, "with a space in it, long enough")
    assert "without spaces" in (flightkey.problem(mission) or "")
    shared = "camp-controllers-share-this-one"
    monkeypatch.setenv(FLIGHT_PASSPHRASE_ENV, shared)
    assert flightkey.problem(mission) is None
    key = flightkey.ensure(mission)
    assert key is not None and key.origin == f"${FLIGHT_PASSPHRASE_ENV}"
    assert key.key_file.read_text().strip() == hashlib.sha256(shared.encode()).hexdigest()


def test_unsigned_only_by_the_explicit_word(tmp_path):
    text = DEMO.replace("services:", "flight:\n  signing: false\n\nservices:", 1)
    mission = load(bundle(tmp_path, text))
    assert mission.flight.signing is False
    assert flightkey.ensure(mission) is None
    v = yaml.safe_load(render_inventory(mission))["drones"]["vars"]
    assert v["flight_bridge_allow_unsigned"] is True
    assert "flight_bridge_signing_key" not in v


def test_the_ground_station_sits_on_the_management_network(tmp_path):
    text = DEMO.replace("services:", "flight:\n  ground_station: 10.42.0.254\n\nservices:", 1)
    (problem,) = problems(tmp_path, text)
    assert f":{line_of(text, 'ground_station: 10.42')} flight.ground_station:" in problem
    assert "not a host of the management network 10.250.0.0/24" in problem
    assert "10.250.0.254" in problem  # the fix
    text = DEMO.replace(
        "services:", "flight:\n  ground_station: 10.250.0.200:14551\n\nservices:", 1
    )
    mission = load(bundle(tmp_path, text))
    v = yaml.safe_load(render_inventory(mission))["drones"]["vars"]
    assert v["flight_bridge_ground_station"] == "10.250.0.200:14551"
    text = DEMO.replace("services:", "flight:\n  signing: maybe\n\nservices:", 1)
    with pytest.raises(MissionError) as caught:
        load(bundle(tmp_path, text))
    assert "flight.signing" in caught.value.problems[0]


def test_validate_names_every_secret_the_bundle_needs_and_does_not_hold(tmp_path, monkeypatch):
    text = DEMO.replace("security: open", "security: wpa2\n  passphrase_env: ITEST_NO_SUCH_VAR")
    folder = bundle(tmp_path, text)
    monkeypatch.delenv("ITEST_NO_SUCH_VAR", raising=False)
    monkeypatch.setenv(FLIGHT_PASSPHRASE_ENV, "short")
    result = CliRunner().invoke(app, ["mission", "validate", str(folder)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "access_point.passphrase_env: $ITEST_NO_SUCH_VAR is not set" in out
    assert f"flight: ${FLIGHT_PASSPHRASE_ENV} holds 5 characters" in out
    assert "target sim: valid" not in out


def test_ground_station_tells_where_the_key_is_and_never_prints_it(tmp_path):
    folder = bundle(tmp_path, DEMO)
    result = CliRunner().invoke(
        app, ["mission", "ground-station", str(folder)], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    key = flightkey.ensure(load(folder))
    assert key is not None
    passphrase = key.passphrase_file.read_text().strip()
    hex_key = key.key_file.read_text().strip()
    assert passphrase not in result.output and hex_key not in result.output
    out = " ".join(result.output.split())
    joined = "".join(result.output.split())  # a narrow console may wrap a long path
    assert str(key.key_file) in joined and str(key.passphrase_file) in joined
    assert "10.250.0.11:14555" in out and "10.250.0.254:14550" in out
    assert "signing.keys" in out and "--key-file" in out
