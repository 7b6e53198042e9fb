"""One way to say what is wrong in a configuration file, for every part of Cloudrone.

The routing daemon, the flight bridge and the mission loader all read YAML
that a person wrote. Each reports every problem at once, one line each::

    /etc/cloudrone/flight.yml:12 battery.ina219.address: 64 is the pulse board's
    address on bus 1; give the battery monitor its own (65, say)

that is ``FILE:LINE KEY: what is wrong; what to do``, and refuses the file
as a whole. :func:`read_yaml` turns a file that cannot be read at all (missing,
a folder, not UTF-8, too large, not YAML, not a mapping) into such a line
too, so no input ends in a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cloudrone import yamlpos

# A configuration is a page of YAML; anything larger is a mistake (or worse).
MAX_BYTES = 1 << 20


class ConfigProblems(ValueError):
    """A refused file; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def key_of(path: Sequence[str | int]) -> str:
    """``["drones", 2, "name"]`` -> ``drones[2].name``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Problems:
    """The problems found in one file, each placed at its line."""

    source: str
    root: yaml.Node | None = None
    lines: list[str] = field(default_factory=list)

    def add(self, path: Sequence[str | int], what: str) -> None:
        """Report ``what`` (say what is wrong, then ``; `` and the fix) at ``path``."""
        line = yamlpos.line_of(self.root, path)
        where = f"{self.source}:{line}" if line else self.source
        key = key_of(path)
        self.lines.append(f"{where} {key}: {what}" if key else f"{where}: {what}")

    def __bool__(self) -> bool:
        return bool(self.lines)

    def raise_if_any(self, error: type[ConfigProblems] = ConfigProblems) -> None:
        if self.lines:
            raise error(list(self.lines))


def read_yaml(
    path: Path | str,
    *,
    kind: str = "configuration",
    error: type[ConfigProblems] = ConfigProblems,
    missing_fix: str = "check the path",
) -> tuple[dict[str, Any], Problems]:
    """Read a YAML mapping; every way it can fail becomes one line of ``error``.

    Returns the data and an empty :class:`Problems` placed in that file, for
    the caller's own checks.
    """
    path = Path(path)
    shown = str(path)

    def refuse(what: str, line: int | None = None) -> ConfigProblems:
        return error([f"{shown}:{line}: {what}" if line else f"{shown}: {what}"])

    try:
        size = path.stat().st_size
        if path.is_dir():
            raise refuse(f"is a folder, not a {kind} file; point at the YAML file itself")
        if size > MAX_BYTES:
            raise refuse(
                f"{size} bytes is too large for a {kind} file (at most {MAX_BYTES}); "
                "is this the right file?"
            )
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise refuse(f"no such file; {missing_fix}") from None
    except PermissionError:
        raise refuse(
            "cannot be read (permission denied); run as its owner or fix its mode"
        ) from None
    except UnicodeDecodeError as exc:
        raise refuse(
            f"is not UTF-8 text (byte {exc.start}); save it as UTF-8 from a text editor"
        ) from None
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc}); check the file") from None
    return parse_yaml(text, shown, kind=kind, error=error)


def parse_yaml(
    text: str,
    source: str,
    *,
    kind: str = "configuration",
    error: type[ConfigProblems] = ConfigProblems,
) -> tuple[dict[str, Any], Problems]:
    """Parse YAML ``text`` that was read from ``source``, as :func:`read_yaml` does.

    For a caller that already holds the text (a test, a reload); text that is not
    YAML or not a mapping becomes one line of ``error`` naming ``source``.
    """

    def refuse(what: str, line: int | None = None) -> ConfigProblems:
        return error([f"{source}:{line}: {what}" if line else f"{source}: {what}"])

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise refuse(f"not valid YAML: {what}", mark.line + 1 if mark else None) from None
    except RecursionError:
        raise refuse("nested too deeply to be a configuration; simplify it") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise refuse(
            f"the {kind} must be a mapping of keys (key: value), not {type(data).__name__}",
            1,
        )
    return data, Problems(source, yamlpos.compose(text))
