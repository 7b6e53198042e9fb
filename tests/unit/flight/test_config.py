"""Configuration: defaults, and bad input named with file, line, key and fix.

Every problem reads ``FILE:LINE KEY: what; fix``, as all of Cloudrone's
configurations report (cloudrone.problems).
"""

from pathlib import Path

import pytest

from cloudrone.flight.config import ConfigError, load_config, parse_config
from cloudrone.problems import ConfigProblems


def test_empty_file_gives_safe_defaults() -> None:
    c = parse_config("")
    assert c.failsafe.hold_s == 0.5
    assert c.mavlink.system_id == 1
    assert c.backend.type == "sim"
    assert c.channels["throttle"].min_us == 1000
    assert c.rate_hz == 50.0


def test_full_file(tmp_path: Path) -> None:
    p = tmp_path / "flight.yml"
    p.write_text(
        "mavlink:\n  listen: 127.0.0.1:14601\n  ground_station: 127.0.0.1:14602\n"
        "  system_id: 7\n"
        "backend:\n  type: pca9685\n  pca9685: {bus: 3, address: 0x41}\n"
        "channels:\n  rudder: {reversed: true, expo: 0.3, rc: 4, output: 5}\n"
    )
    c = load_config(p)
    assert c.mavlink.listen == ("127.0.0.1", 14601)
    assert c.mavlink.system_id == 7
    assert c.backend.pca9685.address == 0x41
    assert c.channels["rudder"].reversed and c.channels["rudder"].output == 5
    assert c.source == str(p)


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/cloudrone/flight.yml")
    return info.value.problems


def test_errors_name_file_line_key_and_fix() -> None:
    problems = _problems("failsafe:\n  hold_s: -1\n  descnt_s: 3\n")
    assert problems[0].startswith("/etc/cloudrone/flight.yml:2 failsafe.hold_s: -1")
    assert "from 0.1 to 5.0 s" in problems[0]
    assert "failsafe.descnt_s" in problems[1] and "did you mean failsafe.descent_s" in problems[1]


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("mavlink: {listen: 'here'}", "mavlink.listen", "ADDRESS:PORT"),
        ("mavlink: {ground_station: '10.0.0.1:0'}", "mavlink.ground_station", "1-65535"),
        ("backend: {type: servoblaster}", "backend.type", "sim, pca9685, pigpio"),
        ("channels: {throttle: {reversed: true}}", "channels.throttle.reversed", "false"),
        ("channels: {throttle: {min_us: 1200}}", "channels.throttle.min_us", "zero throttle"),
        ("channels: {aileron: {min_us: 600}}", "channels.aileron.min_us", "800"),
        ("channels: {rudder: {rc: 1}}", "channels", "own"),
        ("realtime: {lock_memory: 'yes'}", "realtime.lock_memory", "true or false"),
        ("battery: {low_voltage: 11, resume_voltage: 10}", "battery.resume_voltage", "at or"),
        ("failsafe: {descent_us: 2100}", "failsafe.descent_us", "1000 to 2000"),
        (
            "backend: {type: pca9685}\nchannels: {rudder: {output: 17}}",
            "channels.rudder.output",
            "0-15",
        ),
        (
            "backend: {type: pca9685}\nbattery: {source: ina219, ina219: {address: 64}}",
            "battery.ina219.address",
            "the pulse board's",
        ),
        ("[1, 2]", "", "mapping"),
        ("failsafe: [", "", "YAML"),
    ],
)
def test_bad_values_are_explained(text: str, key: str, words: str) -> None:
    problems = _problems(text)
    assert any(key in p and words in p for p in problems), problems
    assert all(p.startswith("/etc/cloudrone/flight.yml") for p in problems)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yml")
    assert info.value.problems == [
        f"{tmp_path / 'nope.yml'}: no such file; create it (see docs/flight.md) or pass --config"
    ]


def test_the_shared_reader_refuses_what_is_not_a_config_file(tmp_path: Path) -> None:
    assert issubclass(ConfigError, ConfigProblems)  # one checker for every configuration
    binary = tmp_path / "flight.yml"
    binary.write_bytes(b"mavlink: \xff\n")
    for path, words in ((tmp_path, "is a folder"), (binary, "is not UTF-8 text")):
        with pytest.raises(ConfigError) as info:
            load_config(path)
        (problem,) = info.value.problems
        assert problem.startswith(f"{path}: {words}"), problem


def test_a_rule_across_keys_is_placed_at_the_key_that_must_change() -> None:
    problems = _problems(
        "backend:\n  type: pca9685\n  pca9685: {bus: 1, address: 65}\n"
        "battery:\n  source: ina219\n  ina219:\n    address: 65\n"
    )
    assert problems == [
        "/etc/cloudrone/flight.yml:7 battery.ina219.address: 65 is the pulse board's "
        "(backend.pca9685.address) on bus 1; give the battery monitor its own address "
        "(64, say: the INA219's A0/A1 jumpers choose 64-79)"
    ]


def test_allowed_senders_default_to_the_ground_station_and_accept_networks() -> None:
    c = parse_config("mavlink: {ground_station: 10.42.0.254:14550}")
    assert [str(n) for n in c.mavlink.senders] == ["10.42.0.254/32"]
    c = parse_config("mavlink: {allowed_senders: [10.42.0.254, 10.250.0.0/24]}")
    assert [str(n) for n in c.mavlink.senders] == ["10.42.0.254/32", "10.250.0.0/24"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("[0.0.0.0/0]", "would let anyone fly the drone"),
        ("[ten]", "'ten' is not an IPv4 address or network"),
        ("[]", "is not a list of addresses"),
    ],
)
def test_bad_allowed_senders_are_named(value: str, words: str) -> None:
    (problem,) = _problems(f"mavlink:\n  allowed_senders: {value}\n")
    assert problem.startswith("/etc/cloudrone/flight.yml:2 mavlink.allowed_senders: ")
    assert words in problem and "give a list of IPv4 addresses" in problem


def test_signing_key_is_read_from_its_file(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    c = parse_config(f"mavlink: {{signing_key_file: {key}}}")
    assert c.mavlink.signing_key == bytes([0xAB]) * 32
    assert "abab" not in repr(c)  # the key never shows in logs


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        ("ab" * 32, 0o644, "has mode 0644, others may read the key; chmod 600 it"),
        ("ab" * 16, 0o600, "holds 16 bytes, not 32"),
        ("not hex at all", 0o600, "does not hold hex digits"),
        (None, 0o600, "no such file"),
    ],
)
def test_a_bad_signing_key_file_is_explained(
    tmp_path: Path, content: str | None, mode: int, words: str
) -> None:
    key = tmp_path / "k"
    if content is not None:
        key.write_text(content)
        key.chmod(mode)
    (problem,) = _problems(f"mavlink:\n  signing_key_file: {key}\n")
    assert problem.startswith("/etc/cloudrone/flight.yml:2 mavlink.signing_key_file: ")
    assert words in problem


def test_the_pulse_board_and_the_battery_monitor_default_to_different_addresses() -> None:
    # both sit on I2C bus 1 of a Pi; one default address for both made them collide
    config = parse_config("backend: {type: pca9685}\nbattery: {source: ina219}\n")
    assert config.backend.pca9685.address == 0x40
    assert config.battery.ina219.address == 0x41
