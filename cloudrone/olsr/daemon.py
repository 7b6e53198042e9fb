"""cloudrone-olsrd: the OLSR routing daemon of a drone.

One process, one thread, one asyncio event loop: a UDP socket per mesh interface
(port 698, bound to its device, broadcast, DSCP CS6 as olsrd sends) read by the loop,
netlink handles
for addresses and routes, the JSON status over HTTP on localhost, and the protocol's
timers as the loop's own. Protocol decisions are taken by
:class:`cloudrone.olsr.protocol.Node`; this module only moves bytes and routes.

Kernel work (netlink) and reloads are awaited one at a time, in order, by the main
coroutine (:meth:`Daemon.run`), so they never interleave; timers and sockets only
queue it.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import json
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import AsyncIPRoute

from cloudrone import sdnotify
from cloudrone.olsr import codec, lq, status
from cloudrone.olsr.config import DEFAULT_PATH, Config, ConfigError, load
from cloudrone.olsr.constants import LQ_HELLO_MESSAGE, LQ_TC_MESSAGE, TC_MESSAGE
from cloudrone.olsr.kernel import KernelRoute, RouteTable
from cloudrone.olsr.protocol import HnaPolicy, Node
from cloudrone.olsr.routing import Route

log = logging.getLogger("cloudrone.olsr")

MAX_PACKET = 1472  # a 1500-byte MTU minus IP and UDP headers
# olsrd's IP TOS byte (DEF_TOS 192: DSCP CS6, network control) and socket priority (its
# precedence, 6); olsrd leaves the IP TTL at the system's default, and so does this.
IP_TOS_OLSRD = 0xC0
SO_PRIORITY_OLSRD = 6
# olsrd calculates routes at once after a HELLO or packet that changed something, then
# skips any calculation asked for within the next second (its SPF back-off) and forgets
# the change that asked: news that reached it within that second would be stored but
# not routed by until something else changes. On each interface, a packet with news
# (a changed HELLO, or a TC, MID or HNA with new content, own or relayed) therefore
# leaves no sooner than this after the previous one.
OLSRD_SPF_BACKOFF = 1.1
NEWS_MAX_WAIT = 3.0  # a changed HELLO holds queued news back no longer than this
SEEN_LIMIT = 4096  # originators' last relayed content remembered (is_news)
HTTP_LIMIT = 4096  # a status request is read up to this size, then answered or dropped
HTTP_TIMEOUT = 5.0  # a status client that takes longer is dropped
Job = Callable[[], Awaitable[None]]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


def hna_policy(config: Config) -> HnaPolicy:
    """Which announcements the node believes, from its configuration's hna section."""
    return HnaPolicy(
        accept=tuple(ipaddress.IPv4Network(n) for n in config.hna_accept),
        gateways=frozenset(config.hna_gateways),
        fleet=frozenset(config.fleet),
    )


def event(level: int, msg: str, name: str, **fields: Any) -> None:
    log.log(level, msg, extra={"fields": {"event": name, **fields}})


