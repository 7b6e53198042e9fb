"""systemd's readiness and watchdog notifications (sd_notify(3)) over $NOTIFY_SOCKET.

Shared by the drone's daemons: the OLSR daemon sends the odd READY=1 or
RELOADING=1, the flight bridge pings the watchdog from its 50 Hz loop over a
socket it keeps open. Without systemd (no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Mapping


class Notifier:
    """A notification socket to systemd, kept open; silent when not run by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        watchdog_us = env.get("WATCHDOG_USEC")
        watchdog_pid = env.get("WATCHDOG_PID")
        ok_pid = watchdog_pid is None or watchdog_pid == str(os.getpid())
        try:
            self.watchdog_s = int(watchdog_us) / 1e6 if watchdog_us and ok_pid else None
        except ValueError:
            self.watchdog_s = None
        self.sock: socket.socket | None = None
        self.last_ping = -math.inf
        if self.address:
            if self.address.startswith("@"):  # abstract socket
                self.address = "\0" + self.address[1:]
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, message: str) -> bool:
        """Send ``message`` (e.g. "READY=1"); False when systemd is not listening."""
        if self.sock is None or self.address is None:
            return False
        try:
            self.sock.sendto(message.encode(), self.address)
        except OSError:
            return False
        return True

    def watchdog(self, now: float) -> None:
        """Ping at a quarter of WatchdogSec; call it only from a healthy loop."""
        if self.watchdog_s is not None and now - self.last_ping >= self.watchdog_s / 4:
            self.last_ping = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


def notify(state: str) -> bool:
    """Send one notification; False when not run by systemd."""
    notifier = Notifier()
    try:
        return notifier.send(state)
    finally:
        notifier.close()


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of WatchdogSec), or None without a watchdog."""
    seconds = Notifier().watchdog_s
    return max(seconds / 2, 0.1) if seconds else None
