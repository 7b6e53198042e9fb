"""Where run state goes: beside the user, never inside a bundle."""

from __future__ import annotations

import json

from cloudrone.paths import mission_state_dir, state_home
from cloudrone.runner import scrub_artifacts


def test_state_follows_the_override_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDRONE_STATE_DIR", str(tmp_path / "s"))
    assert mission_state_dir("demo") == tmp_path / "s" / "missions" / "demo"
    monkeypatch.delenv("CLOUDRONE_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_home() == tmp_path / "xdg" / "cloudrone"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_home() == tmp_path / "home" / ".local" / "state" / "cloudrone"


def test_runner_records_keep_how_ansible_ran_and_drop_secrets(tmp_path):
    command = tmp_path / "artifacts" / "0f" / "command"
    command.parent.mkdir(parents=True)
    env = {
        "PATH": "/usr/bin",
        "ANSIBLE_CONFIG": "/x/ansible.cfg",
        "ANSIBLE_VAULT_PASSWORD_FILE": "/secret/file",
        "ANSIBLE_BECOME_PASS": "hunter2",
        "AWS_SECRET_ACCESS_KEY": "abc",
        "WIFI_PASSPHRASE": "correct horse",
    }
    command.write_text(json.dumps({"command": ["ansible-playbook"], "cwd": "/x", "env": env}))
    scrub_artifacts(tmp_path)
    kept = json.loads(command.read_text())
    assert kept["command"] == ["ansible-playbook"]
    assert kept["env"] == {"PATH": "/usr/bin", "ANSIBLE_CONFIG": "/x/ansible.cfg"}
