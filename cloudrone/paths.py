"""Where the project's Ansible content and recipes live.

The Python package runs on the controller next to the playbooks and roles of
the same checkout (or of the folder named by ``CLOUDRONE_HOME``).
"""

from __future__ import annotations

import os
from pathlib import Path


class ProjectNotFound(RuntimeError):
    """The playbooks and roles this package drives cannot be found."""


def project_root() -> Path:
    """The folder holding ``provision.yml``, ``roles/`` and ``images/``."""
    env = os.environ.get("CLOUDRONE_HOME")
    if env:
        root = Path(env).resolve()
        if not (root / "provision.yml").is_file():
            raise ProjectNotFound(
                f"CLOUDRONE_HOME={env} has no provision.yml; "
                "point it at a Cloudrone checkout or unset it"
            )
        return root
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "provision.yml").is_file() and (candidate / "roles").is_dir():
            return candidate
    raise ProjectNotFound(
        "cannot find provision.yml above the cloudrone package; "
        "run from a Cloudrone checkout or set CLOUDRONE_HOME to one"
    )


def state_home() -> Path:
    """Where the CLI keeps run state: never inside a mission bundle.

    ``CLOUDRONE_STATE_DIR`` if set, else ``$XDG_STATE_HOME/cloudrone``, else
    ``~/.local/state/cloudrone``. A bundle travels (it is copied to a base
    camp, packed, shared); what a run leaves behind stays with the user.
    """
    env = os.environ.get("CLOUDRONE_STATE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "cloudrone"


def mission_state_dir(mission_name: str) -> Path:
    """One mission's rendered inventory, fact cache and run logs."""
    return state_home() / "missions" / mission_name
