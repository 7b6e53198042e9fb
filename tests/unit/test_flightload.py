"""The flight-under-load benchmark's pure parts: CPU accounting, jitter, the provisioning plan."""

import pytest

from cloudrone.bench.flightload import (
    NO_FIFO,
    NO_SLICE,
    SCENARIOS,
    Scenario,
    busy_percent,
    cpu_times,
    goal_met,
    jitter_figures,
    plan,
)

STAT_BEFORE = """\
cpu  300 0 100 1000 0 0 0 0 0 0
cpu0 100 0 50 500 0 0 0 0 0 0
cpu1 200 0 50 500 0 0 0 0 0 0
intr 12345
"""
STAT_AFTER = """\
cpu  600 0 100 1300 0 0 0 0 0 0
cpu0 400 0 50 500 0 0 0 0 0 0
cpu1 200 0 50 800 0 0 0 0 0 0
"""


def test_cpu_times_reads_each_core_and_skips_the_total():
    assert cpu_times(STAT_BEFORE) == {0: (150, 650), 1: (250, 750)}


def test_busy_percent_is_the_share_of_ticks_a_core_was_not_idle():
    busy = busy_percent(cpu_times(STAT_BEFORE), cpu_times(STAT_AFTER))
    assert busy == {0: 100.0, 1: 0.0}


def test_iowait_counts_as_idle():
    before = cpu_times("cpu0 0 0 0 0 0 0 0 0\n")
    after = cpu_times("cpu0 10 0 0 40 50 0 0 0\n")
    assert busy_percent(before, after) == {0: 10.0}


def test_jitter_of_a_steady_loop_and_of_one_late_frame():
    steady = jitter_figures([i * 0.02 for i in range(101)])
    assert steady["frames"] == 101
    assert steady["jitter_p99_ms"] == pytest.approx(0, abs=1e-6)
    times = [i * 0.02 for i in range(101)]
    times[50] += 0.003  # one frame 3 ms late: two intervals off by 3 ms
    late = jitter_figures(times)
    assert late["jitter_max_ms"] == pytest.approx(3.0, abs=1e-3)
    assert late["jitter_p50_ms"] == pytest.approx(0, abs=1e-6)


def test_jitter_needs_two_frames():
    with pytest.raises(ValueError, match="fewer than two frames"):
        jitter_figures([1.0])


def test_goal_needs_both_low_jitter_and_no_missed_frame():
    assert goal_met({"jitter_p99_ms": 0.2, "missed_frames": 0})
    assert not goal_met({"jitter_p99_ms": 0.2, "missed_frames": 1})
    assert not goal_met({"jitter_p99_ms": 0.5, "missed_frames": 0})


def test_plan_provisions_only_when_the_variables_change():
    steps = plan(SCENARIOS)
    assert [sc.name for sc, _ in steps] == [sc.name for sc in SCENARIOS]
    provisioned = [sc.name for sc, variables in steps if variables is not None]
    # idle and slice share the role's defaults; every other scenario changes something
    assert provisioned == ["idle", "slice-nofifo", "noslice-nofifo", "noslice"]


def test_scenarios_say_what_they_turn_off():
    by_name = {sc.name: sc for sc in SCENARIOS}
    assert by_name["slice"].slice and by_name["slice"].fifo
    assert not by_name["noslice"].slice and by_name["noslice"].fifo
    assert by_name["slice-nofifo"].slice and not by_name["slice-nofifo"].fifo
    assert not by_name["noslice-nofifo"].slice and not by_name["noslice-nofifo"].fifo
    assert Scenario("x", "x", 1, NO_SLICE | NO_FIFO).variables == {
        "docker_engine_reserved_cpus": [],
        "docker_engine_cpu_share_percent": 100,
        "flight_bridge_fifo_priority": 0,
    }
