"""Config validation: every bad input names the file, the key and the fix."""

from __future__ import annotations

import pathlib

import pytest

from cloudrone.olsr import daemon
from cloudrone.olsr.config import ConfigError, load, parse

HOST = ["eth0", "lo", "wlan0"]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(text, "/etc/cloudrone/olsrd.yml", lambda: HOST)
    return err.value.problems


def test_minimal_config_gets_rfc_defaults() -> None:
    cfg = parse("interfaces: [{name: wlan0}]\n", "olsrd.yml", lambda: HOST)
    assert cfg.interfaces == ["wlan0"]
    assert cfg.willingness == 3
    t = cfg.timers
    assert (t.hello_interval, t.neighb_hold, t.tc_interval, t.top_hold) == (2.0, 6.0, 5.0, 15.0)
    assert (t.mid_interval, t.mid_hold, t.hna_interval, t.hna_hold, t.dup_hold) == (
        5.0,
        15.0,
        5.0,
        15.0,
        30.0,
    )
    assert cfg.tc_redundancy == 2
    assert (cfg.status_address, cfg.status_port, cfg.port) == ("127.0.0.1", 9090, 698)


def test_full_config() -> None:
    cfg = parse(
        """
interfaces: [{name: wlan0}, {name: eth0}]
main_address: 10.42.0.7
willingness: 7
hello: {interval: 1, validity: 3}
tc: {interval: 2.5, validity: 7.5, redundancy: 0}
hna: {networks: [10.42.7.0/24, 0.0.0.0/0]}
routes: {table: 100, protocol: 42, metric: 5}
status: {port: 0}
log: {level: debug}
""",
        "olsrd.yml",
        lambda: HOST,
    )
    assert cfg.hna_networks == [("10.42.7.0", 24), ("0.0.0.0", 0)]
    assert (cfg.route_table, cfg.route_protocol, cfg.route_metric) == (100, 42, 5)
    assert cfg.main_address == "10.42.0.7" and cfg.tc_redundancy == 0
    assert cfg.timers.hello_interval == 1 and cfg.status_port == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "interfaces: [{name: wlan9}]",
            "olsrd.yml: interfaces[0].name: 'wlan9' does not exist on this host; "
            "use one of: eth0, lo, wlan0",
        ),
        (
            "interfaces: [{name: wlan0}]\nwillingnes: 3",
            "olsrd.yml: willingnes: unknown key; known keys here: interfaces,",
        ),
        (
            "interfaces: [{name: wlan0}]\nhello: {intervall: 1}",
            "olsrd.yml: hello.intervall: unknown key; known keys here: interval, validity",
        ),
        (
            "interfaces: [{name: wlan0}]\nwillingness: 8",
            "olsrd.yml: willingness: 8 is outside 0..7; use 0 (never relay) .. 7",
        ),
        (
            "interfaces: [{name: wlan0}]\nwillingness: -1",
            "olsrd.yml: willingness: -1 is outside 0..7",
        ),
        (
            "interfaces: [{name: wlan0}]\nhello: {interval: 2, validity: 1}",
            "olsrd.yml: hello.validity: 1 s is shorter than hello.interval 2 s; "
            "make it at least the interval",
        ),
        (
            "interfaces: [{name: wlan0}]\ntc: {interval: 5, validity: 4}",
            "olsrd.yml: tc.validity: 4 s is shorter than tc.interval 5 s",
        ),
        (
            "interfaces: [{name: wlan0}]\nhna: {networks: [10.42.1.1/24]}",
            "olsrd.yml: hna.networks[0]: '10.42.1.1/24' is not a network address "
            "(host bits set); use 10.42.1.0/24",
        ),
        (
            "interfaces: [{name: wlan0}]\nhna: {networks: [10.42.1.0]}",
            "olsrd.yml: hna.networks[0]: '10.42.1.0' has no prefix length",
        ),
        (
            "interfaces: [{name: wlan0}]\nhna: {networks: [banana]}",
            "olsrd.yml: hna.networks[0]: 'banana' is not an IPv4 network",
        ),
        ("willingness: 3", "olsrd.yml: interfaces: is required"),
        ("interfaces: []", "olsrd.yml: interfaces: needs a non-empty list"),
        ("interfaces: [wlan0]", "olsrd.yml: interfaces[0]: 'wlan0' is not a mapping"),
        (
            "interfaces: [{name: wlan0, mode: mesh}]",
            "olsrd.yml: interfaces[0].mode: unknown key",
        ),
        (
            "interfaces: [{name: wlan0}, {name: wlan0}]",
            "olsrd.yml: interfaces[1].name: 'wlan0' is listed twice",
        ),
        ("interfaces: [{name: wlan0}]\nhello: {interval: fast}", "hello.interval: 'fast' is not"),
        ("interfaces: [{name: wlan0}]\nhello: {interval: 0}", "hello.interval: 0 s is outside"),
        ("interfaces: [{name: wlan0}]\nstatus: {port: 70000}", "status.port: 70000 is not a port"),
        ("interfaces: [{name: wlan0}]\nmain_address: 10.1", "main_address: 10.1 is not an IPv4"),
        ("interfaces: [{name: wlan0}]\ntc: {redundancy: 3}", "tc.redundancy: 3 is outside 0..2"),
        ("interfaces: [{name: wlan0}]\nlog: {level: loud}", "log.level: 'loud' is not a log level"),
        ("interfaces: [{name: wlan0}]\nhello: 2", "hello: expected a mapping of keys, got int"),
        ("- a\n- b", "olsrd.yml: top level: expected a mapping of keys, got list"),
        ("interfaces: [{name: wlan0}\n", "olsrd.yml: line 2: not valid YAML"),
    ],
)
def test_bad_input_names_file_key_and_fix(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) or f"olsrd.yml: {expected}" in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems("interfaces: [{name: wlan9}]\nwillingness: 9\nbogus: 1\n")
    assert len(found) == 3


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "olsrd.yml"))
    assert err.value.problems[0].startswith("olsrd.yml: file not found at ")


def test_check_command_accepts_and_refuses(tmp_path: pathlib.Path, capsys) -> None:
    good = tmp_path / "olsrd.yml"
    good.write_text("interfaces: [{name: lo}]\nhna: {networks: [10.42.3.0/24]}\n")
    assert daemon.main(["--check", str(good)]) == 0
    assert "ok (interfaces lo; willingness 3; HNA 10.42.3.0/24)" in capsys.readouterr().out
    bad = tmp_path / "bad.yml"
    bad.write_text("interfaces: [{name: nosuchif0}]\nwillingness: 12\n")
    assert daemon.main(["--check", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("bad.yml: interfaces[0].name: 'nosuchif0' does not exist on this host")
    assert err[1].startswith("bad.yml: willingness: 12 is outside 0..7")
    # the daemon refuses to start on the same file
    assert daemon.main(["--config", str(bad)]) == 1
