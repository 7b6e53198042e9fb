"""Config validation: every bad input names the file, its line, the key and the fix."""

from __future__ import annotations

import pathlib

import pytest

from cloudrone.olsr import daemon
from cloudrone.olsr.config import ConfigError, load, parse
from cloudrone.olsr.constants import PROFILES
from cloudrone.problems import MAX_BYTES, ConfigProblems

HOST = ["eth0", "lo", "wlan0"]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(text, "olsrd.yml", lambda: HOST)
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
            "olsrd.yml:1 interfaces[0].name: 'wlan9' does not exist on this host; "
            "use one of: eth0, lo, wlan0",
        ),
        (
            "interfaces: [{name: wlan0}]\nwillingnes: 3",
            "olsrd.yml:2 willingnes: unknown key; known keys here: interfaces,",
        ),
        (
            "interfaces: [{name: wlan0}]\nhello: {intervall: 1}",
            "olsrd.yml:2 hello.intervall: unknown key; known keys here: interval, validity",
        ),
        (
            "interfaces: [{name: wlan0}]\nwillingness: 8",
            "olsrd.yml:2 willingness: 8 is outside 0..7; use 0 (never relay) .. 7",
        ),
        (
            "interfaces: [{name: wlan0}]\nwillingness: -1",
            "olsrd.yml:2 willingness: -1 is outside 0..7",
        ),
        (
            "interfaces: [{name: wlan0}]\nhello: {interval: 2, validity: 1}",
            "olsrd.yml:2 hello.validity: 1 s is shorter than hello.interval 2 s; "
            "make it at least the interval",
        ),
        (
            "interfaces: [{name: wlan0}]\ntc: {interval: 5, validity: 4}",
            "olsrd.yml:2 tc.validity: 4 s is shorter than tc.interval 5 s",
        ),
        (
            "interfaces: [{name: wlan0}]\nhna: {networks: [10.42.1.1/24]}",
            "olsrd.yml:2 hna.networks[0]: '10.42.1.1/24' is not a network address "
            "(host bits set); use 10.42.1.0/24",
        ),
        (
            "interfaces: [{name: wlan0}]\nhna: {networks: [10.42.1.0]}",
            "olsrd.yml:2 hna.networks[0]: '10.42.1.0' has no prefix length",
        ),
        (
            "interfaces: [{name: wlan0}]\nhna: {networks: [banana]}",
            "olsrd.yml:2 hna.networks[0]: 'banana' is not an IPv4 network",
        ),
        ("willingness: 3", "olsrd.yml:1 interfaces: is required"),
        ("interfaces: []", "olsrd.yml:1 interfaces: needs a non-empty list"),
        ("interfaces: [wlan0]", "olsrd.yml:1 interfaces[0]: 'wlan0' is not a mapping"),
        (
            "interfaces: [{name: wlan0, mode: mesh}]",
            "olsrd.yml:1 interfaces[0].mode: unknown key",
        ),
        (
            "interfaces: [{name: wlan0}, {name: wlan0}]",
            "olsrd.yml:1 interfaces[1].name: 'wlan0' is listed twice",
        ),
        (
            "interfaces: [{name: wlan0}]\nhello: {interval: fast}",
            "olsrd.yml:2 hello.interval: 'fast' is not",
        ),
        (
            "interfaces: [{name: wlan0}]\nhello: {interval: 0}",
            "olsrd.yml:2 hello.interval: 0 s is outside",
        ),
        (
            "interfaces: [{name: wlan0}]\nstatus: {port: 70000}",
            "olsrd.yml:2 status.port: 70000 is not a port",
        ),
        (
            "interfaces: [{name: wlan0}]\nmain_address: 10.1",
            "olsrd.yml:2 main_address: 10.1 is not an IPv4",
        ),
        (
            "interfaces: [{name: wlan0}]\ntc: {redundancy: 3}",
            "olsrd.yml:2 tc.redundancy: 3 is outside 0..2",
        ),
        (
            "interfaces: [{name: wlan0}]\nlog: {level: loud}",
            "olsrd.yml:2 log.level: 'loud' is not a log level",
        ),
        (
            "interfaces: [{name: wlan0}]\nhello: 2",
            "olsrd.yml:2 hello: expected a mapping of keys, got int",
        ),
        (
            "interfaces: [{name: wlan0}]\nhna: {fleet: [10.42.0.11, drone-2]}",
            "olsrd.yml:2 hna.fleet[1]: 'drone-2' is not an IPv4 address",
        ),
        (
            "interfaces: [{name: wlan0}]\nhna: {accept: [10.43.1.5/24]}",
            "olsrd.yml:2 hna.accept[0]: '10.43.1.5/24' is not a network address",
        ),
        ("- a\n- b", "olsrd.yml:1: the routing configuration must be a mapping of keys"),
        ("interfaces: [{name: wlan0}\n", "olsrd.yml:2: not valid YAML"),
    ],
)
def test_bad_input_names_file_key_and_fix(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems("interfaces: [{name: wlan9}]\nwillingness: 9\nbogus: 1\n")
    assert len(found) == 3


def test_problems_sit_at_their_lines() -> None:
    found = problems(
        "# the drone's routing\n"
        "interfaces:\n"
        "  - name: wlan0\n"
        "  - name: wlan9\n"
        "hello:\n"
        "  interval: 2\n"
        "  validity: 1\n"
        "willingness: 9\n"
    )
    assert found == [
        "olsrd.yml:4 interfaces[1].name: 'wlan9' does not exist on this host; "
        "use one of: eth0, lo, wlan0",
        "olsrd.yml:8 willingness: 9 is outside 0..7; "
        "use 0 (never relay) .. 7 (always relay); 3 is the default",
        "olsrd.yml:7 hello.validity: 1 s is shorter than hello.interval 2 s; "
        "make it at least the interval (RFC 3626 uses 3 x interval: 6)",
    ]


def test_config_error_is_the_projects_config_problems() -> None:
    assert issubclass(ConfigError, ConfigProblems)


def test_the_fast_profile_sets_every_timer() -> None:
    cfg = parse("interfaces: [{name: wlan0}]\nprofile: fast\n", "olsrd.yml", lambda: HOST)
    fast = PROFILES["fast"]
    t = cfg.timers
    assert cfg.profile == "fast"
    assert (t.hello_interval, t.neighb_hold) == (fast["hello_interval"], fast["hello_validity"])
    assert (t.tc_interval, t.top_hold) == (fast["tc_interval"], fast["tc_validity"])
    assert (t.mid_interval, t.mid_hold) == (fast["mid_interval"], fast["mid_validity"])
    assert (t.hna_interval, t.hna_hold) == (fast["hna_interval"], fast["hna_validity"])
    assert cfg.max_jitter == fast["max_jitter"]
    assert t.neighb_hold < 3.0  # the point of it: a lost neighbour is noticed in time
    rfc = parse("interfaces: [{name: wlan0}]\nprofile: rfc\n", "olsrd.yml", lambda: HOST)
    assert rfc.timers == parse("interfaces: [{name: wlan0}]\n", "olsrd.yml", lambda: HOST).timers
    assert rfc.max_jitter == 0.5


def test_explicit_timers_override_the_profile() -> None:
    cfg = parse(
        "interfaces: [{name: wlan0}]\nprofile: fast\nhello: {validity: 2.0}\nmax_jitter: 0\n",
        "olsrd.yml",
        lambda: HOST,
    )
    assert cfg.timers.neighb_hold == 2.0 and cfg.max_jitter == 0
    assert cfg.timers.hello_interval == PROFILES["fast"]["hello_interval"]


def test_a_profiles_validity_shorter_than_an_explicit_interval_says_so() -> None:
    found = problems("interfaces: [{name: wlan0}]\nprofile: fast\nhello: {interval: 2}\n")
    assert found == [
        "olsrd.yml:3 hello.validity: 1.5 s (profile fast) is shorter than hello.interval 2 s; "
        "make it at least the interval (RFC 3626 uses 3 x interval: 6)"
    ]


def test_an_unknown_profile() -> None:
    assert problems("interfaces: [{name: wlan0}]\nprofile: quick\n") == [
        "olsrd.yml:2 profile: 'quick' is not a timer profile; use one of: rfc, fast "
        "(a lost neighbour is noticed after 6 s (rfc), 1.5 s (fast))"
    ]


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "olsrd.yml"))
    assert err.value.problems == [
        f"{tmp_path}/olsrd.yml: no such file; create it (see docs/olsr.md) or pass --config"
    ]


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda p: p.mkdir(), "is a folder, not a routing configuration file"),
        (lambda p: p.write_bytes(b"interfaces: [{name: w\xe9}]\n"), "is not UTF-8 text (byte 21)"),
        (lambda p: p.write_bytes(b"#" * (MAX_BYTES + 1)), "bytes is too large for a routing"),
        (lambda p: p.write_text("- name: wlan0\n"), "the routing configuration must be a mapping"),
        (lambda p: p.write_text("interfaces: [\n"), "not valid YAML"),
    ],
)
def test_an_unreadable_file_is_one_line(tmp_path: pathlib.Path, write, expected: str) -> None:
    path = tmp_path / "olsrd.yml"
    write(path)
    with pytest.raises(ConfigError) as err:
        load(str(path))
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(str(path))
    assert expected in err.value.problems[0]


