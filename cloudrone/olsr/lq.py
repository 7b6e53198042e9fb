"""ETX link quality, computed the way olsrd's default algorithm (``etx_ff``) does.

A node counts, per link, the OLSR packets it receives from the neighbour interface
and the packets it should have received (the gaps in the packet sequence numbers),
in 32 one-second buckets. Every second the link quality (LQ) is the share received
over the window, as a byte 0..255; a neighbour that falls silent for more than one
HELLO interval has its share cut further. The neighbour link quality (NLQ) is the LQ
the neighbour reports for this node in its LQ_HELLO. A link's cost is its expected
transmission count, ETX = 1 / (LQ x NLQ), in fixed point (1024 = one clean hop), and
it only moves when LQ or NLQ moved by more than a tenth, so routes do not follow
every lost packet. Pure: no clock, no I/O; the node calls :meth:`LinkQuality.tick`
once a second.

The numbers are olsrd's, so that a route cost means the same on both daemons:
window 32 s starting at 4 with 3 packets assumed lost per bucket, costs below a
tenth of a clean link ("broken") never routed nor advertised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOW = 32  # one-second buckets
QUICKSTART_WINDOW = 4  # a new link starts with a short window ...
QUICKSTART_TOTAL = 3  # ... in which each bucket already counts three packets missed
SCALE = 1024  # a cost of SCALE is one hop over a perfect link
BROKEN = 1 << 22  # cost of a link too poor to use
MIN_USEFUL = int(255 * 0.1)  # LQ or NLQ below this: the link is broken
TICK = 1.0  # seconds between two quality updates
SEQ_JUMP = 256  # a larger gap in sequence numbers is a restart, not loss


def cost(lq: int, nlq: int) -> int:
    """The ETX of a link with ``lq`` and ``nlq`` (0..255), SCALE per clean hop."""
    if lq < MIN_USEFUL or nlq < MIN_USEFUL:
        return BROKEN
    value = (255 * 255 * SCALE) // (lq * nlq)
    return min(max(value, 1), BROKEN)


def as_float(value: int) -> float:
    """A cost for people: 1.0 for a clean hop, 2.0 for two clean hops or one lossy one;
    a broken link shows as 4096.0 (olsrd's too), never as an infinity JSON lacks."""
    return round(min(value, BROKEN) / SCALE, 3)


def _moved(old: int, new: int) -> bool:
    """Whether a change from ``old`` to ``new`` is worth a new cost (over a tenth)."""
    if new > old:
        return new == 255 or new - old > old // 10
    return old - new > old // 10


@dataclass(slots=True)
class LinkQuality:
    """What one node knows of the quality of one of its links."""

    received: list[int] = field(default_factory=lambda: [0] * WINDOW)
    total: list[int] = field(default_factory=lambda: [QUICKSTART_TOTAL] * WINDOW)
    window: int = QUICKSTART_WINDOW
    active: int = 0
    last_seq: int | None = None
    last_packet: float = 0.0
    lq: int = 0  # this node's share of the neighbour's packets, now
    nlq: int = 0  # the neighbour's share of this node's packets, as it reported
    smooth_lq: int = 0  # the values the cost is computed from
    smooth_nlq: int = 0
    cost: int = BROKEN

    def packet(self, seqno: int, now: float) -> None:
        """Count a packet from the neighbour with packet sequence number ``seqno``."""
        self.last_packet = now
        if self.last_seq is not None:
            if seqno == self.last_seq:
                return  # the same packet twice
            gap = (seqno - self.last_seq) & 0xFFFF
            if gap > SEQ_JUMP:
                gap = 1  # the neighbour restarted: no loss to count
        else:
            gap = 1
        self.received[self.active] += 1
        self.total[self.active] += gap
        self.last_seq = seqno

    def reported(self, nlq: int) -> None:
        """The neighbour's LQ_HELLO says it receives ``nlq``/255 of this node's packets."""
        self.nlq = nlq

    def tick(self, now: float, hello_interval: float) -> None:
        """Once a second: the LQ over the window, then the next bucket."""
        if self.window < WINDOW:
            self.window += 1
        received = sum(self.received[: self.window])
        total = sum(self.total[: self.window])
        if total == 0:
            self.lq = 0
        else:
            missed = 0
            silent = now - self.last_packet
            if hello_interval > 0 and silent > 1.5 * hello_interval:
                missed = int((silent - 0.5 * hello_interval) / hello_interval)
            if missed > 1:
                gone = int(missed * hello_interval)  # seconds of missed HELLOs
                received = 0 if gone > WINDOW else received * (WINDOW - gone) // WINDOW
            self.lq = min(255, received * 255 // total)
        self.active = (self.active + 1) % WINDOW
        self.received[self.active] = 0
        self.total[self.active] = 0

    def settle(self) -> bool:
        """Take LQ and NLQ into the cost if either moved enough; True if it did."""
        if _moved(self.smooth_lq, self.lq) or _moved(self.smooth_nlq, self.nlq):
            return self.resmooth()
        return False

    def resmooth(self) -> bool:
        """Take LQ and NLQ into the cost now; True if the cost changed."""
        self.smooth_lq, self.smooth_nlq = self.lq, self.nlq
        new = cost(self.lq, self.nlq)
        changed = new != self.cost
        self.cost = new
        return changed
