"""Ansible's linear strategy, with Mitogen carrying the work to the drones.

Each drone keeps one Python interpreter for the whole run, reached over the
one SSH connection: a module is a call in that interpreter instead of a new
Python process that unpacks the module and compiles Ansible's module
utilities again. A run that changes nothing spends most of its time there
(docs/bench/mission.md). Named in ansible.cfg; `ANSIBLE_STRATEGY=linear`
runs the plain strategy instead.

A task whose `when` is false is skipped here, in the controller's main
process, instead of in a worker forked for it: the fork costs the controller
about 0.05 s of CPU per task and drone, and a second run skips some fifty
tasks on every drone. Only plain cases are decided here (no loop, no
delegation, no connection variable in the condition, nothing that fails to
evaluate); everything else goes to a worker as before, which decides it the
same way Ansible always did.
"""

from __future__ import annotations

import ansible_mitogen.loaders
import ansible_mitogen.strategy
from ansible import constants as C
from ansible._internal._templating._engine import TemplateEngine
from ansible.executor.task_result import _RawTaskResult

_Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

# Variables a worker adds from the connection settings before it evaluates a
# condition: a condition that names one is left to the worker.
_CONNECTION_VARS = frozenset(name for names in C.MAGIC_VARIABLE_MAPPING.values() for name in names)


def skip_result(task, task_vars) -> dict | None:
    """The result a worker would send for ``task`` on a host with ``task_vars``
    if its condition is false there and can be decided here; None otherwise."""
    when = task.when
    if not when or task.loop or task.loop_with or task.delegate_to:
        return None
    texts = [c for c in when if isinstance(c, str)]
    if any(name in text for text in texts for name in _CONNECTION_VARS):
        return None
    context: dict = {}
    try:
        if task._resolve_conditional(when, task_vars, result_context=context):
            return None
    except Exception:  # the worker evaluates it again and reports the error as before
        return None
    result = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}
    result.update(context)
    task.update_result_no_log(TemplateEngine(loader=task._loader, variables=task_vars), result)
    return result


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
    """Task by task across the fleet, as `linear`, over Mitogen's connections."""

    def _queue_task(self, host, task, task_vars, play_context):
        result = skip_result(task, task_vars)
        if result is None:
            return super()._queue_task(host, task, task_vars, play_context)
        # what a worker leaves for the result's processing, and its messages
        self._queued_task_cache[(host.name, task._uuid)] = {
            "host": host,
            "task": task,
            "task_vars": task_vars,
            "play_context": play_context,
        }
        self._tqm.send_callback("v2_runner_on_start", host, task)
        self._final_q.send_task_result(
            _RawTaskResult(host=host, task=task, return_data=result, task_fields=task.dump_attrs())
        )
        self._pending_results += 1
        return None
