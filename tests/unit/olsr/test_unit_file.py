"""The systemd unit shipped with the package agrees with the daemon it starts."""

from __future__ import annotations

import configparser
import pathlib
import shlex
import shutil
import subprocess
import sys
from importlib import resources

import pytest

from cloudrone.olsr import daemon
from cloudrone.olsr.config import DEFAULT_PATH


def unit() -> configparser.ConfigParser:
    text = resources.files("cloudrone.olsr").joinpath("cloudrone-olsrd.service").read_text()
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_unit_uses_notify_watchdog_and_reload() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) >= 4
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert "CAP_NET_ADMIN" in service["CapabilityBoundingSet"]
    assert "AF_NETLINK" in service["RestrictAddressFamilies"]


def test_unit_commands_parse_with_the_daemon_arguments() -> None:
    service = unit()["Service"]
    start = shlex.split(service["ExecStart"])
    check = shlex.split(service["ExecStartPre"])
    assert start[0].endswith("/cloudrone-olsrd") and check[0] == start[0]
    args = daemon.parse_args(start[1:])
    assert args.config == DEFAULT_PATH and args.check is None
    assert daemon.parse_args(check[1:]).check == DEFAULT_PATH


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: pathlib.Path) -> None:
    text = resources.files("cloudrone.olsr").joinpath("cloudrone-olsrd.service").read_text()
    binary = pathlib.Path(sys.executable).with_name("cloudrone-olsrd")
    if not binary.exists():
        pytest.skip("the cloudrone-olsrd console script is not installed next to python")
    path = tmp_path / "cloudrone-olsrd.service"
    path.write_text(text.replace("/usr/local/bin/cloudrone-olsrd", str(binary)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
