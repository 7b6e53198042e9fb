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
