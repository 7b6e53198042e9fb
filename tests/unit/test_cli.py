"""The CLI's own behaviour that needs no engine: validation output, exit codes."""

from __future__ import annotations

import os
import subprocess

import pytest
from typer.testing import CliRunner

from cloudrone.cli import app
from tests.conftest import ROOT, tool

DEMO = (ROOT / "missions" / "demo" / "mission.yml").read_text()


def test_validate_accepts_the_demo():
    result = CliRunner().invoke(app, ["mission", "validate", str(ROOT / "missions" / "demo")])
    assert result.exit_code == 0, result.output
    assert "mission demo, 3 drone(s), target sim: valid" in " ".join(result.output.split())


def test_problems_with_brackets_are_printed_as_they_are(tmp_path):
    # a value like '[/etc]' must reach the operator literally, not as console markup
    (tmp_path / "mission.yml").write_text(DEMO.replace("mission: demo", "mission: '[/etc]x'"))
    result = CliRunner().invoke(app, ["mission", "validate", str(tmp_path)])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "'[/etc]x' does not match" in " ".join(result.output.split())


def test_fly_is_a_command():
    result = CliRunner().invoke(app, ["fly", "--help"])
    assert result.exit_code == 0
    assert "MANUAL_CONTROL" in result.output


def _cli(*args: str) -> subprocess.CompletedProcess:
    # the installed command, as an operator runs it: tracebacks would show here
    return subprocess.run(
        [tool("cloudrone_cli"), *args], capture_output=True, text=True, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: (d / "mission.yml").mkdir(), "is a folder, not a mission file"),
        (lambda d: (d / "mission.yml").write_bytes(b"\xff\xfemission: x"), "is not UTF-8 text"),
        (lambda d: (d / "mission.yml").write_text("mission: [demo\n"), "not valid YAML"),
        (lambda d: (d / "mission.yml").write_text("- a\n- b\n"), "must be a mapping of keys"),
        (lambda d: (d / "mission.yml").write_text("[" * 3000 + "]" * 3000), "mission.yml"),
        (lambda d: (d / "mission.yml").write_text("x: " + "y" * 2_000_000), "is too large"),
        (lambda d: None, "no such file"),
    ],
)
def test_no_bundle_whatsoever_prints_a_traceback(tmp_path, make, expected):
    make(tmp_path)
    for command in ("validate", "up", "status"):
        result = _cli("mission", command, str(tmp_path))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert expected in " ".join(result.stderr.split())
