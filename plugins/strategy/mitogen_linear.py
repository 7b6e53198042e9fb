"""Ansible's linear strategy, with Mitogen carrying the work to the drones.

Each drone keeps one Python interpreter for the whole run, reached over the
one SSH connection: a module is a call in that interpreter instead of a new
Python process that unpacks the module and compiles Ansible's module
utilities again. A run that changes nothing spends most of its time there
(docs/bench/mission.md). Named in ansible.cfg; `ANSIBLE_STRATEGY=linear`
runs the plain strategy instead.

Two kinds of task are answered here, in the controller's main process,
instead of in a worker forked for them (the fork costs the controller about
0.05 s of CPU per task and drone): a task whose `when` is false (a second
run skips some forty tasks on every drone), and an `assert` whose conditions
all hold (the checks before anything changes, some twenty on every drone).
Only plain cases are decided here (no loop, no delegation, no connection
variable in a condition, nothing that fails to evaluate); everything else,
a failing assertion included, goes to a worker as before, which decides it
the same way Ansible always did and words its message.
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


_ASSERT = frozenset({"assert", "ansible.builtin.assert", "ansible.legacy.assert"})


def _plain(conditions) -> bool:
    """Conditions this process can evaluate as a worker would: booleans, and
    strings that name no connection variable."""
    return all(
        isinstance(c, bool)
        or (isinstance(c, str) and not any(name in c for name in _CONNECTION_VARS))
        for c in conditions
    )


def decided_result(task, task_vars) -> dict | None:
    """The result a worker would send for ``task`` on a host with ``task_vars``,
    where it can be decided here: skipped (a false `when`) or passed (an
    `assert` whose conditions all hold). None: a worker runs it."""
    # called for every task on every drone: what can never be decided here
    # leaves before any templating
    when = task.when
    is_assert = task.action in _ASSERT
    if (not when and not is_assert) or task.loop or task.loop_with or task.delegate_to:
        return None
    if not _plain(when):
        return None
    engine = TemplateEngine(loader=task._loader, variables=task_vars)
    context: dict = {}
    try:
        if when and not task._resolve_conditional(when, task_vars, result_context=context):
            result = {"changed": False, "skipped": True}
            result.update(skip_reason="Conditional result was False", **context)
        elif is_assert:
            result = _passed(task, engine)
        else:
            return None
    except Exception:  # the worker evaluates it again and reports the error as before
        return None
    if result is not None:
        task.update_result_no_log(engine, result)
    return result


def _passed(task, engine: TemplateEngine) -> dict | None:
    """An assert's result if every condition holds; None if one does not, or
    if the task asks for more than this process decides (its own success
    message, a templated list of conditions or `quiet`)."""
    args = task.args
    that = args.get("that")
    that = [that] if isinstance(that, str) else that
    quiet = args.get("quiet", False)
    if (
        "success_msg" in args
        or not isinstance(that, list)
        or not that
        or not all(isinstance(c, str) and "{{" not in c and "{%" not in c for c in that)
        or not _plain(that)
        or not isinstance(quiet, bool)
    ):
        return None
    if not all(engine.evaluate_conditional(c) is True for c in that):
        return None
    result = {"changed": False, "msg": "All assertions passed"}
    if not quiet:
        result["_ansible_verbose_always"] = True
    return result


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
    """Task by task across the fleet, as `linear`, over Mitogen's connections."""

    def _queue_task(self, host, task, task_vars, play_context):
        result = decided_result(task, task_vars)
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
