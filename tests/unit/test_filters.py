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


def test_addresses_of_a_network_counted_from_either_end():
    assert filters.network_host("10.42.11.0/24", 1) == "10.42.11.1"
    assert filters.network_host("10.42.11.0/24", -1) == "10.42.11.254"
    assert filters.network_prefix("10.42.11.0/24") == 24
    import pytest

    with pytest.raises(ValueError, match="no address number 300"):
        filters.network_host("10.42.11.0/24", 300)


def test_overlaps_and_membership():
    assert filters.networks_overlap("10.42.0.0/16", "10.42.11.0/24")
    assert not filters.networks_overlap("10.42.11.0/24", "10.42.12.0/24")
    assert filters.address_in("10.42.0.11", "10.42.0.0/24")
    assert not filters.address_in("10.43.0.11", "10.42.0.0/24")
    assert filters.is_ipv4_network("10.42.11.0/24")
    assert not filters.is_ipv4_network("10.42.11.1/24")  # a host, not a network
    assert not filters.is_ipv4_network("10.42.11.0")
    assert not filters.is_ipv4_network("lots")


def test_phones_get_the_upper_half_of_the_subnet_short_of_the_last_two():
    assert filters.dhcp_range("10.42.11.0/24") == ["10.42.11.128", "10.42.11.253"]
    assert filters.dhcp_range("10.42.11.0/29") == ["10.42.11.4", "10.42.11.5"]


def test_channels_follow_the_regulatory_domain():
    assert 13 in filters.channels_allowed("GB") and 14 not in filters.channels_allowed("GB")
    assert 12 not in filters.channels_allowed("US") and 149 in filters.channels_allowed("us")
    assert 14 in filters.channels_allowed("JP")
    assert 149 not in filters.channels_allowed("DE")
    # an unlisted country gets what is legal nearly everywhere
    assert filters.channels_allowed("XX") == [*range(1, 12), 36, 40, 44, 48]
    assert 52 not in filters.channels_allowed("US")  # radar detection: not for drones


def test_a_preferred_gateway_announces_longer_prefixes():
    assert filters.default_route_split(3) == ["0.0.0.0/0"]
    assert filters.default_route_split(2) == ["0.0.0.0/1", "128.0.0.0/1"]
    assert len(filters.default_route_split(1)) == 4
    import pytest

    with pytest.raises(ValueError, match="1 \\(preferred\\), 2 or 3"):
        filters.default_route_split(0)
