"""The relief camp's own services: small, standard library only, for a Pi 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: Path, error: type[Exception], holds: str) -> dict[str, Any]:
    """A service's configuration file: a JSON object, else ``error`` naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: must be a JSON object with {holds}")
    return data
