"""The density benchmark's arithmetic: what it reports must follow from what it read."""

from __future__ import annotations

import pytest

from cloudrone.bench.density import (
    creation_stats,
    parse_run_line,
    predicted_limit,
    slope,
    smaps_rollup,
)


def test_creation_stats_of_known_times():
    stats = creation_stats([0.5, 0.1, 0.3, 0.2, 0.4])
    assert stats["mean_s"] == pytest.approx(0.3)
    assert (stats["min_s"], stats["max_s"], stats["p50_s"]) == (0.1, 0.5, 0.3)
    assert stats["cumulative_s"] == pytest.approx(1.5)


def test_creation_stats_of_nothing_is_zero():
    assert set(creation_stats([]).values()) == {0.0}


def test_slope_recovers_a_line():
    xs = [1, 2, 3, 4, 5]
    k, b = slope(xs, [100 + 4 * x for x in xs])
    assert (k, b) == (pytest.approx(4), pytest.approx(100))


def test_slope_needs_two_distinct_points():
    with pytest.raises(ValueError):
        slope([3], [1])
    with pytest.raises(ValueError):
        slope([2, 2], [1, 5])


def test_predicted_limit_counts_whole_containers():
    # 1024 MiB, 224 taken before the first container, 4 MiB each: 200 fit
    assert predicted_limit(1024, 224, 4) == 200
    assert predicted_limit(1024, 224, 3.9) == 205
    assert predicted_limit(100, 200, 4) == 0
    with pytest.raises(ValueError):
        predicted_limit(1024, 0, 0)


def test_parse_run_line():
    line = "R 7 0 1000000000 1250000000 3f2a9c\n"
    assert parse_run_line(line) == {"i": 7, "rc": 0, "seconds": 0.25, "output": "3f2a9c"}
    failed = parse_run_line("R 8 125 1000000000 3000000000 docker: Error response  x\n")
    assert failed is not None and failed["rc"] == 125
    assert failed["output"].startswith("docker: Error")
    assert parse_run_line("some other output") is None


def test_smaps_rollup_in_bytes():
    text = (
        "55d0c0000000-7ffc00000000 ---p 00000000 00:00 0   [rollup]\n"
        "Rss:               13280 kB\n"
        "Pss:                2840 kB\n"
        "Pss_Anon:           2400 kB\n"
        "Shared_Clean:      10400 kB\n"
        "Private_Clean:        40 kB\n"
        "Private_Dirty:      2440 kB\n"
    )
    assert smaps_rollup(text) == {"Rss": 13280 * 1024, "Pss": 2840 * 1024, "Private": 2480 * 1024}
