"""Real-time plumbing: SCHED_FIFO, memory locking, affinity, absolute sleeps,
loop statistics and systemd's notify protocol (READY, WATCHDOG, STATUS)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLOCK_MONOTONIC = 1
TIMER_ABSTIME = 1
MCL_CURRENT = 1
MCL_FUTURE = 2


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc: Any = None
with contextlib.suppress(OSError):
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def sleep_until(deadline_ns: int) -> None:
    """Sleep until CLOCK_MONOTONIC reaches ``deadline_ns`` (an absolute deadline).

    clock_nanosleep(TIMER_ABSTIME) does not drift the way relative sleeps do,
    and an interrupted sleep simply resumes toward the same deadline.
    """
    if _libc is not None:
        ts = _Timespec(deadline_ns // 1_000_000_000, deadline_ns % 1_000_000_000)
        while True:
            rc = _libc.clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ctypes.byref(ts), None)
            if rc != 4:  # EINTR: go back to sleep toward the same deadline
                return
    remaining = deadline_ns - time.monotonic_ns()
    if remaining > 0:
        time.sleep(remaining / 1e9)


@dataclass
class RealtimeReport:
    fifo: bool = False
    fifo_priority: int = 0
    fifo_error: str | None = None
    memory_locked: bool = False
    memory_error: str | None = None
    cpu_affinity: list[int] = field(default_factory=list)
    affinity_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def setup_realtime(priority: int, lock_memory: bool, cpu_core: int | None) -> RealtimeReport:
    """Ask for what the loop wants; record what was refused instead of failing."""
    report = RealtimeReport()
    if cpu_core is not None:
        try:
            os.sched_setaffinity(0, {cpu_core})
        except OSError as exc:
            report.affinity_error = f"CPU {cpu_core}: {exc.strerror}"
    with contextlib.suppress(OSError):
        report.cpu_affinity = sorted(os.sched_getaffinity(0))
    if priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            report.fifo = True
            report.fifo_priority = priority
        except OSError as exc:
            report.fifo_error = f"{exc.strerror} (errno {exc.errno})"
    else:
        report.fifo_error = "not requested (realtime.fifo_priority: 0)"
    if os.sched_getscheduler(0) == os.SCHED_FIFO and not report.fifo:
        report.fifo = True  # systemd's CPUSchedulingPolicy=fifo already gave it
        report.fifo_priority = os.sched_getparam(0).sched_priority
        report.fifo_error = None
    if lock_memory:
        if _libc is None:
            report.memory_error = "libc not found"
        elif _libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
            err = ctypes.get_errno()
            report.memory_error = f"{os.strerror(err)} (errno {err})"
        else:
            report.memory_locked = True
    return report


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class LoopStats:
    """Lateness of each wake-up against its absolute deadline, and missed frames.

    A frame is missed when the loop wakes a whole period or more late: that
    deadline passed with no pulse update. The window keeps the last minute.
    """

    def __init__(self, period_s: float, window: int = 3000) -> None:
        self.period_s = period_s
        self.frames = 0
        self.missed = 0
        self.max_late_s = 0.0
        self.late: deque[float] = deque(maxlen=window)
        self.intervals: deque[float] = deque(maxlen=window)
        self.last_wake: float | None = None

    def record(self, deadline_s: float, wake_s: float) -> int:
        """Count one wake-up; return how many deadlines were skipped before it."""
        late = max(0.0, wake_s - deadline_s)
        skipped = int(late // self.period_s)
        self.frames += 1
        self.missed += skipped
        self.late.append(late)
        self.max_late_s = max(self.max_late_s, late)
        if self.last_wake is not None:
            self.intervals.append(wake_s - self.last_wake)
        self.last_wake = wake_s
        return skipped

    def summary(self) -> dict[str, float | int]:
        late = sorted(self.late)
        jitter = sorted(abs(i - self.period_s) for i in self.intervals)
        ms = 1000.0
        return {
            "frames": self.frames,
            "missed_frames": self.missed,
            "late_p50_ms": round(percentile(late, 50) * ms, 3),
            "late_p99_ms": round(percentile(late, 99) * ms, 3),
            "late_max_ms": round(self.max_late_s * ms, 3),
            "period_jitter_p50_ms": round(percentile(jitter, 50) * ms, 3),
            "period_jitter_p99_ms": round(percentile(jitter, 99) * ms, 3),
            "period_jitter_max_ms": round((jitter[-1] if jitter else 0.0) * ms, 3),
        }


def _cpu_cgroup(proc_cgroup: str) -> str | None:
    """The cgroup-v1 path of the ``cpu`` controller in /proc/self/cgroup's text."""
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "cpu" in parts[1].split(","):
            return parts[2]
    return None


def grant_rt_budget(
    budget_us: int,
    proc_cgroup: str | None = None,
    cgroup_root: str = "/sys/fs/cgroup",
) -> list[str]:
    """Hand real-time CPU time down to this process's cgroup (cgroup v1 only).

    Kernels with RT group scheduling give every new cgroup 0 us of RT time, so
    SCHED_FIFO fails inside a systemd unit unless each ancestor grants some.
    Raises ``cpu.rt_runtime_us`` to ``budget_us`` on systemd's levels only
    (from the first ``*.slice`` down to our unit); levels above belong to
    whoever runs the machine or the container and are only read. Returns what
    it did or why it could not; never raises (the bridge reports FIFO itself).
    """
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError as exc:
            return [f"cannot read /proc/self/cgroup: {exc.strerror}"]
    path = _cpu_cgroup(proc_cgroup)
    root = Path(cgroup_root)
    mount = next(
        (root / n for n in ("cpu", "cpu,cpuacct") if (root / n / "cgroup.procs").exists()), None
    )
    if path is None or mount is None:
        return ["no cgroup-v1 cpu controller: no RT group budget to grant (FIFO needs none)"]
    if not (mount / "cpu.rt_runtime_us").exists():
        return ["kernel without RT group scheduling: no budget needed"]
    parts = [p for p in path.split("/") if p]
    first_ours = next(
        (i for i, p in enumerate(parts) if p.endswith(".slice")), max(0, len(parts) - 1)
    )
    done: list[str] = []
    current = mount
    for i, part in enumerate(parts):
        current = current / part
        knob = current / "cpu.rt_runtime_us"
        try:
            have = int(knob.read_text())
            if have >= budget_us:
                continue
            if i < first_ours:
                done.append(
                    f"{knob}: only {have} us of real-time time above systemd's slices; "
                    "the container or machine must grant it (docker run --cpu-rt-runtime)"
                )
                break
            knob.write_text(f"{budget_us}\n")
            done.append(f"{knob}: {budget_us}")
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            done.append(f"{knob}: not granted ({reason})")
            break
    return done or [f"{mount}{path}: budget already at least {budget_us} us"]
