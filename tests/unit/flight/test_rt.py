"""Loop statistics, absolute sleeps and systemd's notify protocol."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from cloudrone.flight.rt import LoopStats, Notifier, percentile, sleep_until


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
