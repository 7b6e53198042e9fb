"""ansible-core's copy action (which ``template`` also runs), one module run lighter
when a file is already right.

When a file's content matches, the builtin action still runs the ``file``
module on the drone to enforce its mode, owner and group, so an unchanged
template costs two module runs: ``stat``, then ``file``. The ``stat`` it has
just run already says what ``file`` would find. When that answer shows a plain
file with the asked mode, owner and group, and the task asks nothing else of
the file, this action answers "unchanged" from it; in every other case it
runs ``file`` as the builtin action does. A second ``mission up`` runs one
module fewer per template on every drone.

Ansible resolves ``ansible.legacy.copy`` (how ``template`` calls it, and a task
that says ``copy``) to this plugin when its folder is in ``action_plugins``
(ansible.cfg, molecule's ``ANSIBLE_ACTION_PLUGINS``); ``ansible.builtin.copy``
tasks keep the builtin action.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import ansible.plugins.action


def _builtin_copy():
    # Ansible loads this file under the builtin's own module name
    # (ansible.plugins.action.copy), so the builtin is loaded from its file.
    path = Path(ansible.plugins.action.__file__).with_name("copy.py")
    spec = importlib.util.spec_from_file_location("cloudrone_builtin_copy_action", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ActionModule


BuiltinCopy = _builtin_copy()

# What the file module is given besides the attributes compared here: when any
# of these carries a value, the module decides, not this shortcut.
OTHER_ATTRIBUTES = ("attributes", "seuser", "serole", "setype", "selevel")
OCTAL = re.compile(r"^0?[0-7]{3,4}$")


def already_right(args: dict[str, Any], stat: dict[str, Any] | None) -> bool:
    """True when ``stat`` (the stat module's answer for the same path) shows the
    file the file module is asked for: a plain file with the mode, owner and
    group asked, and nothing else asked of it."""
    if not stat or not stat.get("exists") or not stat.get("isreg") or stat.get("islnk"):
        return False
    if args.get("state") != "file" or args.get("recurse"):
        return False
    if any(args.get(key) is not None for key in OTHER_ATTRIBUTES):
        return False
    mode = args.get("mode")
    if mode is not None:
        if isinstance(mode, int):
            wanted = mode
        elif isinstance(mode, str) and OCTAL.match(mode):
            wanted = int(mode, 8)
        else:
            return False  # symbolic ("u+rw") or "preserve": the module works it out
        if int(str(stat.get("mode", "")), 8) != wanted:
            return False
    for key, by_name, by_id in (("owner", "pw_name", "uid"), ("group", "gr_name", "gid")):
        wanted = args.get(key)
        if wanted is None:
            continue
        wanted = str(wanted)
        if wanted != str(stat.get(by_name)) and wanted != str(stat.get(by_id)):
            return False
    return True


class ActionModule(BuiltinCopy):
    _last_stat: tuple[str, dict[str, Any]] | None = None

    def _execute_remote_stat(self, path, all_vars, follow, tmp=None, checksum=True):
        status = super()._execute_remote_stat(
            path, all_vars=all_vars, follow=follow, tmp=tmp, checksum=checksum
        )
        self._last_stat = (path, status) if not follow else None
        return status

    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        if module_name == "ansible.legacy.file" and module_args and self._last_stat:
            path, stat = self._last_stat
            if module_args.get("dest") == path and already_right(module_args, stat):
                return {
                    "changed": False,
                    "path": path,
                    "dest": path,
                    "state": "file",
                    "mode": stat.get("mode"),
                    "owner": stat.get("pw_name"),
                    "group": stat.get("gr_name"),
                    "uid": stat.get("uid"),
                    "gid": stat.get("gid"),
                    "size": stat.get("size"),
                }
        return super()._execute_module(
            module_name=module_name, module_args=module_args, task_vars=task_vars, **kwargs
        )
