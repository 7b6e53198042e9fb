"""Ansible's linear strategy, with Mitogen carrying the work to the drones.

Each drone keeps one Python interpreter for the whole run, reached over the
one SSH connection: a module is a call in that interpreter instead of a new
Python process that unpacks the module and compiles Ansible's module
utilities again. A run that changes nothing spends most of its time there
(docs/bench/mission.md). Named in ansible.cfg; `ANSIBLE_STRATEGY=linear`
runs the plain strategy instead.

Two kinds of task are answered here, in the controller's main process,
instead of in a worker forked for them (a worker costs the controller about
0.05 s of CPU per task and drone: the fork, the copy-on-write faults after
it, the worker's own start):

- a task whose `when` is false (a second run skips some forty tasks on every
  drone); only plain cases are decided here (no loop, no delegation, no
  connection variable in the condition, nothing that fails to evaluate),
  the rest goes to a worker as before;
- a task whose action never reaches the drone (assert, debug, fail,
  set_fact, include_vars, and the check of a role's arguments at its start:
  some thirty on every drone). These run here through Ansible's own
  TaskExecutor, the code a worker would run, on a copy of the task and of
  its variables, so everything a worker does (conditions, loops, templated
  messages, failed_when, no_log) is done the same way. Only a delegated one
  still goes to a worker.

The fact cache is read on every task for every drone, and Ansible decodes
the drone's whole facts from JSON each time (some 2,400 times in a
nine-drone run); here each drone's facts are decoded once per run, and
again only after they change.

A module from a collection (authorized_key, the docker modules...) makes
Mitogen's worker list every installed collection, reading each one's
manifest (the `ansible` package brings about 180), to hand their folders to
the drone: some 0.6 s of CPU each time, in a worker that forgets the answer
when it ends. The list is made once here, before the first worker is forked,
and every worker inherits it.
"""

from __future__ import annotations

import functools

import ansible_mitogen.loaders
import ansible_mitogen.planner
import ansible_mitogen.strategy
from ansible import constants as C
from ansible._internal._task import TaskContext
from ansible._internal._templating._engine import TemplateEngine
from ansible.collections.list import list_collection_dirs
from ansible.executor.task_executor import TaskExecutor
from ansible.executor.task_result import _RawTaskResult
from ansible.plugins import loader as plugin_loader
from ansible.plugins.loader import action_loader

_Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

# Variables a worker adds from the connection settings before it evaluates a
# condition: a condition that names one is left to the worker.
_CONNECTION_VARS = frozenset(name for names in C.MAGIC_VARIABLE_MAPPING.values() for name in names)


# Actions whose plugin does all its work in the controller (none reaches the
# drone's connection): run here rather than in a worker of their own.
_HERE = frozenset(
    f"{prefix}{name}"
    for name in ("assert", "debug", "fail", "set_fact", "include_vars", "validate_argument_spec")
    for prefix in ("", "ansible.builtin.", "ansible.legacy.")
)


def _plain(conditions) -> bool:
    """Conditions this process can evaluate as a worker would: booleans, and
    strings that name no connection variable."""
    return all(
        isinstance(c, bool)
        or (isinstance(c, str) and not any(name in c for name in _CONNECTION_VARS))
        for c in conditions
    )


def decided_result(task, task_vars) -> dict | None:
    """The result a worker would send for ``task`` on a host with ``task_vars``
    where its `when` is false and plain (see _plain); None: run it."""
    # called for every task on every drone: what can never be decided here
    # leaves before any templating
    when = task.when
    if not when or task.loop or task.loop_with or task.delegate_to or not _plain(when):
        return None
    context: dict = {}
    try:
        if task._resolve_conditional(when, task_vars, result_context=context):
            return None
    except Exception:  # the worker evaluates it again and reports the error as before
        return None
    result = {"changed": False, "skipped": True}
    result.update(skip_reason="Conditional result was False", **context)
    task.update_result_no_log(TemplateEngine(loader=task._loader, variables=task_vars), result)
    return result


