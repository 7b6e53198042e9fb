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
nine-drone run), then copies them, value by value, into the task's
variables; here each drone's facts are decoded and copied once per run, and
again only after they change.

A module from a collection (authorized_key, the docker modules...) makes
Mitogen's worker list every installed collection, reading each one's
manifest (the `ansible` package brings about 180), to hand their folders to
the drone: some 0.6 s of CPU each time, in a worker that forgets the answer
when it ends. The list is made once here, before the first worker is forked,
and every worker inherits it.

Every worker compiles the Jinja templates it renders (a task's arguments, a
template file, a condition) to Python code afresh, and forgets them when it
ends: the same few hundred templates compiled again for every task on every
drone, a fifth of a worker's time. Compiled code is kept on disk
(`TemplateCache`), as Python keeps its own bytecode, and read back by the
next worker that compiles the same template under the same settings.
"""

from __future__ import annotations

import functools
import hashlib
import marshal
import os
import shutil
import sys
import tempfile
import types
from contextvars import ContextVar
from pathlib import Path

import ansible.vars.manager
import ansible_mitogen.loaders
import ansible_mitogen.planner
import ansible_mitogen.strategy
from ansible import constants as C
from ansible._internal._task import TaskContext
from ansible._internal._templating._engine import TemplateEngine
from ansible._internal._templating._jinja_bits import AnsibleEnvironment, _TemplateCompileContext
from ansible.collections.list import list_collection_dirs
from ansible.executor.task_executor import TaskExecutor
from ansible.executor.task_result import _RawTaskResult
from ansible.plugins import loader as plugin_loader
from ansible.plugins.loader import action_loader
from ansible.release import __version__ as ansible_version
from jinja2 import __version__ as jinja_version
from jinja2 import nodes
from jinja2.utils import _PassArg

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


# What in an environment shapes the code a template compiles to, besides its
# classes, its extensions and its finalize function.
_SHAPING = (
    "block_start_string", "block_end_string", "variable_start_string", "variable_end_string",
    "comment_start_string", "comment_end_string", "line_statement_prefix",
    "line_comment_prefix", "trim_blocks", "lstrip_blocks", "newline_sequence",
    "keep_trailing_newline", "optimized", "is_async", "autoescape", "sandboxed",
    "intercepted_binops", "intercepted_unops",
)  # fmt: skip
# Cache folders hold one folder per Python, Jinja and ansible-core; a folder
# past this many entries is emptied (a run of the project's playbook makes
# about 300).
_MOST = 5000
# The expression being compiled (Jinja compiles it from its parsed form).
_EXPRESSION: ContextVar[str | None] = ContextVar("cloudrone_expression", default=None)


def _described(value) -> str:
    """A setting as text for the key: functions and classes by their names."""
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return repr(value)


class TemplateCache:
    """Jinja's compiled templates kept in a folder, between workers and runs.

    The key is a digest of what the code depends on: the template's text,
    its name and file name, whether Ansible escapes backslashes in its
    expressions, the environment's settings (_SHAPING), its classes,
    extensions and finalize function, and the versions of Python, Jinja and
    ansible-core (the folder). Jinja also looks up each filter and test a
    template calls while it compiles it, and the code differs by what each
    asks to be passed: an entry keeps those it was compiled against, and is
    used only while they are the same. Anything that cannot be read (a
    damaged entry, a plugin that fails to load) compiles as before.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.hits = 0

    @classmethod
    def at(cls, root: Path) -> TemplateCache | None:
        """The cache under ``root``, made if missing; None when it is not
        this user's own (entries are code this process will run)."""
        folder = (
            root / f"{sys.implementation.cache_tag}-jinja{jinja_version}-ansible{ansible_version}"
        )
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            for place in (root, folder):
                st = place.stat()
                if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                    return None
        except OSError:
            return None
        return cls(folder)

    def key(self, env, text: str, kind: str, name, filename, defer_init: bool) -> str:
        context = _TemplateCompileContext.current(optional=True)
        parts = (
            kind, name, filename, defer_init,
            context.escape_backslashes if context else None,
            _described(type(env)), _described(env.code_generator_class),
            _described(type(env.lexer)), _described(env.finalize),
            *(_described(getattr(env, setting, None)) for setting in _SHAPING),
            sorted(env.extensions),
        )  # fmt: skip
        digest = hashlib.sha256(repr(parts).encode())
        digest.update(b"\0")
        digest.update(text.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def load(self, key: str, env):
        """The code kept under ``key``, if the filters and tests it calls are
        still the ones it was compiled against."""
        try:
            callees, code = marshal.loads((self.folder / key).read_bytes())
            if not isinstance(code, types.CodeType):
                return None
            if any(tuple(entry[2:]) != _callee(env, *entry[:2]) for entry in callees):
                return None
        except Exception:  # damaged, or a plugin that fails to load: compile as before
            return None
        self.hits += 1
        return code

    def store(self, key: str, code, callees) -> None:
        try:
            with tempfile.NamedTemporaryFile(dir=self.folder, delete=False) as out:
                out.write(marshal.dumps((callees, code)))
            os.replace(out.name, self.folder / key)
        except OSError:
            pass

    def prune(self) -> None:
        """Empty the folder past _MOST entries; drop other versions' folders."""
        try:
            for other in self.folder.parent.iterdir():
                if other != self.folder and other.is_dir():
                    shutil.rmtree(other, ignore_errors=True)
            if sum(1 for _ in os.scandir(self.folder)) > _MOST:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            pass


def _callee(env, kind: str, name: str) -> tuple:
    """What the code compiled for a call of filter or test ``name`` depends on:
    whether it exists, and what Jinja passes it (context, environment...)."""
    func = (env.filters if kind == "filter" else env.tests).get(name)
    passed = _PassArg.from_obj(func) if func is not None else None
    return (func is not None, passed.name if passed else None)


def _callees(env, tree) -> tuple:
    """The filters and tests a parsed template calls, each with _callee."""
    calls = {("filter" if isinstance(node, nodes.Filter) else "test", node.name)
             for node in tree.find_all((nodes.Filter, nodes.Test))}  # fmt: skip
    return tuple((kind, name, *_callee(env, kind, name)) for kind, name in sorted(calls))


def template_cache_root() -> Path | None:
    """``CLOUDRONE_TEMPLATE_CACHE`` (a folder, or ``off``), else
    ``$XDG_CACHE_HOME/cloudrone/templates``, else ``~/.cache/cloudrone/templates``."""
    env = os.environ.get("CLOUDRONE_TEMPLATE_CACHE")
    if env:
        return None if env == "off" else Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "cloudrone" / "templates"


@functools.cache
def _template_cache() -> TemplateCache | None:
    """The run's cache, made (and pruned) once, in the playbook's process
    before the first worker is forked: every worker inherits it."""
    root = template_cache_root()
    cache = TemplateCache.at(root) if root else None
    if cache:
        cache.prune()
    return cache


def cached_compile(
    cache, compile_, env, source, name=None, filename=None, raw=False, defer_init=False
):
    """``compile_`` (Jinja's Environment.compile) through ``cache``."""
    expression = _EXPRESSION.get()
    if isinstance(source, str):
        text, kind = source, "template"
    elif expression is not None and isinstance(source, nodes.Template):
        text, kind = expression, "expression"
    else:
        text = None
    if cache is None or text is None or raw or getattr(env, "_debuggable_template_source", False):
        return compile_(env, source, name, filename, raw, defer_init)
    token = _EXPRESSION.set(None)  # a compile inside this one is not the expression
    try:
        key = cache.key(env, text, kind, name, filename, defer_init)
        code = cache.load(key, env)
        if code is None:
            code = compile_(env, source, name, filename, raw, defer_init)
            tree = source if kind == "expression" else env._parse(source, name, filename)
            cache.store(key, code, _callees(env, tree))
        return code
    finally:
        _EXPRESSION.reset(token)


# Jinja's own methods, also when this file is loaded a second time
_jinja_compile = getattr(AnsibleEnvironment.compile, "__wrapped__", AnsibleEnvironment.compile)
_jinja_compile_expression = getattr(
    AnsibleEnvironment.compile_expression, "__wrapped__", AnsibleEnvironment.compile_expression
)


def _compile(self, source, name=None, filename=None, raw=False, defer_init=False):
    return cached_compile(
        _template_cache(), _jinja_compile, self, source, name, filename, raw, defer_init
    )


def _compile_expression(self, source, *args, **kwargs):
    token = _EXPRESSION.set(source)
    try:
        return _jinja_compile_expression(self, source, *args, **kwargs)
    finally:
        _EXPRESSION.reset(token)


_compile.__wrapped__ = _jinja_compile
_compile_expression.__wrapped__ = _jinja_compile_expression
AnsibleEnvironment.compile = _compile
AnsibleEnvironment.compile_expression = _compile_expression


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
            facts = self._decoded[key] = self._cache.get(key)  # KeyError as before
            _COPIES[id(facts)] = (facts, None)
        return self._decoded[key]

    def set(self, key: str, value: dict) -> None:
        self._forget(key)
        self._cache.set(key, value)

    def delete(self, key: str) -> None:
        self._forget(key)
        self._cache.delete(key)

    def _forget(self, key: str) -> None:
        facts = self._decoded.pop(key, None)
        if facts is not None:
            _COPIES.pop(id(facts), None)

    def __getattr__(self, name: str):
        return getattr(self._cache, name)


_namespace_facts = getattr(
    ansible.vars.manager.namespace_facts, "__wrapped__", ansible.vars.manager.namespace_facts
)
# The facts DecodedFacts hands out, by id, with their copy under ansible_facts
# once made; an entry goes when its drone's facts are set or deleted.
_COPIES: dict[int, tuple[dict, dict | None]] = {}


def namespace_facts(facts: dict) -> dict:
    """Ansible's copy of a drone's facts into a task's variables, made once
    for each version of them DecodedFacts hands out (the same object until
    they are set again); any other dictionary is copied as Ansible does.
    Nothing changes a task's ansible_facts in place (Ansible and its actions
    combine them into new dictionaries), and a worker has its own copy of
    everything."""
    kept = _COPIES.get(id(facts))
    if kept is None or kept[0] is not facts:
        return _namespace_facts(facts)
    if kept[1] is None:
        kept = _COPIES[id(facts)] = (facts, _namespace_facts(facts))
    return {"ansible_facts": kept[1]["ansible_facts"]}


namespace_facts.__wrapped__ = _namespace_facts
ansible.vars.manager.namespace_facts = namespace_facts


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
    """Task by task across the fleet, as `linear`, over Mitogen's connections."""

    def __init__(self, tqm) -> None:
        super().__init__(tqm)
        variables = self._variable_manager
        if not isinstance(variables._fact_cache, DecodedFacts):
            variables._fact_cache = DecodedFacts(variables._fact_cache)

    def run(self, iterator, play_context):
        # here, so that every worker forked from now on has them
        _collection_dirs()
        _template_cache()
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
