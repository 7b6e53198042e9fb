"""Filters the roles share: which interface holds an address, by the gathered facts."""

from __future__ import annotations

import re
from typing import Any


def interfaces_holding(facts: dict[str, Any], addresses: list[str]) -> list[str]:
    """The interfaces (sorted) whose IPv4 addresses include any of ``addresses``.

    ``facts`` is ``ansible_facts``: each interface's facts sit under its name
    with '-', '.' and ':' turned into '_'.
    """
    wanted = {a for a in addresses if a}
    found = []
    for name in facts.get("interfaces", []):
        iface = facts.get(re.sub(r"[-.:]", "_", name)) or {}
        held = [(iface.get("ipv4") or {}).get("address")]
        held += [s.get("address") for s in iface.get("ipv4_secondaries") or []]
        if wanted & set(held):
            found.append(name)
    return sorted(found)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"interfaces_holding": interfaces_holding}
