"""The CLI's own behaviour that needs no engine: validation output, exit codes."""

from __future__ import annotations

from typer.testing import CliRunner

from cloudrone.cli import app
from tests.conftest import ROOT

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