@dataclass(slots=True)
class Interface:
    name: str
    index: int
    address: str
    broadcast: str
    sock: socket.socket
    seqno: int = 0
    queue: list[bytes] = field(default_factory=list)
    news: int = 0  # how many queued messages are news (see Daemon.is_news)
    quiet_until: float = 0.0  # no news leaves before (monotonic; olsrd's back-off)
    news_due: float = 0.0  # when the queued news may leave
    news_since: float = 0.0  # when the oldest queued news was queued
    last_hello: bytes = b""  # the body of the last HELLO sent here


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.work: asyncio.Queue[Job | None] = asyncio.Queue()  # None: stop
        self.ifaces: dict[str, Interface] = {}
        self.started = time.monotonic()
        self.ipr = AsyncIPRoute()
        self.routes_wanted: dict[tuple[str, int], Route] = {}
        self.route_table = RouteTable(
            config.route_table, config.route_protocol, config.route_metric
        )
        self.http: asyncio.Server | None = None
        self.sent_bytes = 0
        self.sent_packets = 0
        self.recv_bytes = 0
        self.send_errors = 0
        self.reloads = 0
        self.reload_failures = 0
        self.seen: dict[tuple[int, str], bytes] = {}  # (type, originator) -> content
        self.node: Node  # made by start(), once the interfaces' addresses are known

    # --- interfaces --------------------------------------------------------------------

    async def _read_addresses(self) -> dict[str, tuple[int, str, str] | None]:
        """For each configured interface: (index, address, broadcast), or None if unusable."""
        out: dict[str, tuple[int, str, str] | None] = {}
        for name in self.config.interfaces:
            try:
                index = socket.if_nametoindex(name)
            except OSError:
                out[name] = None
                continue
            found = None
            for msg in [
                m async for m in await self.ipr.get_addr(index=index, family=socket.AF_INET)
            ]:
                addr = msg.get("IFA_ADDRESS") or msg.get("IFA_LOCAL")
                if addr:
                    found = (index, addr, msg.get("IFA_BROADCAST") or "255.255.255.255")
                    break
            out[name] = found
        return out

    def _first_address(self, addresses: dict[str, tuple[int, str, str] | None]) -> str:
        for name in self.config.interfaces:
            entry = addresses.get(name)
            if entry:
                return entry[1]
        names = ", ".join(self.config.interfaces)
        raise ConfigError(
            [
                f"{self.config.source or 'olsrd.yml'} interfaces: none of "
                f"{names} has an IPv4 address; assign one or set main_address"
            ]
        )

    def _open_socket(self, name: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, IP_TOS_OLSRD)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, SO_PRIORITY_OLSRD)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.bind(("0.0.0.0", self.config.port))
        sock.setblocking(False)
        return sock

    async def refresh_interfaces(self) -> None:
        """Follow interfaces that appear, disappear or change address."""
        current = await self._read_addresses()
        changed = False
        for name, entry in current.items():
            have = self.ifaces.get(name)
            if have and (entry is None or (entry[0], entry[1]) != (have.index, have.address)):
                self._close_iface(have)
                event(logging.WARNING, "interface gone or changed", "interface_down", ifname=name)
                changed = True
                have = None
            if have is None and entry is not None:
                try:
                    sock = self._open_socket(name)
                except OSError as exc:
                    event(
                        logging.WARNING,
                        "cannot open interface",
                        "interface_error",
                        ifname=name,
                        error=exc.strerror,
                    )
                    continue
                iface = Interface(name, entry[0], entry[1], entry[2], sock)
                self.ifaces[name] = iface
                self.loop.add_reader(sock, self.on_udp, iface)
                event(
                    logging.INFO,
                    "interface up",
                    "interface_up",
                    ifname=name,
                    address=entry[1],
                    broadcast=entry[2],
                )
                changed = True
        for name in [n for n in self.ifaces if n not in current]:
            self._close_iface(self.ifaces[name])
            changed = True
        if changed:
            self.node.set_interfaces({n: i.address for n, i in self.ifaces.items()})
            self.schedule_routes()

    def _close_iface(self, iface: Interface) -> None:
        self.loop.remove_reader(iface.sock)
        iface.sock.close()
        self.ifaces.pop(iface.name, None)

    # --- timers and kernel work --------------------------------------------------------

    def later(
        self, name: str, delay: float, action: Callable[[], None], replace: bool = True
    ) -> None:
        """Run ``action`` in ``delay`` s as timer ``name``: replaces a pending one of that
        name, or with ``replace=False`` leaves it be."""
        if name in self.timers:
            if not replace:
                return
            self.timers[name].cancel()
        self.timers[name] = self.loop.call_later(delay, self._fire, name, action)

    def _fire(self, name: str, action: Callable[[], None]) -> None:
        del self.timers[name]
        action()

    def jitter(self) -> float:
        return random.uniform(0, self.config.max_jitter)

    def every(self, name: str, interval: Callable[[], float], action: Callable[[], None]) -> None:
        def run() -> None:
            action()
            self.later(name, max(interval() - self.jitter(), 0.01), run)

        self.later(name, self.jitter(), run)

    def queue(self, job: Job) -> Callable[[], None]:
        """An action for a timer: hand ``job`` (netlink) to the main coroutine."""
        return lambda: self.work.put_nowait(job)

    # --- sending -----------------------------------------------------------------------

    def is_news(self, raw: bytes) -> bool:
        """Whether a TC, MID or HNA message (own or relayed) says something new: a TC
        with another ANSN or other neighbours, a MID or HNA with other content."""
        mtype, originator = raw[0], socket.inet_ntoa(raw[4:8])
        body = raw[codec.MESSAGE_HEADER.size :]
        if mtype in (TC_MESSAGE, LQ_TC_MESSAGE):  # ANSN and addresses, not the quality
            step = 4 if mtype == TC_MESSAGE else codec.LQ_ENTRY
            content = body[:2] + b"".join(body[i : i + 4] for i in range(4, len(body), step))
        else:
            content = body
        key = (mtype, originator)
        if self.seen.get(key) == content:
            return False
        if len(self.seen) >= SEEN_LIMIT:
            self.seen.clear()
        self.seen[key] = content
        return True

    def enqueue(self, messages: list[bytes], delay: float, name: str) -> None:
        news = sum(self.is_news(m) for m in messages)
        now = time.monotonic()
        for iface in self.ifaces.values():
            iface.queue.extend(messages)
            if news and not iface.news:
                iface.news_due = max(now, iface.quiet_until)
                iface.news_since = now
            iface.news += news
        self.later(name, delay, self.flush_all, replace=False)

    def send_now(self, messages: list[bytes]) -> None:
        """Queue ``messages`` to go out as soon as this moment's work is done: what the
        node says at one moment (a TC, MID and HNA) leaves in one packet."""
        self.enqueue(messages, 0.0, "flush-now")

    def queue_forward(self, messages: list[bytes]) -> None:
        self.enqueue(messages, self.jitter(), "flush")

    def flush_all(self) -> None:
        for iface in list(self.ifaces.values()):
            self.flush(iface)

    def flush(self, iface: Interface) -> None:
        now = time.monotonic()
        if iface.news and now < iface.news_due:
            # news waits out an olsrd neighbour's back-off after the news before it;
            # what queued after it waits with it, in order
            self.later(f"flush-{iface.name}", iface.news_due - now, self.flush_all, False)
            return
        if iface.news:
            iface.quiet_until = now + OLSRD_SPF_BACKOFF
            iface.news = 0
        while iface.queue:
            batch: list[bytes] = []
            size = codec.PACKET_HEADER.size
            while iface.queue and (not batch or size + len(iface.queue[0]) <= MAX_PACKET):
                msg = iface.queue.pop(0)
                batch.append(msg)
                size += len(msg)
            self.transmit(iface, batch)

    def transmit(self, iface: Interface, messages: list[bytes]) -> None:
        iface.seqno = codec.seq_next(iface.seqno)
        packet = codec.encode_packet(iface.seqno, messages)
        try:
            iface.sock.sendto(packet, (iface.broadcast, self.config.port))
            self.sent_bytes += len(packet)
            self.sent_packets += 1
        except OSError as exc:
            self.send_errors += 1
            iface.queue.clear()
            iface.news = 0
            if exc.errno in (errno.ENODEV, errno.ENXIO, errno.ENETDOWN, errno.EADDRNOTAVAIL):
                self.later("ifcheck-now", 0.2, self.queue(self.refresh_interfaces))

    def send_hello(self) -> None:
        """A HELLO on every interface, at once and in a packet of its own: it is never
        held back (a late HELLO loses neighbours), but a changed one is news."""
        for iface in list(self.ifaces.values()):
            self.node.counters["originated_hello"] += 1
            raw = self.node.make_hello(iface.name).raw
            body = _hello_content(raw)
            if body != iface.last_hello:
                iface.last_hello = body
                now = time.monotonic()
                iface.quiet_until = max(iface.quiet_until, now + OLSRD_SPF_BACKOFF)
                if iface.news and now - iface.news_since < NEWS_MAX_WAIT:
                    iface.news_due = max(iface.news_due, iface.quiet_until)
            self.transmit(iface, [raw])

    def _originate(self, kind: str, msg: Any) -> None:
        """Count and flood a message this node makes (None: nothing to say)."""
        if msg is not None:
            self.node.counters[f"originated_{kind}"] += 1
            self.send_now([msg.raw])

    def send_tc(self) -> None:
        self._originate("tc", self.node.make_tc())

    def send_mid(self) -> None:
        self._originate("mid", self.node.make_mid())

    def send_hna(self) -> None:
        self._originate("hna", self.node.make_hna())

    def send_on_change(self) -> None:
        """The neighbourhood changed: TC, MID and HNA in one packet."""
        self.send_tc()
        self.send_mid()
        self.send_hna()

    # --- receiving ---------------------------------------------------------------------

    def on_udp(self, iface: Interface) -> None:
        for _ in range(64):
            try:
                data, (source, _port) = iface.sock.recvfrom(65535)
            except OSError:  # drained (BlockingIOError) or the interface went away
                return
            self.on_datagram(data, source, iface.name)

    def on_datagram(self, data: bytes, source: str, ifname: str) -> None:
        self.recv_bytes += len(data)
        forward = self.node.receive(data, source, ifname)
        if forward:
            self.queue_forward(forward)
        if self.node.lq_new:
            self.report_lq_senders()
        if self.node.hna_refused_new or self.node.strangers_new:
            self.report_refusals()
        self.after_state_change()

    def report_refusals(self) -> None:
        """One warning per refused announcement and per node outside the fleet."""
        for key in self.node.hna_refused_new:
            r = self.node.hna_refused[key]
            event(logging.WARNING, status.hna_problem(r), "hna_refused",
                  originator=r.originator, network=f"{r.network}/{r.prefix}",
                  reason=r.reason, source=r.source)  # fmt: skip
        for address in self.node.strangers_new:
            s = self.node.strangers[address]
            event(logging.WARNING, status.stranger_problem(s), "stranger",
                  originator=s.originator, source=s.source)  # fmt: skip
        if self.node.hna_refused_new or self.node.strangers_new:
            self.node.hna_refused_new.clear()
            self.node.strangers_new.clear()
            self.notify_status()

    def report_lq_senders(self) -> None:
        """One warning per new sender of olsrd link-quality messages, never per packet."""
        for address in self.node.lq_new:
            sender = self.node.lq_senders[address]
            event(
                logging.WARNING,
                status.lq_problem(sender),
                "link_quality_sender",
                address=address,
                originators=sorted(sender.originators),
                message_types=status.lq_names(sender),
                fix=status.lq_fix(sender),
            )
        self.node.lq_new.clear()
        self.notify_status()

    def after_state_change(self) -> None:
        if self.node.tc_changed and "tc-change" not in self.timers:
            # the neighbourhood changed: a HELLO tells the neighbours now, and TC, MID
            # and HNA (in one packet) tell the mesh once the HELLO's news has been
            # taken in (the news pacing of flush holds them that long)
            self.node.tc_changed = False
            jitter = self.jitter()
            self.later("news-hello", jitter, self.send_hello, replace=False)
            self.later("tc-change", jitter, self.send_on_change)
        if self.node.changed:
            self.schedule_routes()

    # --- routes ------------------------------------------------------------------------

    def schedule_routes(self) -> None:
        self.later("routes", 0.05, self.queue(self.update_routes), replace=False)

    async def update_routes(self) -> None:
        self.routes_wanted = self.node.routes()
        by_addr = {i.address: i for i in self.ifaces.values()}
        desired: dict[tuple[str, int], KernelRoute] = {}
        for key, r in self.routes_wanted.items():
            iface = by_addr.get(r.iface)
            if iface is None:
                continue
            gateway = None if (r.prefix == 32 and r.next_hop == r.dest) else r.next_hop
            desired[key] = KernelRoute(r.dest, r.prefix, gateway, iface.index)
        added, removed = await self.route_table.apply(desired)
        if added or removed:
            event(
                logging.INFO,
                "routes updated",
                "routes",
                added=added,
                removed=removed,
                total=len(self.route_table.installed),
            )
            self.notify_status()

    async def check_routes(self) -> None:
        repaired = await self.route_table.check()
        if repaired:
            event(logging.WARNING, "kernel routes repaired", "routes_repaired", count=repaired)

    def housekeeping(self) -> None:
        self.node.expire()
        self.after_state_change()

    def quality_tick(self) -> None:
        self.node.tick_quality()
        self.after_state_change()

    # --- status ------------------------------------------------------------------------

    async def open_http(self) -> None:
        if self.config.status_port:
            self.http = await asyncio.start_server(
                self.on_http, self.config.status_address, self.config.status_port, backlog=16
            )

    def close_http(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None

    async def on_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request, one answer; a bounded request, read within HTTP_TIMEOUT."""
        request = b""
        try:
            async with asyncio.timeout(HTTP_TIMEOUT):
                while b"\r\n\r\n" not in request and b"\n\n" not in request:
                    chunk = await reader.read(HTTP_LIMIT)
                    request += chunk
                    if not chunk or len(request) >= HTTP_LIMIT:
                        break
                if request:
                    writer.write(self.http_response(request))
                    await writer.drain()
        except OSError:  # TimeoutError too: a stuck or vanished client
            pass
        finally:
            writer.close()

    def http_response(self, request: bytes) -> bytes:
        line = request.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split()
        if len(parts) < 2 or parts[0] != "GET":
            return _http(405, {"error": "only GET is supported"})
        path = parts[1].split("?", 1)[0].strip("/")
        wanted = path.split("/") if path else ["all"]
        if wanted == ["all"]:
            wanted = list(status.SECTIONS)
        if any(w not in status.SECTIONS for w in wanted):
            return _http(404, {"error": f"unknown path /{path}", "paths": list(status.SECTIONS)})
        return _http(200, self.snapshot(wanted))

    def snapshot(self, sections: list[str]) -> dict[str, Any]:
        now = time.monotonic()
        node = self.node
        names = {i.address: i.name for i in self.ifaces.values()}
        makers: dict[str, Callable[[], Any]] = {
            "links": lambda: status.links(node, names, now),
            "neighbors": lambda: status.neighbors(node, now),
            "2hop": lambda: status.two_hop(node, now),
            "topology": lambda: status.topology(node, now),
            "hna": lambda: status.hna(node, now),
            "mid": lambda: status.mid(node, now),
            "routes": lambda: status.routes(self.routes_wanted, names, self.config.route_metric),
            "mpr": lambda: status.mpr(node, now),
            "stats": self.stats,
            "warnings": lambda: status.warnings(node, now, time.time()),
        }
        out: dict[str, Any] = {s: makers[s]() for s in sections}
        out.update(
            {
                "pid": os.getpid(),
                "systemTime": int(time.time()),
                "timeSinceStartup": int((now - self.started) * 1000),
                "mainAddress": node.main_address,
                "linkQuality": self.config.link_quality,
                "version": "cloudrone-olsrd jsoninfo-1.1",
            }
        )
        return out

    def stats(self) -> dict[str, Any]:
        usage = os.times()
        return {
            "counters": dict(sorted(self.node.counters.items())),
            "sentBytes": self.sent_bytes,
            "sentPackets": self.sent_packets,
            "receivedBytes": self.recv_bytes,
            "sendErrors": self.send_errors,
            "routeChanges": self.route_table.changes,
            "routeErrors": self.route_table.errors,
            "reloads": self.reloads,
            "reloadFailures": self.reload_failures,
            "cpuSeconds": round(usage.user + usage.system, 3),
            "interfaces": sorted(self.ifaces),
        }

    def notify_status(self) -> None:
        sym = len(self.node.symmetric_neighbors())
        line = (
            f"STATUS={sym} neighbours, {len(self.route_table.installed)} routes, "
            f"{len(self.node.mpr_set)} MPRs"
        )
        if self.node.lq_senders:
            other = "plain HELLO" if self.node.etx else "link quality"
            line += (
                f"; {len(self.node.lq_senders)} node(s) with {other} cannot be neighbours: "
                "every node of a mesh needs the same link quality setting (see /warnings)"
            )
        sdnotify.notify(line)

    # --- signals and reload ------------------------------------------------------------

    def on_stop_signal(self, signum: int) -> None:
        event(logging.INFO, "stopping", "stop", signal=signal.Signals(signum).name)
        self.work.put_nowait(None)

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """A callback failed: stop (and let systemd restart us) rather than run half-dead."""
        exc = context.get("exception")
        if exc is None:
            event(logging.WARNING, context["message"], "loop_warning")
            return

        async def fail() -> None:
            raise exc

        self.work.put_nowait(fail)

    async def reload(self) -> None:
        sdnotify.notify("RELOADING=1")
        try:
            new = load(self.config.source)
        except ConfigError as exc:
            self.reload_failures += 1
            event(
                logging.ERROR,
                "reload refused; keeping the running config",
                "reload_refused",
                problems=exc.problems,
            )
            sdnotify.notify("READY=1")
            return
        old = self.config
        if new.main_address and new.main_address != self.node.main_address:
            event(
                logging.WARNING,
                "main_address changes take effect on restart",
                "reload_needs_restart",
                key="main_address",
            )
        if (new.route_table, new.route_protocol, new.route_metric) != (
            old.route_table,
            old.route_protocol,
            old.route_metric,
        ):
            await self.route_table.flush()
            self.route_table.close()
            self.route_table = RouteTable(new.route_table, new.route_protocol, new.route_metric)
        self.config = new
        if new.link_quality != old.link_quality:
            # another dialect: start the repositories afresh (neighbours return within
            # a few HELLOs); the old routes stay until the new ones replace them
            self.node = self.make_node(self.node.main_address, new)
            event(
                logging.INFO,
                "link quality mode changed",
                "link_quality_mode",
                link_quality=new.link_quality,
            )
        node = self.node
        node.willingness = new.willingness
        node.timers = new.timers
        node.tc_redundancy = new.tc_redundancy
        node.hna_networks = list(new.hna_networks)
        node.hna_policy = hna_policy(new)
        logging.getLogger().setLevel(new.log_level.upper())
        if (new.status_address, new.status_port) != (old.status_address, old.status_port):
            self.close_http()
            try:
                await self.open_http()
            except OSError as exc:
                event(logging.ERROR, "cannot open the status port", "status_error", error=str(exc))
        await self.refresh_interfaces()
        self.start_timers()
        node.changed = True
        self.schedule_routes()
        self.reloads += 1
        event(logging.INFO, "config reloaded", "reload", source=new.source)
        sdnotify.notify("READY=1")

    # --- start, run, stop -------------------------------------------------------------

    def start_timers(self) -> None:
        timers = self.node.timers
        self.every("hello", lambda: timers.hello_interval, self.send_hello)
        self.every("tc", lambda: timers.tc_interval, self.send_tc)
        self.every("mid", lambda: timers.mid_interval, self.send_mid)
        self.every("hna", lambda: timers.hna_interval, self.send_hna)
        self.every("expire", lambda: min(timers.hello_interval / 2, 1.0), self.housekeeping)
        if self.node.etx:
            self.later("quality", lq.TICK, self._quality_timer)
        elif "quality" in self.timers:
            self.timers.pop("quality").cancel()
        self.every(
            "ifcheck",
            lambda: max(timers.hello_interval, 2.0),
            self.queue(self.refresh_interfaces),
        )
        self.every(
            "routecheck", lambda: self.config.route_check_interval, self.queue(self.check_routes)
        )
        wd = sdnotify.watchdog_interval()
        if wd is not None:
            self.every("watchdog", lambda: wd, lambda: sdnotify.notify("WATCHDOG=1"))

    def _quality_timer(self) -> None:
        """olsrd's link quality timer: every second exactly, no jitter."""
        self.later("quality", lq.TICK, self._quality_timer)
        self.quality_tick()

    def make_node(self, main_address: str, config: Config) -> Node:
        return Node(
            main_address,
            {n: i.address for n, i in self.ifaces.items()},
            willingness=config.willingness,
            timers=config.timers,
            tc_redundancy=config.tc_redundancy,
            hna=config.hna_networks,
            hna_policy=hna_policy(config),
            link_quality=config.link_quality,
            clock=time.monotonic,
        )

    async def start(self) -> None:
        addresses = await self._read_addresses()
        self.node = self.make_node(
            self.config.main_address or self._first_address(addresses), self.config
        )
        self.loop.set_exception_handler(self.on_loop_error)
        self.loop.add_signal_handler(signal.SIGHUP, self.work.put_nowait, self.reload)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.on_stop_signal, signum)
        stale = await self.route_table.flush()
        if stale:
            event(
                logging.INFO, "removed routes left by an earlier run", "routes_stale", count=stale
            )
        await self.open_http()
        await self.refresh_interfaces()
        self.start_timers()
        self._warn_forwarding()
        event(
            logging.INFO,
            "started",
            "start",
            main_address=self.node.main_address,
            interfaces=sorted(self.ifaces),
            willingness=self.node.willingness,
            status_port=self.config.status_port,
        )
        sdnotify.notify(f"READY=1\nMAINPID={os.getpid()}")

    def _warn_forwarding(self) -> None:
        try:
            with open("/proc/sys/net/ipv4/ip_forward", encoding="ascii") as fh:
                if fh.read().strip() != "1":
                    event(
                        logging.WARNING,
                        "IPv4 forwarding is off: this node will not relay traffic",
                        "forwarding_off",
                        fix="sysctl -w net.ipv4.ip_forward=1",
                    )
        except OSError:
            pass

    async def run(self) -> int:
        """Start, then do the queued kernel work and reloads until told to stop."""
        try:
            await self.start()
        except OSError as exc:
            event(logging.ERROR, "cannot start", "start_failed", error=str(exc))
            await self.stop()
            return 1
        try:
            while (job := await self.work.get()) is not None:
                await job()
        finally:
            await self.stop()
        return 0

    async def stop(self) -> None:
        sdnotify.notify("STOPPING=1")
        for iface in list(self.ifaces.values()):
            self._close_iface(iface)
        self.close_http()
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        removed = await self.route_table.flush()
        event(logging.INFO, "stopped; routes removed", "stopped", routes_removed=removed)
        self.route_table.close()
        self.ipr.close()


