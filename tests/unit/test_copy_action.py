"""plugins/action/copy.py: a template already right costs one module run, not two;
a file that drifted is still found and put right, in check mode too."""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tool

_spec = importlib.util.spec_from_file_location("cloudrone_copy", ROOT / "plugins/action/copy.py")
plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plugin)

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name
STAT = {"exists": True, "isreg": True, "islnk": False, "mode": "0640",
        "pw_name": ME, "gr_name": MY_GROUP, "uid": os.getuid(), "gid": os.getgid()}  # fmt: skip
ARGS = {"dest": "/x", "state": "file", "mode": "0640", "owner": ME, "group": MY_GROUP}


@pytest.mark.parametrize(
    ("args", "stat", "right"),
    [
        (ARGS, STAT, True),
        ({**ARGS, "mode": 0o640}, STAT, True),
        ({**ARGS, "mode": "640"}, STAT, True),
        ({**ARGS, "owner": str(os.getuid())}, STAT, True),
        ({**ARGS, "mode": None, "owner": None, "group": None}, STAT, True),
        ({**ARGS, "mode": "0600"}, STAT, False),
        ({**ARGS, "mode": "u+rw"}, STAT, False),  # symbolic: the module decides
        ({**ARGS, "owner": "someone-else"}, STAT, False),
        ({**ARGS, "group": "another-group"}, STAT, False),
        ({**ARGS, "setype": "etc_t"}, STAT, False),
        ({**ARGS, "attributes": "+i"}, STAT, False),
        ({**ARGS, "state": "directory"}, STAT, False),
        (ARGS, {**STAT, "islnk": True}, False),
        (ARGS, {**STAT, "isreg": False}, False),
        (ARGS, {**STAT, "exists": False}, False),
        (ARGS, None, False),
    ],
)
def test_already_right_only_when_the_stat_shows_everything_asked(args, stat, right):
    assert plugin.already_right(args, stat) is right


def play(tmp_path: Path, *extra: str, plugins: bool = True) -> subprocess.CompletedProcess:
    """Three templated files into ``tmp_path``, on this machine, verbose enough
    to list every module Ansible sends."""
    (tmp_path / "page.j2").write_text("hello {{ who }}\n")
    playbook = [
        {
            "name": "Files",
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"who": "camp"},
            "tasks": [
                {
                    "name": "Templates",
                    "ansible.builtin.template": {
                        "src": str(tmp_path / "page.j2"),
                        "dest": str(tmp_path / "out" / "{{ item }}"),
                        "mode": "0640",
                        "owner": ME,
                        "group": MY_GROUP,
                    },
                    "loop": ["a", "b", "c"],
                }
            ],
        }
    ]
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "play.yml").write_text(yaml.safe_dump(playbook))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PIPELINING": "false",
           # Ansible's own strategy sends each module run as a file (PUT) where
           # this test can count them; Mitogen's runs the same action plugin
           "ANSIBLE_STRATEGY": "linear"}  # fmt: skip
    # without it: a folder with no plugins (ansible.cfg would name this one)
    (tmp_path / "no-plugins").mkdir(exist_ok=True)
    folder = ROOT / "plugins" / "action" if plugins else tmp_path / "no-plugins"
    env["ANSIBLE_ACTION_PLUGINS"] = str(folder)
    result = subprocess.run(
        [tool("ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
         "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml"), *extra],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def sent(result: subprocess.CompletedProcess, module: str) -> int:
    """How many times the run sent ``module`` to the host (one PUT per module run)."""
    return sum(
        1
        for line in result.stdout.splitlines()
        if " PUT " in line and f"AnsiballZ_{module}.py" in line
    )


def recap(result: subprocess.CompletedProcess) -> str:
    return next(line for line in result.stdout.splitlines() if "ok=" in line)


def modes(tmp_path: Path) -> dict[str, str]:
    return {p.name: oct(p.stat().st_mode & 0o777) for p in sorted((tmp_path / "out").iterdir())}


def test_a_file_already_right_is_stat_only_and_a_drifted_one_is_put_right(tmp_path):
    first = play(tmp_path)
    assert "changed=1" in recap(first)
    assert modes(tmp_path) == {"a": "0o640", "b": "0o640", "c": "0o640"}
    # nothing to do: a stat per file, no file module at all
    again = play(tmp_path)
    assert "changed=0" in recap(again)
    assert (sent(again, "stat"), sent(again, "file")) == (3, 0)
    # the builtin action, for comparison: the same run sends the file module each time
    builtin = play(tmp_path, plugins=False)
    assert "changed=0" in recap(builtin)
    assert (sent(builtin, "stat"), sent(builtin, "file")) == (3, 3)
    # a mode changed behind Ansible's back: check mode reports it and touches nothing
    (tmp_path / "out" / "b").chmod(0o600)
    checked = play(tmp_path, "--check")
    assert "changed=1" in recap(checked)
    assert modes(tmp_path)["b"] == "0o600"
    # a real run puts it right, with the file module for that file only
    fixed = play(tmp_path)
    assert "changed=1" in recap(fixed)
    assert modes(tmp_path) == {"a": "0o640", "b": "0o640", "c": "0o640"}
    assert (sent(fixed, "stat"), sent(fixed, "file")) == (3, 1)