def runs_here(task) -> bool:
    """Whether ``task`` runs in this process (a controller-side action, not delegated)."""
    return task.action in _HERE and not task.delegate_to and _controller_side(task.action)


@functools.cache
def _controller_side(action: str) -> bool:
    """Whether the plugin that runs ``action`` leaves the connection alone (a
    project's own plugin of the same name might not); looked up once per run."""
    handler = action_loader.get(action, class_only=True)
    return handler is not None and getattr(handler, "_requires_connection", True) is False


@functools.cache
def _collection_dirs() -> tuple[str, ...]:
    """The installed collections' folders, listed once per run (they do not
    change while it runs)."""
    return tuple(path.decode() for path in list_collection_dirs())


def _load_collections(invocation) -> None:
    """Mitogen's own step, from the list made before the workers were forked."""
    invocation._extra_sys_paths.update(_collection_dirs())


ansible_mitogen.planner._load_collections = _load_collections


class DecodedFacts:
    """Ansible's fact cache, with each drone's facts kept decoded between
    reads; a drone's facts are decoded again after they are set or deleted.
    Ansible only reads what it gets (a copy goes into the task's variables)
    or updates it and sets it back."""

    def __init__(self, cache) -> None:
        self._cache = cache
        self._decoded: dict[str, dict] = {}

    def get(self, key: str) -> dict:
        if key not in self._decoded:
            self._decoded[key] = self._cache.get(key)  # KeyError as before
        return self._decoded[key]

    def set(self, key: str, value: dict) -> None:
        self._decoded.pop(key, None)
        self._cache.set(key, value)

    def delete(self, key: str) -> None:
        self._decoded.pop(key, None)
        self._cache.delete(key)

    def __getattr__(self, name: str):
        return getattr(self._cache, name)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
    """Task by task across the fleet, as `linear`, over Mitogen's connections."""

    def __init__(self, tqm) -> None:
        super().__init__(tqm)
        variables = self._variable_manager
        if not isinstance(variables._fact_cache, DecodedFacts):
            variables._fact_cache = DecodedFacts(variables._fact_cache)

    def run(self, iterator, play_context):
        _collection_dirs()  # here, so that every worker forked from now on has it
        return super().run(iterator, play_context)

    def _queue_task(self, host, task, task_vars, play_context):
        if runs_here(task):
            self._started_here(host, task, task_vars, play_context)
            # what a worker runs, on copies: the task and its variables stay as
            # they were for the result's processing and for the other drones
            own = task.copy(exclude_tasks=True)
            with TaskContext(own):
                result = TaskExecutor(
                    host, own, dict(task_vars), play_context, self._loader,
                    plugin_loader.get_plugin_loader_namespace(), self._final_q,
                    self._variable_manager,
                ).run()  # fmt: skip
            self._send_result(host, task, result, own)
            return None
        result = decided_result(task, task_vars)
        if result is None:
            return super()._queue_task(host, task, task_vars, play_context)
        self._started_here(host, task, task_vars, play_context)
        self._send_result(host, task, result, task)
        return None

    def _started_here(self, host, task, task_vars, play_context) -> None:
        """What a worker's start leaves for the result's processing, and its message."""
        self._queued_task_cache[(host.name, task._uuid)] = {
            "host": host,
            "task": task,
            "task_vars": task_vars,
            "play_context": play_context,
        }
        self._tqm.send_callback("v2_runner_on_start", host, task)

    def _send_result(self, host, task, result: dict, fields_from) -> None:
        """Send ``result`` as a worker would, with the fields of the task as it
        ran (``fields_from``: the copy that ran, or the task itself)."""
        self._final_q.send_task_result(
            _RawTaskResult(
                host=host, task=task, return_data=result, task_fields=fields_from.dump_attrs()
            )
        )
        self._pending_results += 1
