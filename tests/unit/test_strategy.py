"""plugins/strategy/mitogen_linear.py: a task whose condition is false, and
a task whose action stays in the controller (assert, set_fact, fail,
debug...), are answered in the controller's main process, without a worker,
and everything a play sees (results, registered variables, facts, handlers,
includes, errors, failed assertions, secrets kept) is the same as with
Ansible's own linear strategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tool

# Two local hosts, a and b; each condition below is true on one of them, or
# on neither, or cannot be decided without a worker.
PLAY = """
- name: conditions
  hosts: all
  gather_facts: false
  tasks:
    - name: flag
      ansible.builtin.set_fact:
        flag: "{{ inventory_hostname == 'a' }}"
    - name: only on a
      ansible.builtin.command: "true"
      when: flag | bool
      register: on_a
      changed_when: false
    - name: only on b
      ansible.builtin.command: "true"
      when: not flag | bool
      register: on_b
      changed_when: false
    - name: a skipped result is registered as skipped
      ansible.builtin.assert:
        that:
          - (on_b is skipped) == (flag | bool)
          - (on_a is skipped) != (flag | bool)
          - on_b.false_condition | default('') == ('not flag | bool' if flag | bool else '')
    - name: a condition on a connection variable
      ansible.builtin.debug: {msg: port}
      when: ansible_port is defined
    - name: an undefined variable in a condition fails as before
      ansible.builtin.debug: {msg: never}
      when: nowhere_defined
      ignore_errors: true
      register: undefined
    - name: it failed
      ansible.builtin.assert: {that: [undefined is failed]}
    - name: a loop decides item by item
      ansible.builtin.debug: {msg: "{{ item }}"}
      loop: [1, 2]
      when: item == 2
    - name: an include that is not for this host
      ansible.builtin.include_tasks: inc.yml
      when: flag | bool
    - name: a secret task skipped
      ansible.builtin.debug: {msg: s3cret}
      no_log: true
      when: false
      register: secret
    - name: its result is skipped
      ansible.builtin.assert: {that: [secret is skipped]}
    - name: a block not for this host
      when: not flag | bool
      block:
        - name: in the block
          ansible.builtin.command: "true"
          notify: heard
          changed_when: true
    - name: decided in the controller's main process
      ansible.builtin.debug: {msg: x}
      when: lookup('ansible.builtin.pipe', 'echo $PPID >> ' ~ out ~ '/pids') == 'never'
    - name: an assertion that holds on a alone
      ansible.builtin.assert:
        that: [flag | bool, "'a' in inventory_hostname"]
        fail_msg: "{{ inventory_hostname }} is not a"
        quiet: true
      ignore_errors: true
      register: held
    - name: the failed one is registered as failed, with its message
      ansible.builtin.assert:
        that:
          - (held is failed) != (flag | bool)
          - held.msg == ('All assertions passed' if flag | bool else 'b is not a')
    - name: an assertion that holds, decided in the controller's main process
      ansible.builtin.assert:
        that: lookup('ansible.builtin.pipe', 'echo $PPID >> ' ~ out ~ '/assert-pids') == ''
    - name: an assertion with a message of its own for success
      ansible.builtin.assert:
        that: [true]
        success_msg: fine on {{ inventory_hostname }}
    - name: facts set in the controller's main process, item by item
      ansible.builtin.set_fact:
        seen: "{{ item ~ lookup('ansible.builtin.pipe', 'echo $PPID | tee -a ' ~ pids) }}"
      vars:
        pids: "{{ out }}/fact-pids"
      loop: [1, 2]
    - name: the last item's fact is the one kept
      ansible.builtin.assert: {that: ["seen is match('^2[0-9]+$')"]}
    - name: a failure the play asks for
      ansible.builtin.fail: {msg: "stop on {{ inventory_hostname }}"}
      when: not flag | bool
      ignore_errors: true
      register: stopped
    - name: registered as failed on b alone, with its message
      ansible.builtin.assert:
        that:
          - (stopped is failed) != (flag | bool)
          - stopped.msg | default('') == ('' if flag | bool else 'stop on b')
    - name: a fact kept in the fact cache
      ansible.builtin.set_fact:
        kept: "{{ inventory_hostname }}-kept"
        cacheable: true
    - name: the cached fact reads back, among the facts
      ansible.builtin.assert:
        that: [kept == inventory_hostname ~ '-kept', ansible_facts.kept == kept]
    - name: a report that keeps a secret
      ansible.builtin.debug: {msg: "s3cret on {{ inventory_hostname }}"}
      no_log: true
    - name: a check delegated elsewhere still goes to a worker
      ansible.builtin.set_fact:
        delegated: "{{ lookup('ansible.builtin.pipe', 'echo $PPID') }}"
      delegate_to: a
    - name: the delegated fact was set by a worker
      ansible.builtin.assert: {that: [delegated | int != playbook_pid | int]}
      vars:
        playbook_pid: "{{ seen[1:] }}"
  handlers:
    - name: heard
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ out }}/heard-{{ inventory_hostname }}"
"""
INCLUDED = """
- name: included
  ansible.builtin.copy:
    content: "x\\n"
    dest: "{{ out }}/included-{{ inventory_hostname }}"
