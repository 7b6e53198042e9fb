"""Where a value sits in a YAML file, so a problem can be reported as FILE:LINE."""

from __future__ import annotations

from collections.abc import Sequence

import yaml


def compose(text: str) -> yaml.Node | None:
    """The YAML node tree of ``text`` (None when it does not parse)."""
    try:
        return yaml.compose(text)
    except yaml.YAMLError:
        return None


def line_of(root: yaml.Node | None, path: Sequence[str | int], nearest: bool = True) -> int | None:
    """The 1-based line of the key (or list item) at ``path``.

    Where the path does not exist to the end, ``nearest`` gives the line of
    the deepest part that does (a missing key is reported at its parent);
    otherwise None.
    """
    if root is None:
        return None
    node = root
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line if nearest else None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line if nearest else None
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line if nearest else None
    return line
