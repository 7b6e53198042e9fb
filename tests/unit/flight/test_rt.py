"""Loop statistics, absolute sleeps and systemd's notify protocol."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from cloudrone.flight.rt import LoopStats, grant_rt_budget, percentile, sleep_until
from cloudrone.sdnotify import Notifier


def test_percentile_nearest_rank() -> None:
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 99) == 0.0


def test_loop_stats_counts_lateness_and_missed_frames() -> None:
    s = LoopStats(0.02)
    t = 100.0
    for i in range(98):
        assert s.record(t + i * 0.02, t + i * 0.02 + 0.0001) == 0
    # One wake 45 ms late: two deadlines passed without a frame.
    assert s.record(t + 98 * 0.02, t + 98 * 0.02 + 0.045) == 2
    summary = s.summary()
    assert summary["frames"] == 99 and summary["missed_frames"] == 2
    assert summary["late_p50_ms"] == 0.1
    assert summary["late_max_ms"] == 45.0
    assert summary["period_jitter_max_ms"] == 44.9


def test_sleep_until_is_absolute() -> None:
    start = time.monotonic_ns()
    deadline = start + 30_000_000
    sleep_until(deadline)
    assert time.monotonic_ns() >= deadline
    sleep_until(start)  # a deadline in the past returns at once
    assert time.monotonic_ns() - start < 1_000_000_000


def test_notifier_sends_ready_and_paced_watchdog(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(1)
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier(env)
    assert n.watchdog_s == 2.0
    n.send("READY=1")
    assert server.recv(100) == b"READY=1"
    n.watchdog(10.0)
    n.watchdog(10.2)  # under a quarter of 2 s since the last ping: skipped
    n.watchdog(10.6)
    assert server.recv(100) == b"WATCHDOG=1"
    assert server.recv(100) == b"WATCHDOG=1"
    server.setblocking(False)
    try:
        extra = server.recv(100)
    except BlockingIOError:
        extra = b""
    assert extra == b""
    server.close()


def test_notifier_ignores_another_process_watchdog() -> None:
    n = Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_s is None
    n.send("READY=1")  # no socket: silently nothing


def _tree(root: Path, levels: dict[str, int]) -> None:
    for rel, value in levels.items():
        d = root / "cpu" / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.rt_runtime_us").write_text(f"{value}\n")
        (d / "cgroup.procs").write_text("")


PROC = "12:cpu:/docker/d1/system.slice/fb.service\n9:name=systemd:/x\n"


def test_rt_budget_is_handed_down_systemds_levels(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "": 950000,
            "docker": 950000,
            "docker/d1": 200000,
            "docker/d1/system.slice": 0,
            "docker/d1/system.slice/fb.service": 0,
        },
    )
    (tmp_path / "cpu,cpuacct").mkdir()  # an empty look-alike is not the mount
    done = grant_rt_budget(50000, PROC, str(tmp_path))
    unit = tmp_path / "cpu/docker/d1/system.slice/fb.service/cpu.rt_runtime_us"
    assert unit.read_text() == "50000\n"
    assert (tmp_path / "cpu/docker/d1/cpu.rt_runtime_us").read_text() == "200000\n"
    assert len(done) == 2
    assert "already" in grant_rt_budget(50000, PROC, str(tmp_path))[0]


def test_rt_budget_never_raises_the_container_or_machine_levels(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "": 950000,
            "docker": 0,
            "docker/d1": 0,
            "docker/d1/system.slice": 0,
            "docker/d1/system.slice/fb.service": 0,
        },
    )
    done = grant_rt_budget(50000, PROC, str(tmp_path))
    assert "--cpu-rt-runtime" in done[0]
    assert (tmp_path / "cpu/docker/cpu.rt_runtime_us").read_text() == "0\n"
    assert (tmp_path / "cpu/docker/d1/system.slice/cpu.rt_runtime_us").read_text() == "0\n"


def test_rt_budget_without_rt_group_scheduling(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cgroup.procs").write_text("")
    assert "no budget needed" in grant_rt_budget(1000, "3:cpu:/a\n", str(tmp_path))[0]
    assert "cgroup-v1" in grant_rt_budget(1000, "0::/a\n", str(tmp_path))[0]
