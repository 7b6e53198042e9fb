"""The filters the roles share."""

from __future__ import annotations

import importlib.util

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    "cloudrone_filters", ROOT / "plugins/filter/cloudrone.py"
)
filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filters)

FACTS = {
    "interfaces": ["lo", "eth0", "wlan0", "br-ap.5"],
    "lo": {"ipv4": {"address": "127.0.0.1"}},
    "eth0": {"ipv4": {"address": "10.250.0.11"}},
    "wlan0": {"ipv4": {"address": "10.9.9.9"}, "ipv4_secondaries": [{"address": "10.42.0.11"}]},
    "br_ap_5": {"ipv4": {"address": "10.42.11.1"}},
    "ghost": {},
}


def test_the_interfaces_holding_addresses_primary_or_secondary():
    found = filters.interfaces_holding(FACTS, ["10.42.0.11", "10.250.0.11"])
    assert found == ["eth0", "wlan0"]
    assert filters.interfaces_holding(FACTS, ["10.42.11.1"]) == ["br-ap.5"]
    assert filters.interfaces_holding(FACTS, ["", "192.0.2.1"]) == []
    assert filters.interfaces_holding({}, ["10.42.0.11"]) == []
