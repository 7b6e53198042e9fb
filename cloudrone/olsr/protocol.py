"""The OLSR node: information repositories and message processing (RFC 3626).

Pure logic with an injected clock: the node turns received datagrams into state
changes and messages to forward, and produces the HELLO, TC, MID and HNA messages the
daemon sends. It never touches a socket or the kernel.

With ``link_quality="etx"`` it speaks olsrd's link-quality dialect instead of plain
HELLO and TC: LQ_HELLO and LQ_TC carry each link's quality (:mod:`cloudrone.olsr.lq`),
routes go by least total ETX and MPRs are chosen by cost. The two dialects never mix:
a node hears the other one's HELLO and TC only to report their senders.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cloudrone.olsr import codec, lq
from cloudrone.olsr.codec import Hello, Hna, LinkBlock, MalformedPacket, Message, Mid, Tc
from cloudrone.olsr.constants import (
    ASYM_LINK,
    DUP_HOLD_TIME,
    HELLO_INTERVAL,
    HELLO_MESSAGE,
    HNA_HOLD_TIME,
    HNA_INTERVAL,
    HNA_MESSAGE,
    LOST_LINK,
    LQ_HELLO_MESSAGE,
    LQ_MESSAGES,
    LQ_TC_MESSAGE,
    MAX_LQ_SENDERS,
    MAX_REPORTED,
    MAX_TTL,
    MID_HOLD_TIME,
    MID_INTERVAL,
    MID_MESSAGE,
    MPR_NEIGH,
    NEIGHB_HOLD_TIME,
    NOT_NEIGH,
    SYM_LINK,
    SYM_NEIGH,
    TC_INTERVAL,
    TC_MESSAGE,
    TC_REDUNDANCY_ALL_NEIGHBORS,
    TC_REDUNDANCY_SELECTORS,
    TOP_HOLD_TIME,
    UNSPEC_LINK,
    WILL_DEFAULT,
    WILL_NEVER,
)
from cloudrone.olsr.mpr import select_lq_mprs, select_mprs
from cloudrone.olsr.routing import LqLink, Route, SymLink, calculate_lq_routes, calculate_routes

Clock = Callable[[], float]


@dataclass(slots=True)
class Timers:
    """Emission intervals and holding times in seconds; RFC 3626 defaults."""

    hello_interval: float = HELLO_INTERVAL
    neighb_hold: float = NEIGHB_HOLD_TIME
    tc_interval: float = TC_INTERVAL
    top_hold: float = TOP_HOLD_TIME
    mid_interval: float = MID_INTERVAL
    mid_hold: float = MID_HOLD_TIME
    hna_interval: float = HNA_INTERVAL
    hna_hold: float = HNA_HOLD_TIME
    dup_hold: float = DUP_HOLD_TIME


@dataclass(slots=True)
class LinkTuple:
    local: str
    neighbor_iface: str
    neighbor_main: str
    sym_time: float
    asym_time: float
    time: float
    quality: lq.LinkQuality | None = None  # link quality mode only
    htime: float = HELLO_INTERVAL  # the neighbour's HELLO interval, as it announced it

    @property
    def cost(self) -> int:
        return self.quality.cost if self.quality is not None else lq.SCALE


@dataclass(slots=True)
class TopologyTuple:
    dest: str
    last: str
    seq: int
    time: float
    cost: int = lq.SCALE  # as the last hop reported it (LQ_TC)


@dataclass(slots=True)
class DuplicateTuple:
    time: float
    ifaces: set[str] = field(default_factory=set)
    retransmitted: bool = False


@dataclass(frozen=True)
class HnaPolicy:
    """Which announced networks (HNA) a node believes, and from whom.

    ``accept``: the mission's own networks; an announcement inside one of them is
    believed from any node of ``fleet``. ``gateways``: the nodes that may also
    announce what lies outside them (the default route, split or whole).
    ``fleet``: the nodes' main addresses; announcements of any other node are
    refused, and the node is reported. Empty ``accept`` and ``fleet``: every
    announcement is believed, as RFC 3626 has it.
    """

    accept: tuple[ipaddress.IPv4Network, ...] = ()
    gateways: frozenset[str] = frozenset()
    fleet: frozenset[str] = frozenset()

    def knows(self, originator: str) -> bool:
        """Whether ``originator`` is one of the fleet's nodes (always, without a fleet)."""
        return not self.fleet or originator in self.fleet or originator in self.gateways

    def refuse(self, originator: str, network: str, prefix: int) -> str | None:
        """Why the announcement is not believed ("stranger", "outside"), or None."""
        if not self.knows(originator):
            return "stranger"
        if not self.accept or originator in self.gateways:
            return None
        try:
            net = ipaddress.IPv4Network((network, prefix), strict=False)
        except ValueError:
            return "outside"
        if any(net.subnet_of(a) for a in self.accept):
            return None
        return "outside"


