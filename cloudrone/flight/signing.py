"""MAVLink 2 signing as the bridge checks it: the signature first, the clock second.

pymavlink's own check records a stream's timestamp before it compares the
signature, so a single forged frame whose timestamp lies far in the future
makes every genuine frame after it look old: the pilot is locked out and the
link-loss failsafe starts. Here a frame's timestamp counts for nothing until
its signature holds, and a signed timestamp too far ahead of the drone's own
clock is refused too (a station whose clock runs ahead would otherwise push
the drone's counter forward and lock out every station that keeps time).

Refusals are kept in ``refusals`` (bad signature, replay, stale stream,
ahead of the clock) for the bridge to count.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from collections import deque
from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mavlink

SIGNING_EPOCH = 1420070400  # 2015-01-01 00:00:00 UTC: MAVLink signing timestamps start here
TICKS_PER_S = 100_000  # a signing timestamp counts 10 us steps
# A new stream may start at most this far behind the drone's counter (the spec's minute).
NEW_STREAM_BEHIND = 60 * TICKS_PER_S
_TIMESTAMP = struct.Struct("<IH")


def clock_ticks(now: float | None = None) -> int:
    """The drone's clock as a signing timestamp."""
    return int(((time.time() if now is None else now) - SIGNING_EPOCH) * TICKS_PER_S)


def sign_with(mav: Any, key: bytes, link_id: int = 0) -> Any:
    """Sign what ``mav`` (a pymavlink MAVLink object) sends with ``key``, counting from
    the drone's clock; unsigned frames it parses are refused. Returns its signing state."""
    mav.signing.secret_key = key
    mav.signing.link_id = link_id
    mav.signing.timestamp = clock_ticks()
    mav.signing.sign_outgoing = True
    mav.signing.allow_unsigned_callback = None
    return mav.signing


def frame_timestamp(msgbuf: bytes | bytearray) -> int:
    """The timestamp of a signed MAVLink 2 frame (its signature block's 6 bytes)."""
    low, high = _TIMESTAMP.unpack(bytes(msgbuf[-12:-6]))
    return low + (high << 32)


class VerifyingMAVLink(mavlink.MAVLink):  # type: ignore[misc]
    """A pymavlink parser whose signature check cannot be steered by a forger.

    ``max_ahead_s``: how far a signed timestamp may lead the drone's clock.
    Parsers that share one ``signing`` state share its stream timestamps, so
    a timestamp accepted once is never accepted again, from any address.
    """

    def __init__(self, *args: Any, max_ahead_s: float = 60.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_ahead_s = max_ahead_s
        # (reason, how far ahead in s) of each refused signed frame, oldest first
        self.refusals: deque[tuple[str, float]] = deque(maxlen=64)

    def check_signature(self, msgbuf: bytearray, srcSystem: int, srcComponent: int) -> bool:
        signing = self.signing
        key = signing.secret_key
        assert key is not None
        timestamp = frame_timestamp(msgbuf)
        expected = hashlib.sha256(bytes(key) + bytes(msgbuf[:-6])).digest()[:6]
        if not hmac.compare_digest(expected, bytes(msgbuf[-6:])):
            self.refusals.append(("bad_signature", 0.0))
            return False
        # Genuine from here on: the key holder sent it (or it is a copy of what they sent).
        now = max(clock_ticks(), signing.timestamp)
        ahead = timestamp - now
        if ahead > self.max_ahead_s * TICKS_PER_S:
            self.refusals.append(("ahead", ahead / TICKS_PER_S))
            return False
        stream = (msgbuf[-13], srcSystem, srcComponent)
        last = signing.stream_timestamps.get(stream)
        if last is not None and timestamp <= last:
            self.refusals.append(("replay", 0.0))
            return False
        if last is None and timestamp + NEW_STREAM_BEHIND < signing.timestamp:
            self.refusals.append(("stale", 0.0))
            return False
        signing.stream_timestamps[stream] = timestamp
        signing.timestamp = max(signing.timestamp, timestamp)
        return True


def passphrase_key(passphrase: str) -> bytes:
    """The 32-byte key a passphrase stands for, as MAVProxy's ``signing key`` and
    ArduPilot's ground stations derive it (SHA-256 of its ASCII bytes)."""
    return hashlib.sha256(passphrase.encode("ascii")).digest()
