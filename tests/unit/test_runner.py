"""run_playbook reports what failed, with or without a live display listening."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudrone.runner import run_playbook

# the controller itself, with the Python that runs Ansible (as the implicit
# localhost has it); Mitogen cannot discover an interpreter over a local connection
LOCAL = """\
local:
  hosts:
    here:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""

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
    inventory.write_text(LOCAL)
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


GATHER = """\
- hosts: local
  tasks:
    - name: The machine's architecture, from its facts
      ansible.builtin.debug:
        msg: "{{ ansible_facts['architecture'] }}"
"""


def test_facts_gathered_once_are_kept_for_the_next_run_of_the_mission(tmp_path: Path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(GATHER)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(LOCAL)
    runs: list[list[str]] = []
    for _ in range(2):
        tasks: list[str] = []
        result = run_playbook(
            str(playbook), inventory, tmp_path / "state",
            on_event=lambda _host, res, _play, task, tasks=tasks: (
                tasks.append(task) if res == "ok" else None
            ),
        )  # fmt: skip
        assert result.ok, result.failures
        runs.append(tasks)
    assert runs[0] == ["Gathering Facts", "The machine's architecture, from its facts"]
    # the second run read the mission's cache instead of asking the host again
    assert runs[1] == ["The machine's architecture, from its facts"]
    assert [p.name for p in (tmp_path / "state" / "facts").iterdir()] == ["s1_here"]