def _hello_content(raw: bytes) -> bytes:
    """What a HELLO says of the neighbourhood: willingness, link codes and addresses,
    without Htime and the link-quality bytes (those change without news)."""
    body = raw[codec.MESSAGE_HEADER.size :]
    step = codec.LQ_ENTRY if raw[0] == LQ_HELLO_MESSAGE else 4
    out, offset = [body[3:4]], codec.HELLO_HEADER.size
    while offset + codec.LINK_HEADER.size <= len(body):
        size = int.from_bytes(body[offset + 2 : offset + 4], "big") or len(body)
        block = body[offset : offset + size]
        out.append(block[:1])
        out += [block[i : i + 4] for i in range(codec.LINK_HEADER.size, len(block), step)]
        offset += size
    return b"".join(out)


def _http(code: int, body: dict[str, Any]) -> bytes:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[code]
    payload = json.dumps(body, indent=1).encode()
    head = (
        f"HTTP/1.0 {code} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cloudrone-olsrd", description="OLSR (RFC 3626) routing daemon for the drone mesh"
    )
    parser.add_argument("--config", default=DEFAULT_PATH, help=f"config file ({DEFAULT_PATH})")
    parser.add_argument(
        "--check", metavar="CONFIG", help="validate CONFIG and exit: 0 when usable, 1 if not"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load(args.check or args.config)
        if args.check:
            print(
                f"{args.check}: ok (interfaces {', '.join(cfg.interfaces)}; "
                f"willingness {cfg.willingness}; HNA "
                f"{', '.join(f'{n}/{p}' for n, p in cfg.hna_networks) or 'none'}; "
                f"timers {cfg.profile}, HELLO {cfg.timers.hello_interval:g} s / "
                f"{cfg.timers.neighb_hold:g} s; link quality {cfg.link_quality})"
            )
            return 0
        setup_logging(cfg.log_level)
        return asyncio.run(serve(cfg))
    except ConfigError as exc:  # a bad file, or no interface with an address at start
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 1


async def serve(config: Config) -> int:
    return await Daemon(config).run()


if __name__ == "__main__":
    sys.exit(main())
