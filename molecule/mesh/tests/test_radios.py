"""The radios' settings on drone A, as a real Pi would get them.

There is no WiFi here: hostapd and wpa_supplicant are installed, their files
rendered and their units enabled, and each unit's condition skips it for
want of a radio. What can be checked without one is checked: each daemon
parses its rendered file and finds no error (it gets as far as asking for the
radio), while the same file with one unknown key planted is refused; the
hostapd keys are ones its packaged reference documents; dnsmasq accepts its
configuration; avahi announces on the access point alone.
"""

from __future__ import annotations

import re

import pytest

testinfra_hosts = ["ansible://drone-a"]

AP_IFACE_OF = "ip -o -4 addr show | awk '/ 10.246.11.1\\//{print $2}'"
MESH_IFACE_OF = "ip -o -4 addr show | awk '/ 10.246.1.11\\//{print $2}'"


def documented_keys(host, path: str) -> set[str]:
    """Keys an example configuration documents, set or commented out: `#key=`."""
    text = host.check_output(f"zcat -f {path}")
    return set(re.findall(r"^\s*#?\s*([a-z0-9_]+)=", text, flags=re.MULTILINE))


def keys_of(text: str) -> list[str]:
    return [
        line.split("=", 1)[0].strip()
        for line in text.splitlines()
        if "=" in line and not line.lstrip().startswith("#") and line.strip() != "}"
    ]


@pytest.fixture(scope="module")
def ap_iface(host) -> str:
    return host.check_output(AP_IFACE_OF)


@pytest.fixture(scope="module")
def mesh_iface(host) -> str:
    return host.check_output(MESH_IFACE_OF)


def test_hostapd_settings_use_documented_keys_only(host, ap_iface):
    conf = host.file(f"/etc/hostapd/{ap_iface}.conf")
    assert conf.mode == 0o600 and conf.user == "root"
    text = conf.content_string
    known = documented_keys(host, "/usr/share/doc/hostapd/examples/hostapd.conf")
    assert len(known) > 300  # the reference, not an empty file
    used = keys_of(text)
    assert set(used) - known == set()
    assert f"interface={ap_iface}" in text and "country_code=GB" in text
    assert "channel=6" in text and "hw_mode=g" in text


@pytest.mark.parametrize(
    ("unit", "iface_fixture"),
    [("hostapd@{}", "ap_iface"), ("wpa_supplicant-nl80211@{}", "mesh_iface")],
)
def test_without_a_radio_the_units_are_enabled_and_skipped(host, request, unit, iface_fixture):
    name = unit.format(request.getfixturevalue(iface_fixture))
    assert host.service(name).is_enabled
    shown = host.check_output(f"systemctl show {name} -p ConditionResult -p ActiveState")
    assert "ConditionResult=no" in shown and "ActiveState=inactive" in shown


def parse(host, daemon: str, path: str, iface: str) -> str:
    """What the daemon says reading ``path``; it stops when it finds no radio."""
    argv = {
        "hostapd": f"hostapd -dd {path}",
        "wpa_supplicant": f"wpa_supplicant -D nl80211 -i {iface} -c {path} -dd",
    }[daemon]
    return host.run(f"timeout 10 {argv} 2>&1").stdout


@pytest.mark.parametrize(
    ("daemon", "path", "iface_fixture", "planted"),
    [
        ("hostapd", "/etc/hostapd/{}.conf", "ap_iface", "bogus_key=1\n"),
        (
            "wpa_supplicant",
            "/etc/wpa_supplicant/wpa_supplicant-nl80211-{}.conf",
            "mesh_iface",
            'network={\n ssid="x"\n bogus_key=1\n}\n',
        ),
    ],
)
def test_each_daemon_parses_its_settings_and_refuses_a_planted_error(
    host, request, daemon, path, iface_fixture, planted
):
    iface = request.getfixturevalue(iface_fixture)
    path = path.format(iface)
    said = parse(host, daemon, path, iface)
    assert "Failed to initialize driver 'nl80211'" in said, said  # read it all, then no radio
    assert not re.search(r"^Line \d+:|errors? found|failed to parse", said, re.M | re.I), said
    # the control: one unknown key, and the same daemon refuses the file
    host.run(f"cp {path} /tmp/planted.conf && printf '{planted}' >> /tmp/planted.conf")
    refused = parse(host, daemon, "/tmp/planted.conf", iface)
    host.run("rm -f /tmp/planted.conf")
    assert re.search(r"^Line \d+: unknown .*'bogus_key'", refused, re.M), refused


def test_the_ibss_cell_is_as_the_inventory_says(host, mesh_iface):
    conf = host.file(f"/etc/wpa_supplicant/wpa_supplicant-nl80211-{mesh_iface}.conf")
    assert conf.mode == 0o600
    text = conf.content_string
    assert "mode=1" in text and "frequency=2412" in text and "country=GB" in text
    assert "bssid=02:ca:fe:00:00:01" in text and "key_mgmt=NONE" in text


def test_dnsmasq_accepts_its_whole_configuration(host):
    assert host.run("dnsmasq --test").rc == 0
    assert host.service("dnsmasq").is_running and host.service("dnsmasq").is_enabled


def test_avahi_announces_the_service_on_the_access_point_alone(host, ap_iface):
    assert host.service("avahi-daemon").is_running
    conf = host.file("/etc/avahi/avahi-daemon.conf").content_string
    assert f"allow-interfaces={ap_iface}" in conf
    service = host.file("/etc/avahi/services/cloudrone-camp.service").content_string
    assert "<type>_http._tcp</type>" in service and "<port>8080</port>" in service
    assert "10.246.1.13 camp.local" in host.file("/etc/avahi/hosts").content_string
