"""run_playbook reports what failed, with or without a live display listening."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudrone.runner import run_playbook

PLAY = """\
- hosts: local
  gather_facts: false
  tasks:
    - name: Something that works
      ansible.builtin.debug:
        msg: fine
      changed_when: true
    - name: Something that fails
      ansible.builtin.fail:
        msg: the reason it failed
"""


@pytest.mark.parametrize("listening", [False, True])
def test_a_failure_names_the_host_the_task_and_the_reason(tmp_path: Path, listening: bool):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("local:\n  hosts:\n    here:\n      ansible_connection: local\n")
    heard: list[tuple[str, str]] = []
    result = run_playbook(
        str(playbook), inventory, tmp_path / "state",
        on_event=(lambda host, res, _play, task: heard.append((host, res))) if listening else None,
    )  # fmt: skip
    assert not result.ok and result.rc != 0
    assert result.failures == ["here: Something that fails: the reason it failed"]
    assert [(host, task) for host, task, _ in result.changes] == [("here", "Something that works")]
    assert result.log is not None and "the reason it failed" in result.log.read_text()
    if listening:
        assert ("here", "changed") in heard and ("here", "failed") in heard