def test_check_command_accepts_and_refuses(tmp_path: pathlib.Path, capsys) -> None:
    good = tmp_path / "olsrd.yml"
    good.write_text("interfaces: [{name: lo}]\nhna: {networks: [10.42.3.0/24]}\nprofile: fast\n")
    assert daemon.main(["--check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "ok (interfaces lo; willingness 3; HNA 10.42.3.0/24; timers fast, HELLO 0.5 s" in out
    bad = tmp_path / "bad.yml"
    bad.write_text("interfaces: [{name: nosuchif0}]\nwillingness: 12\n")
    assert daemon.main(["--check", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{bad}:1 interfaces[0].name: 'nosuchif0' does not exist on this host")
    assert err[1].startswith(f"{bad}:2 willingness: 12 is outside 0..7")
    # the daemon refuses to start on the same file
    assert daemon.main(["--config", str(bad)]) == 1


def test_check_command_on_a_folder_is_one_line(tmp_path: pathlib.Path, capsys) -> None:
    assert daemon.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{tmp_path}: is a folder, not a routing configuration file; point at the YAML file itself"
    ]


def test_the_hna_policy_believes_the_missions_networks_from_the_fleet() -> None:
    cfg = parse(
        "interfaces: [{name: wlan0}]\nhna:\n  accept: [10.42.0.0/24, 10.43.0.0/16]\n"
        "  gateways: [10.42.0.13]\n  fleet: [10.42.0.11, 10.42.0.12, 10.42.0.13]\n",
        "olsrd.yml",
        lambda: HOST,
    )
    policy = daemon.hna_policy(cfg)
    assert policy.refuse("10.42.0.12", "10.43.2.0", 24) is None
    assert policy.refuse("10.42.0.12", "10.43.1.5", 32) is None  # a phone's host route
    assert policy.refuse("10.42.0.12", "0.0.0.0", 0) == "outside"  # not a gateway
    assert policy.refuse("10.42.0.12", "10.250.0.254", 32) == "outside"  # the controller
    assert policy.refuse("10.42.0.13", "0.0.0.0", 1) is None  # a gateway's split default
    assert policy.refuse("10.42.0.99", "10.43.1.5", 32) == "stranger"
    open_mesh = daemon.hna_policy(parse("interfaces: [{name: wlan0}]\n", "olsrd.yml", lambda: HOST))
    assert open_mesh.refuse("10.42.0.99", "0.0.0.0", 0) is None  # no policy: RFC 3626