@dataclass(slots=True)
class RefusedHna:
    """An announcement a node did not believe: kept to be reported, bounded."""

    originator: str
    network: str
    prefix: int
    reason: str  # "stranger" or "outside" (HnaPolicy.refuse)
    source: str  # the interface address it arrived from
    first: float
    last: float
    count: int = 1


@dataclass(slots=True)
class Stranger:
    """A node whose messages reach this one but who is not in the fleet."""

    originator: str
    source: str
    first: float
    last: float
    messages: int = 1


@dataclass(slots=True)
class LqSender:
    """A neighbour interface that speaks the other link-quality dialect.

    A node routing by hop count hears LQ_HELLO and LQ_TC from olsrd with its default
    LinkQualityLevel 2 (or a drone with ``link_quality: etx``); a node with link quality
    hears plain HELLO and TC. Neither understands the other's HELLO, so the two never
    become neighbours: kept to be reported, not to route by.
    """

    address: str  # the sending interface (the packets' source address)
    etx: bool  # True: the sender uses link quality (and this node does not)
    first: float
    last: float
    until: float  # the last message's validity (its Vtime): still sending until then
    packets: int = 0
    types: set[int] = field(default_factory=set)
    originators: set[str] = field(default_factory=set)


class Node:
    """The repositories of one OLSR node and the rules that maintain them."""

    def __init__(
        self,
        main_address: str,
        interfaces: dict[str, str],
        *,
        willingness: int = WILL_DEFAULT,
        timers: Timers | None = None,
        tc_redundancy: int = TC_REDUNDANCY_ALL_NEIGHBORS,
        hna: Iterable[tuple[str, int]] = (),
        hna_policy: HnaPolicy | None = None,
        link_quality: str = "none",
        clock: Clock,
    ) -> None:
        self.main_address = main_address
        self.interfaces = dict(interfaces)  # interface name -> address
        self.willingness = willingness
        self.timers = timers or Timers()
        self.tc_redundancy = tc_redundancy
        self.hna_networks = list(hna)
        self.hna_policy = hna_policy or HnaPolicy()
        # announcements refused and nodes outside the fleet, by key; the new ones
        # wait in *_new for the daemon to log once
        self.hna_refused: dict[tuple[str, str, int], RefusedHna] = {}
        self.hna_refused_new: list[tuple[str, str, int]] = []
        self.strangers: dict[str, Stranger] = {}
        self.strangers_new: list[str] = []
        self.clock = clock
        self.etx = link_quality == "etx"
        if self.etx:
            self.hello_type, self.tc_type = LQ_HELLO_MESSAGE, LQ_TC_MESSAGE
            self.foreign_types = frozenset({HELLO_MESSAGE, TC_MESSAGE})
        else:
            self.hello_type, self.tc_type = HELLO_MESSAGE, TC_MESSAGE
            self.foreign_types = LQ_MESSAGES

        self.links: dict[tuple[str, str], LinkTuple] = {}
        self.neighbor_willingness: dict[str, int] = {}
        self.two_hop: dict[tuple[str, str], float] = {}
        self.two_hop_cost: dict[tuple[str, str], int] = {}  # link quality: as reported
        self.mpr_set: set[str] = set()
        self.mpr_selectors: dict[str, float] = {}
        self.topology: dict[tuple[str, str], TopologyTuple] = {}
        self.duplicates: dict[tuple[str, int], DuplicateTuple] = {}
        self.mid: dict[str, tuple[str, float]] = {}  # iface -> (main, time)
        self.hna: dict[tuple[str, str, int], float] = {}  # (gateway, net, prefix) -> time
        self.lq_senders: dict[str, LqSender] = {}  # other dialect: source -> what it sent
        self.lq_new: list[str] = []  # senders not yet reported: the daemon takes them

        self.ansn = 0
        self._advertised: frozenset[str] = frozenset()
        self._tc_empty_until = -1.0
        self._msg_seq = 0
        self._sym_cache: frozenset[str] = frozenset()
        self.counters: Counter[str] = Counter()
        self.changed = True  # routes need recalculating
        self.tc_changed = False  # the advertised set changed: send a TC soon

    # --- addresses -------------------------------------------------------------------

    @property
    def own_addresses(self) -> set[str]:
        return {self.main_address, *self.interfaces.values()}

    def main_of(self, addr: str) -> str:
        entry = self.mid.get(addr)
        return entry[0] if entry else addr

    def set_interfaces(self, interfaces: dict[str, str]) -> None:
        """Take a new interface map (config reload); links on removed addresses go."""
        self.interfaces = dict(interfaces)
        local = set(interfaces.values())
        for key in [k for k, t in self.links.items() if t.local not in local]:
            del self.links[key]
        self._refresh_neighbors()
        self.changed = True

    # --- derived sets ----------------------------------------------------------------

    def symmetric_neighbors(self) -> set[str]:
        now = self.clock()
        return {t.neighbor_main for t in self.links.values() if t.sym_time >= now}

    def neighbors(self) -> set[str]:
        return {t.neighbor_main for t in self.links.values()}

    def is_symmetric_iface(self, addr: str) -> bool:
        now = self.clock()
        return any(t.sym_time >= now for t in self.links.values() if t.neighbor_iface == addr)

    def sym_links(self) -> list[SymLink]:
        now = self.clock()
        return [
            SymLink(t.local, t.neighbor_iface, t.neighbor_main)
            for t in self.links.values()
            if t.sym_time >= now
        ]

    def two_hop_map(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for neighbor, addr in self.two_hop:
            out.setdefault(neighbor, set()).add(addr)
        return out

    def link_costs(self) -> dict[str, int]:
        """Each symmetric neighbour's cheapest link cost (link quality mode)."""
        now = self.clock()
        out: dict[str, int] = {}
        for t in self.links.values():
            if t.sym_time >= now:
                out[t.neighbor_main] = min(out.get(t.neighbor_main, lq.BROKEN), t.cost)
        return out

    def best_link(self, main: str) -> LinkTuple | None:
        now = self.clock()
        links = [t for t in self.links.values() if t.neighbor_main == main and t.time >= now]
        return min(links, key=lambda t: (t.cost, t.neighbor_iface), default=None)

    def advertised_set(self) -> set[str]:
        now = self.clock()
        selectors = {a for a, t in self.mpr_selectors.items() if t >= now}
        if self.tc_redundancy == TC_REDUNDANCY_SELECTORS:
            chosen = selectors
        elif self.tc_redundancy == TC_REDUNDANCY_ALL_NEIGHBORS:
            chosen = self.symmetric_neighbors()
        else:
            chosen = selectors | self.mpr_set
        if self.etx:  # as olsrd: a link too poor to use is not advertised
            costs = self.link_costs()
            chosen = {n for n in chosen if costs.get(n, lq.BROKEN) < lq.BROKEN}
        return chosen

    # --- bookkeeping -----------------------------------------------------------------

    def _refresh_neighbors(self) -> None:
        """Follow changes of the symmetric neighbourhood (sections 8.1, 8.5)."""
        sym = frozenset(self.symmetric_neighbors())
        if sym != self._sym_cache:
            lost = self._sym_cache - sym
            for key in [k for k in self.two_hop if k[0] in lost]:
                del self.two_hop[key]
            for addr in lost:
                self.mpr_selectors.pop(addr, None)
            self._sym_cache = sym
            self.changed = True
        known = self.neighbors()
        for addr in [a for a in self.neighbor_willingness if a not in known]:
            del self.neighbor_willingness[addr]
        self._update_mprs()
        self._update_advertised()

    def _update_mprs(self) -> None:
        sym = self._sym_cache
        willing = {n: self.neighbor_willingness.get(n, WILL_DEFAULT) for n in sym}
        if self.etx:
            mprs = select_lq_mprs(
                willing, self.link_costs(), self._two_hop_costs(), self.own_addresses
            )
        else:
            excluded = self.own_addresses | {t.neighbor_iface for t in self.links.values()}
            mprs = select_mprs(willing, self.two_hop_map(), excluded)
        if mprs != self.mpr_set:
            self.mpr_set = mprs
            self.changed = True

    def _update_advertised(self) -> None:
        advertised = frozenset(self.advertised_set())
        if advertised != self._advertised:
            if not advertised and self._advertised:
                self._tc_empty_until = self.clock() + self.timers.top_hold
            self._advertised = advertised
            self.ansn = codec.seq_next(self.ansn)
            self.tc_changed = True

    def expire(self) -> None:
        """Remove every tuple whose holding time is over."""
        now = self.clock()
        for key in [k for k, t in self.links.items() if t.time < now]:
            del self.links[key]
        for key in [k for k, t in self.two_hop.items() if t < now]:
            del self.two_hop[key]
            self.changed = True
        for key in [k for k in self.two_hop_cost if k not in self.two_hop]:
            del self.two_hop_cost[key]
        for key in [k for k, t in self.mpr_selectors.items() if t < now]:
            del self.mpr_selectors[key]
        for key in [k for k, t in self.topology.items() if t.time < now]:
            del self.topology[key]
            self.changed = True
        for key in [k for k, t in self.duplicates.items() if t.time < now]:
            del self.duplicates[key]
        for key in [k for k, t in self.mid.items() if t[1] < now]:
            del self.mid[key]
            self.changed = True
        for key in [k for k, t in self.hna.items() if t < now]:
            del self.hna[key]
            self.changed = True
        self._refresh_neighbors()

    def _two_hop_costs(self) -> dict[tuple[str, str], int]:
        now = self.clock()
        return {k: self.two_hop_cost.get(k, lq.BROKEN) for k, t in self.two_hop.items() if t >= now}

    def tick_quality(self) -> None:
        """Once a second (link quality mode): each link's quality over its window; a
        cost that moved enough changes MPRs, routes and what TC advertises."""
        now = self.clock()
        qualities = [t.quality for t in self.links.values() if t.quality is not None]
        for t in self.links.values():
            if t.quality is not None:
                t.quality.tick(now, t.htime)
        if any([q.settle() for q in qualities]):
            for q in qualities:  # as olsrd: once one moved, all take their new values
                if (q.smooth_lq, q.smooth_nlq) != (255, 255):
                    q.resmooth()
            self.changed = True
            self._update_mprs()
            self._update_advertised()

    def next_seq(self) -> int:
        self._msg_seq = codec.seq_next(self._msg_seq)
        return self._msg_seq

    # --- receiving -------------------------------------------------------------------

    def receive(self, data: bytes, source: str, iface: str) -> list[bytes]:
        """Process one datagram from ``source`` on interface ``iface``.

        Returns the messages (already with TTL and hop count updated) to retransmit on
        every interface. Malformed datagrams are counted and change nothing.
        """
        if source in self.own_addresses:
            self.counters["own_packets"] += 1
            return []
        local = self.interfaces.get(iface)
        if local is None:
            self.counters["unknown_interface"] += 1
            return []
        try:
            packet = codec.decode_packet(data)
        except MalformedPacket as exc:
            self.counters["malformed"] += 1
            self.counters[f"malformed_{exc.reason}"] += 1
            return []
        self.counters["packets"] += 1
        foreign = [m for m in packet.messages if m.type in self.foreign_types]
        if foreign:
            self._note_lq_sender(source, foreign)
        forward: list[bytes] = []
        for msg in packet.messages:
            out = self._handle_message(msg, source, local)
            if out is not None:
                forward.append(out)
        link = self.links.get((local, source))
        if link is not None and link.quality is not None:
            link.quality.packet(packet.seqno, self.clock())
        return forward

    def _handle_message(self, msg: Message, source: str, local: str) -> bytes | None:
        self.counters["messages"] += 1
        if msg.ttl == 0 or msg.originator in self.own_addresses:
            self.counters["dropped_ttl_or_own"] += 1
            return None
        if not self.hna_policy.knows(msg.originator):
            self._note_stranger(msg.originator, source)
        if msg.type == self.hello_type:
            assert isinstance(msg.body, Hello)
            self._process_hello(msg, msg.body, source, local)
            return None  # HELLO messages are never forwarded (section 6)
        if msg.type in (HELLO_MESSAGE, LQ_HELLO_MESSAGE):
            self.counters["no_link_quality" if self.etx else "link_quality"] += 1
            return None  # the other dialect's HELLO: reported, never forwarded
        key = (msg.originator, msg.seqno)
        if key not in self.duplicates:
            if msg.type == self.tc_type and isinstance(msg.body, Tc):
                self._process_tc(msg, msg.body, source)
            elif msg.type == MID_MESSAGE and isinstance(msg.body, Mid):
                self._process_mid(msg, msg.body, source)
            elif msg.type == HNA_MESSAGE and isinstance(msg.body, Hna):
                self._process_hna(msg, msg.body, source)
            elif msg.type in self.foreign_types:
                self.counters["no_link_quality" if self.etx else "link_quality"] += 1
            else:
                self.counters["unknown_type"] += 1
        return self._forward(msg, source, local)

    def _note_lq_sender(self, source: str, messages: list[Message]) -> None:
        """Remember who sends olsrd link-quality messages; a new sender is reported once."""
        now = self.clock()
        sender = self.lq_senders.get(source)
        if sender is None:
            if len(self.lq_senders) >= MAX_LQ_SENDERS:
                self.counters["link_quality_senders_not_kept"] += 1
                return
            sender = self.lq_senders[source] = LqSender(source, not self.etx, now, now, now)
            self.lq_new.append(source)
        sender.last = now
        sender.until = max(sender.until, now + max(m.validity for m in messages))
        sender.packets += 1
        sender.types.update(m.type for m in messages)
        sender.originators.update(m.originator for m in messages)

    def _forward(self, msg: Message, source: str, local: str) -> bytes | None:
        """The default forwarding algorithm of section 3.4.1."""
        if not self.is_symmetric_iface(source):
            self.counters["not_from_symmetric"] += 1
            return None
        now = self.clock()
        key = (msg.originator, msg.seqno)
        dup = self.duplicates.get(key)
        if dup is not None and (dup.retransmitted or local in dup.ifaces):
            dup.time = now + self.timers.dup_hold
            dup.ifaces.add(local)
            self.counters["duplicates"] += 1
            return None
        retransmit = self.main_of(source) in self._live_selectors(now) and msg.ttl > 1
        if dup is None:
            dup = self.duplicates[key] = DuplicateTuple(now + self.timers.dup_hold)
        dup.time = now + self.timers.dup_hold
        dup.ifaces.add(local)
        if retransmit:
            dup.retransmitted = True
            self.counters["forwarded"] += 1
            return codec.forwarded_copy(msg.raw)
        return None

    def _live_selectors(self, now: float) -> set[str]:
        return {a for a, t in self.mpr_selectors.items() if t >= now}

    def _process_hello(self, msg: Message, hello: Hello, source: str, local: str) -> None:
        now = self.clock()
        validity = msg.validity
        self.counters["hello"] += 1
        # Link sensing (section 7.1.1)
        link = self.links.get((local, source))
        was_sym = link is not None and link.sym_time >= now
        if link is None:
            link = LinkTuple(local, source, msg.originator, now - 1, now, now + validity)
            if self.etx:
                link.quality = lq.LinkQuality()
            self.links[(local, source)] = link
            self.changed = True
        link.neighbor_main = msg.originator
        link.asym_time = now + validity
        link.htime = codec.decode_time(hello.htime)
        own = self.own_addresses
        if link.quality is not None:  # how well the neighbour hears us (0: not at all)
            link.quality.reported(_reported_quality(hello, local))
        for block in hello.links:
            if block.link_code > 15 or (
                block.link_type == SYM_LINK and block.neighbor_type == NOT_NEIGH
            ):
                continue  # invalid link codes are ignored (section 6.1.1)
            if local not in block.addresses:
                continue
            if block.link_type == LOST_LINK:
                link.sym_time = now - 1
            elif block.link_type in (SYM_LINK, ASYM_LINK):
                link.sym_time = now + validity
                link.time = link.sym_time + self.timers.neighb_hold
        link.time = max(link.time, link.asym_time)
        if was_sym != (link.sym_time >= now):
            self.changed = True
        # Neighbour set (section 8.1.1)
        if self.neighbor_willingness.get(msg.originator) != hello.willingness:
            self.neighbor_willingness[msg.originator] = hello.willingness
            self.changed = True
        self._refresh_neighbors()
        if msg.originator not in self._sym_cache:
            return
        # 2-hop neighbour set (section 8.2.1) and MPR selector set (section 8.4.1)
        two_hop_changed = False
        for block in hello.links:
            if block.link_code > 15:
                continue
            ntype = block.neighbor_type
            for i, addr in enumerate(block.addresses):
                if ntype in (SYM_NEIGH, MPR_NEIGH):
                    main = self.main_of(addr)
                    if addr in own or main in own:
                        if ntype == MPR_NEIGH:
                            self.mpr_selectors[msg.originator] = now + validity
                        continue
                    key = (msg.originator, main)
                    if key not in self.two_hop:
                        two_hop_changed = True
                    self.two_hop[key] = now + validity
                    if block.quality is not None:
                        c = lq.cost(*block.quality[i])
                        if self.two_hop_cost.get(key) != c:
                            self.two_hop_cost[key] = c
                            two_hop_changed = True
                elif ntype == NOT_NEIGH:
                    key = (msg.originator, self.main_of(addr))
                    if self.two_hop.pop(key, None) is not None:
                        two_hop_changed = True
        if two_hop_changed:
            self.changed = True
            self._update_mprs()
        self._update_advertised()

    def _process_tc(self, msg: Message, tc: Tc, source: str) -> None:
        """Topology set (section 9.5)."""
        if not self.is_symmetric_iface(source):
            return
        self.counters["tc"] += 1
        now = self.clock()
        last = msg.originator
        for t in self.topology.values():
            if t.last == last and codec.seq_newer(t.seq, tc.ansn):
                self.counters["tc_out_of_order"] += 1
                return
        stale = [
            k
            for k, t in self.topology.items()
            if t.last == last and codec.seq_newer(tc.ansn, t.seq)
        ]
        for key in stale:
            del self.topology[key]
            self.changed = True
        expires = now + msg.validity
        for i, dest in enumerate(tc.addresses):
            c = lq.cost(*tc.quality[i]) if tc.quality is not None else lq.SCALE
            entry = self.topology.get((dest, last))
            if entry is None:
                self.topology[(dest, last)] = TopologyTuple(dest, last, tc.ansn, expires, c)
                self.changed = True
            else:
                entry.seq = tc.ansn
                entry.time = expires
                if entry.cost != c:
                    entry.cost = c
                    self.changed = True

    def _process_mid(self, msg: Message, mid: Mid, source: str) -> None:
        """Multiple interface association set (section 5.4)."""
        if not self.is_symmetric_iface(source):
            return
        self.counters["mid"] += 1
        expires = self.clock() + msg.validity
        own = self.own_addresses
        for addr in mid.addresses:
            if addr in own:
                continue
            old = self.mid.get(addr)
            if old is None or old[0] != msg.originator:
                self.changed = True
            self.mid[addr] = (msg.originator, expires)

    def _note_stranger(self, originator: str, source: str) -> None:
        now = self.clock()
        known = self.strangers.get(originator)
        if known is not None:
            known.last, known.source = now, source
            known.messages += 1
        elif len(self.strangers) < MAX_REPORTED:
            self.strangers[originator] = Stranger(originator, source, now, now)
            self.strangers_new.append(originator)
        else:
            self.counters["strangers_not_kept"] += 1

    def _process_hna(self, msg: Message, hna: Hna, source: str) -> None:
        """Host and network association set (section 12.5), for what the policy believes."""
        if not self.is_symmetric_iface(source):
            return
        self.counters["hna"] += 1
        now = self.clock()
        expires = now + msg.validity
        for network, prefix in hna.networks:
            key = (msg.originator, network, prefix)
            reason = self.hna_policy.refuse(msg.originator, network, prefix)
            if reason is not None:
                self.counters["hna_refused"] += 1
                refused = self.hna_refused.get(key)
                if refused is not None:
                    refused.last, refused.source = now, source
                    refused.count += 1
                elif len(self.hna_refused) < MAX_REPORTED:
                    self.hna_refused[key] = RefusedHna(*key, reason, source, now, now)
                    self.hna_refused_new.append(key)
                continue
            if key not in self.hna:
                self.changed = True
            self.hna[key] = expires

    # --- generating ------------------------------------------------------------------

    def make_hello(self, iface: str) -> Message:
        """The HELLO for interface ``iface`` (section 6.2)."""
        now = self.clock()
        local = self.interfaces[iface]
        sym = self._sym_cache
        groups: dict[int, list[str]] = {}
        qualities: dict[str, codec.Quality] = {}
        advertised_mains: set[str] = set()
        for t in sorted(self.links.values(), key=lambda x: x.neighbor_iface):
            if t.local != local or t.time < now:
                continue
            if t.sym_time >= now:
                ltype = SYM_LINK
            elif t.asym_time >= now:
                ltype = ASYM_LINK
            else:
                ltype = LOST_LINK
            groups.setdefault(self._link_code(ltype, t.neighbor_main, sym), []).append(
                t.neighbor_iface
            )
            qualities[t.neighbor_iface] = _quality_of(t)
            advertised_mains.add(t.neighbor_main)
        for main in sorted(self.neighbors() - advertised_mains):
            groups.setdefault(self._link_code(UNSPEC_LINK, main, sym), []).append(main)
            best = self.best_link(main)
            qualities[main] = _quality_of(best) if best is not None else (0, 0)
        blocks = [
            LinkBlock(code, addrs, [qualities[a] for a in addrs] if self.etx else None)
            for code, addrs in sorted(groups.items())
        ]
        body = Hello(codec.encode_time(self.timers.hello_interval), self.willingness, blocks)
        return self._message(self.hello_type, self.timers.neighb_hold, body, ttl=1)

    def _link_code(self, link_type: int, main: str, sym: frozenset[str]) -> int:
        if main in self.mpr_set:
            ntype = MPR_NEIGH
        elif main in sym:
            ntype = SYM_NEIGH
        else:
            ntype = NOT_NEIGH
        return (ntype << 2) | link_type

    def make_tc(self) -> Message | None:
        """The TC message (section 9.2), or None when there is nothing to advertise."""
        self.tc_changed = False
        advertised = sorted(self._advertised)
        if not advertised and self.clock() > self._tc_empty_until:
            return None
        tc = Tc(self.ansn, advertised)
        if self.etx:
            tc.quality = []
            for main in advertised:
                best = self.best_link(main)
                tc.quality.append(_quality_of(best) if best is not None else (0, 0))
        return self._message(self.tc_type, self.timers.top_hold, tc)

    def make_mid(self) -> Message | None:
        """The MID message (section 5.2), only for nodes with more than one address."""
        others = sorted(a for a in set(self.interfaces.values()) if a != self.main_address)
        if not others:
            return None
        return self._message(MID_MESSAGE, self.timers.mid_hold, Mid(others))

    def make_hna(self) -> Message | None:
        """The HNA message (section 12.3), when this node announces networks."""
        if not self.hna_networks:
            return None
        return self._message(HNA_MESSAGE, self.timers.hna_hold, Hna(list(self.hna_networks)))

    def _message(
        self, mtype: int, validity: float, body: codec.Body, ttl: int = MAX_TTL
    ) -> Message:
        msg = Message(
            mtype, codec.encode_time(validity), self.main_address, ttl, 0, self.next_seq(), body
        )
        msg.raw = codec.encode_message(msg)
        return msg

    # --- routes ----------------------------------------------------------------------

    def routes(self) -> dict[tuple[str, int], Route]:
        """The routing table of section 10 for the current state."""
        self.changed = False
        now = self.clock()
        willing = dict(self.neighbor_willingness)
        for n in self._sym_cache:
            willing.setdefault(n, WILL_DEFAULT)
        if self.etx:
            return calculate_lq_routes(
                self.own_addresses,
                [
                    LqLink(t.local, t.neighbor_iface, t.neighbor_main, t.cost)
                    for t in self.links.values()
                    if t.sym_time >= now
                ],
                willing,
                self._two_hop_costs(),
                {(t.last, t.dest): t.cost for t in self.topology.values() if t.time >= now},
                {a: m for a, (m, t) in self.mid.items() if t >= now},
                [k for k, t in self.hna.items() if t >= now],
                self.hna_networks,
            )
        return calculate_routes(
            self.own_addresses,
            self.sym_links(),
            {n: w for n, w in willing.items() if n in self._sym_cache or w != WILL_NEVER},
            [k for k, t in self.two_hop.items() if t >= now],
            [(t.last, t.dest) for t in self.topology.values() if t.time >= now],
            {a: m for a, (m, t) in self.mid.items() if t >= now},
            [k for k, t in self.hna.items() if t >= now],
            self.hna_networks,
        )


def _quality_of(link: LinkTuple) -> codec.Quality:
    q = link.quality
    return (q.smooth_lq, q.smooth_nlq) if q is not None else (255, 255)


def _reported_quality(hello: Hello, local: str) -> int:
    """The LQ an LQ_HELLO reports for this node's interface ``local`` (0 if absent)."""
    for block in hello.links:
        if block.quality is not None and local in block.addresses:
            return block.quality[block.addresses.index(local)][0]
    return 0
