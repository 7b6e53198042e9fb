"""The failover plot's summary of what a phone saw, and the command around it."""

import json

import pytest

from cloudrone.bench.failover import main, summary

LOG = [
    [-1.0, "drone-s1", 2.0],
    [-0.5, "drone-s1", 3.0],
    [0.1, "drone-s2", 301.0],  # the first drone tried is gone: a connect timeout first
    [0.6, "drone-s2", 2.5],
    [1.1, None, 900.0],
    [1.6, "drone-s2", 2.0],
]


def test_summary_counts_who_answered_and_the_slow_requests_after_the_loss():
    s = summary(LOG)
    assert s["requests"] == 6 and s["failed"] == 1
    assert s["answered_by"] == {"drone-s1": 2, "drone-s2": 3, "none": 1}
    assert s["slow_after_loss"] == 2 and s["last_slow_s"] == 1.1
    assert s["ms_max"] == 900.0


def test_summary_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no requests"):
        summary([])


def test_the_command_refuses_figures_without_the_request_log(tmp_path, capsys):
    old = tmp_path / "failover.json"
    old.write_text(json.dumps({"leader": "drone-s1"}))
    assert main(["--figures", str(old)]) == 2
    assert "no requests_log" in capsys.readouterr().err


def test_the_command_draws_the_timeline(tmp_path, capsys):
    figures = {
        "leader": "drone-s1",
        "new_leader_s": 20.8,
        "tasks_elsewhere_s": {"pair": 20.8},
        "replicas_on_leader": {"pair": True},
        "requests_log": {"pair": LOG},
    }
    path = tmp_path / "failover.json"
    path.write_text(json.dumps(figures))
    assert main(["--figures", str(path), "--out", str(tmp_path / "out")]) == 0
    png = tmp_path / "out" / "failover-timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "out" / "failover-run.json").read_text()) == figures
    assert '"failed": 1' in capsys.readouterr().out
