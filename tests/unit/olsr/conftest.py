"""An in-memory mesh of protocol nodes with one fake clock, for tests without a network.

Each node is a real :class:`cloudrone.olsr.protocol.Node`; the medium delivers every
packet a node sends on an interface to every other interface on the same segment,
byte for byte, exactly as the daemon would hand it to the node. Each interface numbers
its packets as the daemon does, and ``loss`` drops a share of the packets between two
nodes at random (the same in both directions), as a lossy radio would.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterator

import pytest

from cloudrone.olsr import codec
from cloudrone.olsr.protocol import Node, Timers


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Mesh:
    def __init__(self, clock: FakeClock, seed: int = 1) -> None:
        self.clock = clock
        self.nodes: dict[str, Node] = {}
        self.attach: dict[str, dict[str, str]] = {}  # node -> iface -> segment
        self.down: set[str] = set()
        self.due: dict[tuple[str, str], float] = {}
        self.sent: Counter[tuple[str, int]] = Counter()  # (node, message type) -> count
        self.forwarded: Counter[str] = Counter()
        self.rng = random.Random(seed)
        self.loss: dict[frozenset[str], float] = {}  # {a, b} -> share of packets lost
        self.delivered: Counter[tuple[str, str]] = Counter()  # (sender, receiver) -> packets
        self._pseq: Counter[tuple[str, str]] = Counter()
        self._next_quality = clock()

    def add(self, name: str, ifaces: dict[str, tuple[str, str]], **kw: object) -> Node:
        """``ifaces`` maps an interface name to (address, segment)."""
        addrs = {i: a for i, (a, _s) in ifaces.items()}
        main = next(iter(addrs.values()))
        node = Node(main, addrs, clock=self.clock, **kw)  # type: ignore[arg-type]
        self.nodes[name] = node
        self.attach[name] = {i: s for i, (_a, s) in ifaces.items()}
        t = self.clock()
        for kind in ("hello", "tc", "mid", "hna"):
            self.due[(name, kind)] = t + self.rng.uniform(0, 0.5)
        return node

    def transmit(self, name: str, iface: str, messages: list[bytes]) -> None:
        queue: deque[tuple[str, str, list[bytes]]] = deque([(name, iface, messages)])
        while queue:
            sender, out_iface, msgs = queue.popleft()
            if sender in self.down:
                continue
            self._pseq[(sender, out_iface)] += 1
            data = codec.encode_packet(self._pseq[(sender, out_iface)], msgs)
            segment = self.attach[sender][out_iface]
            source = self.nodes[sender].interfaces[out_iface]
            for other, ifaces in self.attach.items():
                if other == sender or other in self.down:
                    continue
                loss = self.loss.get(frozenset((sender, other)), 0.0)
                for in_iface, seg in ifaces.items():
                    if seg != segment or (loss and self.rng.random() < loss):
                        continue
                    self.delivered[(sender, other)] += 1
                    fwd = self.nodes[other].receive(data, source, in_iface)
                    if fwd:
                        self.forwarded[other] += len(fwd)
                        for i in self.attach[other]:
                            queue.append((other, i, fwd))

    def tick(self) -> None:
        now = self.clock()
        if now >= self._next_quality:  # the daemon's one-second link quality timer
            self._next_quality = now + 1.0
            for name, node in self.nodes.items():
                if node.etx and name not in self.down:
                    node.tick_quality()
        for (name, kind), when in sorted(self.due.items()):
            if when > now or name in self.down:
                continue
            node = self.nodes[name]
            node.expire()
            timers = node.timers
            if kind == "hello":
                for iface in node.interfaces:
                    msg = node.make_hello(iface)
                    self.sent[(name, msg.type)] += 1
                    self.transmit(name, iface, [msg.raw])
                interval = timers.hello_interval
            else:
                make = {"tc": node.make_tc, "mid": node.make_mid, "hna": node.make_hna}[kind]
                interval = {
                    "tc": timers.tc_interval,
                    "mid": timers.mid_interval,
                    "hna": timers.hna_interval,
                }[kind]
                msg = make()
                if msg is not None:
                    self.sent[(name, msg.type)] += 1
                    for iface in node.interfaces:
                        self.transmit(name, iface, [msg.raw])
            self.due[(name, kind)] = now + interval - self.rng.uniform(0, interval / 4)

    def run(self, seconds: float, step: float = 0.125) -> None:
        end = self.clock() + seconds
        while self.clock() < end:
            self.clock.advance(step)
            self.tick()

    def remove(self, name: str) -> None:
        self.down.add(name)

    def addr(self, name: str) -> str:
        return self.nodes[name].main_address

    def routes(self, name: str) -> dict[tuple[str, int], object]:
        node = self.nodes[name]
        node.expire()
        return node.routes()  # type: ignore[return-value]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mesh(clock: FakeClock) -> Iterator[Mesh]:
    yield Mesh(clock)


def line(mesh: Mesh, n: int, **kw: object) -> list[str]:
    """Nodes n1..nN in a line; node i and i+1 share segment s<i>."""
    names = [f"n{i}" for i in range(1, n + 1)]
    for i, name in enumerate(names, start=1):
        ifaces = {}
        if i > 1:
            ifaces["left"] = (f"10.99.{i - 1}.{i}", f"s{i - 1}")
        if i < n:
            ifaces["right"] = (f"10.99.{i}.{i}", f"s{i}")
        if i == 1:
            ifaces = {"right": ifaces["right"]}
        mesh.add(name, ifaces, **kw)
    return names


def shared(mesh: Mesh, n: int, segment: str = "air", **kw: object) -> list[str]:
    """Nodes n1..nN with one interface each on one segment (one radio channel): every
    node hears every other unless ``mesh.loss`` says otherwise."""
    names = [f"n{i}" for i in range(1, n + 1)]
    for i, name in enumerate(names, start=1):
        mesh.add(name, {"wlan0": (f"10.99.0.{i}", segment)}, **kw)
    return names


def grid(mesh: Mesh, size: int, **kw: object) -> list[str]:
    """A size x size grid; node (r, c) has one interface per neighbour, one segment per edge."""
    names = []
    for r in range(size):
        for c in range(size):
            ifaces: dict[str, tuple[str, str]] = {}
            node_id = r * size + c + 1
            for dr, dc, label in ((0, 1, "e"), (1, 0, "s"), (0, -1, "w"), (-1, 0, "n")):
                rr, cc = r + dr, c + dc
                if 0 <= rr < size and 0 <= cc < size:
                    a, b = sorted([r * size + c, rr * size + cc])
                    seg = f"g{a}-{b}"
                    edge = a * size * size + b
                    ifaces[label] = (f"10.{100 + edge // 250}.{edge % 250}.{node_id}", seg)
            names.append(f"r{r}c{c}")
            mesh.add(names[-1], ifaces, **kw)
    return names


FAST = Timers(
    hello_interval=0.5,
    neighb_hold=1.5,
    tc_interval=1.0,
    top_hold=3.0,
    mid_interval=1.0,
    mid_hold=3.0,
    hna_interval=1.0,
    hna_hold=3.0,
    dup_hold=6.0,
)
