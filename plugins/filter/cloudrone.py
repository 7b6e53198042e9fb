"""Filters the roles share: which interface holds an address, and IPv4 arithmetic.

The address filters stand in for ansible.utils.ipaddr, which needs netaddr on
the controller; these need the standard library alone.
"""

from __future__ import annotations

import ipaddress
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


def network_host(network: str, index: int) -> str:
    """The ``index``-th address of ``network``: 1 is the first host, -1 the last."""
    net = ipaddress.IPv4Network(network, strict=False)
    base = net.network_address if index >= 0 else net.broadcast_address
    address = base + index
    if address not in net:
        raise ValueError(f"{network} has no address number {index}")
    return str(address)


def network_prefix(network: str) -> int:
    return ipaddress.IPv4Network(network, strict=False).prefixlen


def networks_overlap(a: str, b: str) -> bool:
    return ipaddress.IPv4Network(a, strict=False).overlaps(ipaddress.IPv4Network(b, strict=False))


def address_in(address: str, network: str) -> bool:
    return ipaddress.IPv4Address(address) in ipaddress.IPv4Network(network, strict=False)


def is_ipv4_network(value: Any) -> bool:
    try:
        ipaddress.IPv4Network(str(value), strict=True)
    except ValueError:
        return False
    return "/" in str(value)


def dhcp_range(network: str) -> list[str]:
    """The addresses a drone's DHCP server hands to phones: the upper half of its
    access point subnet, short of the last two (its first host is the drone,
    the low half is left for fixed addresses)."""
    net = ipaddress.IPv4Network(network, strict=False)
    if net.num_addresses < 8:
        raise ValueError(f"{network} is too small for phones; give a /29 or larger")
    first = net.network_address + net.num_addresses // 2
    last = net.broadcast_address - 2
    return [str(first), str(last)]


# Channels a drone may use without radar detection (DFS), by regulatory domain.
# 2.4 GHz: 1-11 under FCC-style rules, 1-13 in most of the world, 14 in Japan
# alone (802.11b only). 5 GHz: 36-48 almost everywhere; 149-165 where that band
# is licence-free for WiFi. A country not listed gets the channels legal nearly
# everywhere (1-11, 36-48): a conservative choice, widened by adding it here.
_CHANNELS_1_11 = frozenset({"US", "CA", "TW", "MX", "PR"})
_CHANNELS_1_13 = frozenset(
    {"GB", "DE", "FR", "IT", "ES", "NL", "BE", "AT", "CH", "IE", "PT", "SE", "NO", "DK",
     "FI", "PL", "CZ", "GR", "HU", "RO", "BG", "HR", "SI", "SK", "LT", "LV", "EE", "LU",
     "IS", "MT", "CY", "TR", "UA", "AU", "NZ", "IN", "CN", "SG", "KR", "ZA", "BR", "AR",
     "CL", "PE", "KE", "NG", "GH", "ET", "TZ", "UG", "MA", "EG", "JO", "LB", "PK", "BD",
     "NP", "LK", "ID", "MY", "TH", "VN", "PH", "HT", "JP"}
)  # fmt: skip
_UNII3 = frozenset({"US", "CA", "MX", "PR", "AU", "NZ", "IN", "SG", "TW", "BR", "CN", "KR"})


def channels_allowed(country: str) -> list[int]:
    """The WiFi channels a drone may use in ``country`` (ISO 3166 alpha-2)."""
    country = str(country).upper()
    low = 14 if country == "JP" else 13 if country in _CHANNELS_1_13 else 11
    channels = [*range(1, low + 1), 36, 40, 44, 48]
    if country in _UNII3:
        channels += [149, 153, 157, 161, 165]
    return channels


def default_route_split(metric: int) -> list[str]:
    """The default route as a gateway of this preference announces it (HNA).

    OLSR's HNA carries no metric, and each drone takes the longest prefix that
    matches, so preference is expressed by prefix length: metric 3 announces
    0.0.0.0/0, metric 2 its two halves (/1), metric 1 its four quarters (/2). A
    drone sends by the most preferred gateway it hears; when that one is lost,
    its prefixes go and the next one's take over.
    """
    if metric not in (1, 2, 3):
        raise ValueError(f"a gateway metric is 1 (preferred), 2 or 3; not {metric!r}")
    default = ipaddress.IPv4Network("0.0.0.0/0")
    return [str(n) for n in default.subnets(prefixlen_diff=3 - metric)]


def utf8_length(text: Any) -> int:
    """Bytes of ``text`` in UTF-8: what a WiFi SSID's 32-byte limit counts."""
    return len(str(text).encode("utf-8"))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "interfaces_holding": interfaces_holding,
            "network_host": network_host,
            "network_prefix": network_prefix,
            "networks_overlap": networks_overlap,
            "address_in": address_in,
            "is_ipv4_network": is_ipv4_network,
            "dhcp_range": dhcp_range,
            "channels_allowed": channels_allowed,
            "default_route_split": default_route_split,
            "utf8_length": utf8_length,
        }
