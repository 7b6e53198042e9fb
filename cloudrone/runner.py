"""Run the project's playbooks through ansible-runner and report as they go."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner

from cloudrone.paths import project_root

# What of the controller's environment a run's record may keep: enough to
# see how Ansible was called, nothing that could hold a secret.
_KEPT_ENV = re.compile(
    r"^(ANSIBLE_(?!.*(PASS|SECRET|TOKEN|KEY|VAULT)).*|PATH|HOME|USER|LANG|LC_.*)$"
)


def scrub_artifacts(private_data_dir: Path) -> None:
    """Drop the controller's environment from ansible-runner's records.

    ansible-runner writes the whole environment of the run into each
    artifact's ``command`` file (tokens, vault passwords and cloud keys
    included); keep only what says how Ansible ran.
    """
    for command in private_data_dir.glob("artifacts/*/command"):
        try:
            data = json.loads(command.read_text())
        except (OSError, ValueError):
            continue
        env = data.get("env") or {}
        data["env"] = {k: v for k, v in env.items() if _KEPT_ENV.match(k)}
        command.write_text(json.dumps(data))


@dataclass
class RunResult:
    rc: int
    elapsed: float
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # the run's full output, kept with ansible-runner's record of it
    log: Path | None = None
    # (drone, task, Ansible's diff entries) of every task that changed (or would)
    changes: list[tuple[str, str, list[dict]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures

    @property
    def changed(self) -> int:
        return sum(s.get("changed", 0) for s in self.stats.values())


def _stats(runner: ansible_runner.Runner) -> dict[str, dict[str, int]]:
    raw = runner.stats or {}
    hosts: dict[str, dict[str, int]] = {}
    for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
        for host, count in (raw.get(key) or {}).items():
            hosts.setdefault(host, {})[key] = count
    return hosts


def run_playbook(
    playbook: str,
    inventory: Path,
    state_dir: Path,
    *,
    check: bool = False,
    diff: bool = False,
    tags: str | None = None,
    on_event: Callable[[str, str, str, str], None] | None = None,
) -> RunResult:
    """Run ``playbook`` (relative to the project) against ``inventory``."""
    root = project_root()
    (state_dir / "runner").mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    changes: list[tuple[str, str, list[dict]]] = []

    def handle(event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        res = data.get("res", {})
        if kind == "runner_on_ok" and res.get("changed"):
            diffs = res.get("diff") or []
            changes.append((data.get("host", ""), data.get("task", ""),
                            diffs if isinstance(diffs, list) else [diffs]))  # fmt: skip
        if on_event and data.get("host") and kind.startswith("runner_on_"):
            # (drone, ok|changed|failed|skipped|unreachable|start, play, task)
            result = kind.removeprefix("runner_on_")
            if result == "ok" and res.get("changed"):
                result = "changed"
            on_event(data["host"], result, data.get("play", ""), data.get("task", ""))
        if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            msg = res.get("msg") or res.get("stderr") or res.get("module_stderr") or ""
            failures.append(f"{data.get('host')}: {data.get('task')}: {str(msg).strip()}")
        return True

    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    if tags:
        cmdline += ["--tags", tags]
    bindir = str(Path(sys.executable).parent)
    envvars = {
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(root / "roles"),
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
    }
    # the bundle's vault opens with the operator's password file (never copied)
    vault = os.environ.get("CLOUDRONE_VAULT_PASSWORD_FILE")
    if vault:
        envvars["ANSIBLE_VAULT_PASSWORD_FILE"] = str(Path(vault).expanduser())
    start = time.monotonic()
    private = state_dir / "runner"
    private.chmod(0o700)
    runner = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(root),
        playbook=str(root / playbook),
        inventory=str(inventory),
        envvars=envvars,
        cmdline=" ".join(cmdline) or None,
        quiet=True,
        event_handler=handle,
        rotate_artifacts=3,
        # each mission keeps its own facts (drone names repeat across missions)
        # from one run to the next; the runner would otherwise give every run a
        # new, empty cache in its artifacts and every run would gather again
        fact_cache=str(state_dir / "facts"),
        # no env/ files with the variables of the run
        suppress_env_files=True,
    )
    scrub_artifacts(private)
    return RunResult(
        rc=runner.rc,
        elapsed=time.monotonic() - start,
        stats=_stats(runner),
        failures=failures,
        changes=changes,
        log=Path(runner.config.artifact_dir) / "stdout",
    )