"""


def play(tmp_path: Path, strategy: str) -> tuple[dict, int, list[str], Path]:
    """The play under ``strategy``: its JSON report, the playbook's process id,
    the ids of the processes that decided the lookup condition, and its folder."""
    out = tmp_path / "out"
    out.mkdir(parents=True)
    (tmp_path / "inc.yml").write_text(INCLUDED)
    (tmp_path / "play.yml").write_text(PLAY)
    hosts = {"a": {}, "b": {}}
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
              "out": str(out)}  # fmt: skip
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": common}}))
    env = {**os.environ, "ANSIBLE_STRATEGY": strategy, "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}  # fmt: skip
    proc = subprocess.Popen(
        [tool("ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    # the report, then what other callbacks print (task timings)
    report, _ = json.JSONDecoder().raw_decode(stdout[stdout.index("{") :])
    pids = [*(out / "pids").read_text().split(), "|", *(out / "assert-pids").read_text().split(),
            "|", *(out / "fact-pids").read_text().split()]  # fmt: skip
    return report, proc.pid, pids, out


def outcomes(report: dict) -> dict[tuple[str, str], tuple]:
    """Per task and host: skipped, changed, failed, the false condition, whether
    a secret shows, and an assertion's whole result."""
    rows = {}
    for play_ in report["plays"]:
        for task in play_["tasks"]:
            name = task["task"]["name"]
            for host, res in task["hosts"].items():
                whole = res if name.startswith("an assertion") else None
                rows[name, host] = (bool(res.get("skipped")), bool(res.get("changed")),
                                    bool(res.get("failed")), res.get("false_condition"),
                                    "s3cret" in json.dumps(res), whole)  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("strategy")
    return {strategy: play(tmp / strategy, strategy) for strategy in ("linear", "mitogen_linear")}


def test_a_run_sees_the_same_results_as_with_the_linear_strategy(runs):
    linear, ours = runs["linear"][0], runs["mitogen_linear"][0]
    assert outcomes(ours) == outcomes(linear)
    assert ours["stats"] == linear["stats"]
    rows = outcomes(ours)
    assert rows["only on b", "a"][:4] == (True, False, False, "not flag | bool")
    assert rows["an include that is not for this host", "b"][:4] == (
        True,
        False,
        False,
        "flag | bool",
    )
    assert rows["an assertion that holds on a alone", "a"][5]["msg"] == "All assertions passed"
    assert rows["an assertion that holds on a alone", "b"][5]["msg"] == "b is not a"
    assert not any(row[4] for row in rows.values()), "a secret reached the output"


def test_handlers_and_includes_run_where_their_condition_holds(runs):
    for *_, out in runs.values():
        assert sorted(p.name for p in out.iterdir() if not p.name.endswith("pids")) == [
            "heard-b",
            "included-a",
        ]


def test_a_false_condition_and_controller_side_actions_run_without_a_worker(runs):
    # the lookups (in a false `when`, in an assertion that holds, in a fact
    # set item by item) ran in the process that ran the playbook: no worker
    # was forked for either host; Ansible's own strategy forks one per task
    # and host
    _, pid, pids, _ = runs["mitogen_linear"]
    assert pids == [str(pid)] * 2 + ["|"] + [str(pid)] * 2 + ["|"] + [str(pid)] * 4
    _, pid, pids, _ = runs["linear"]
    assert len(pids) == 10 and str(pid) not in pids


class CountingCache:
    """A fact cache that counts its reads (each a decode in Ansible's)."""

    def __init__(self) -> None:
        self.data: dict[str, dict] = {}
        self.reads = 0

    def get(self, key: str) -> dict:
        self.reads += 1
        return json.loads(json.dumps(self.data[key]))

    def set(self, key: str, value: dict) -> None:
        self.data[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        del self.data[key]

    def keys(self) -> list[str]:
        return list(self.data)


def test_a_drones_facts_are_decoded_once_until_they_change(strategy_plugin):
    module = strategy_plugin
    cache = CountingCache()
    facts = module.DecodedFacts(cache)
    with pytest.raises(KeyError):
        facts.get("drone-1")  # no facts yet: as Ansible's own cache says
    facts.set("drone-1", {"hostname": "drone-1"})
    first = facts.get("drone-1")
    assert facts.get("drone-1") is first and cache.reads == 2
    # an update, as Ansible makes one: read, change, set back; then read again
    first |= {"kept": True}
    facts.set("drone-1", first)
    assert facts.get("drone-1") == {"hostname": "drone-1", "kept": True} and cache.reads == 3
    assert facts.keys() == ["drone-1"]
    facts.delete("drone-1")
    with pytest.raises(KeyError):
        facts.get("drone-1")


def test_a_drones_facts_are_copied_into_task_variables_once_until_they_change(strategy_plugin):
    from ansible.vars.clean import namespace_facts

    module = strategy_plugin
    facts = module.DecodedFacts(CountingCache())
    facts.set("drone-1", {"ansible_hostname": "drone-1", "ansible_local": {"x": 1}, "mem": [1]})
    first = module.namespace_facts(facts.get("drone-1"))
    assert first == namespace_facts(facts.get("drone-1"))  # what Ansible makes of them
    assert first == {
        "ansible_facts": {"hostname": "drone-1", "ansible_local": {"x": 1}, "mem": [1]}
    }
    again = module.namespace_facts(facts.get("drone-1"))
    assert again["ansible_facts"] is first["ansible_facts"]  # copied once
    changed = facts.get("drone-1") | {"ansible_hostname": "drone-2"}
    facts.set("drone-1", changed)
    after = module.namespace_facts(facts.get("drone-1"))
    assert after["ansible_facts"]["hostname"] == "drone-2"
    assert first["ansible_facts"]["hostname"] == "drone-1"
    assert module.namespace_facts({}) == {"ansible_facts": {}}
