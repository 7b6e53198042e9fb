"""Kernel routes through netlink (pyroute2).

Only routes carrying the daemon's own protocol number in its own table are ever
changed or removed; everything else in the kernel is left alone. Asynchronous: the
netlink socket is served by the daemon's event loop (pyroute2's blocking API runs an
event loop of its own and cannot be called from inside another).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("cloudrone.olsr")

RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255  # in a delete request: match routes of any scope
RTNH_F_ONLINK = 4


@dataclass(frozen=True, slots=True)
class KernelRoute:
    dest: str
    prefix: int
    gateway: str | None  # None: the destination is on the link itself
    oif: int


class RouteTable:
    """Keeps the kernel's copy of our routes equal to the desired set, change by change."""

    def __init__(self, table: int, protocol: int, metric: int) -> None:
        self.table = table
        self.protocol = protocol
        self.metric = metric
        self.ipr = AsyncIPRoute()
        self.installed: dict[tuple[str, int], KernelRoute] = {}
        self.errors = 0
        self.changes = 0

    def close(self) -> None:
        self.ipr.close()

    async def _kernel_routes(self) -> dict[tuple[str, int], KernelRoute]:
        found = {}
        async for msg in await self.ipr.route("dump", table=self.table, proto=self.protocol):
            if msg.get("table") != self.table or msg["proto"] != self.protocol:
                continue
            if msg["family"] != 2:
                continue
            dest = msg.get("dst") or "0.0.0.0"
            key = (dest, msg["dst_len"])
            found[key] = KernelRoute(dest, msg["dst_len"], msg.get("gateway"), msg.get("oif") or 0)
        return found

    async def _add(self, route: KernelRoute) -> bool:
        args: dict[str, object] = {
            "dst": route.dest,
            "dst_len": route.prefix,
            "oif": route.oif,
            "table": self.table,
            "proto": self.protocol,
            "priority": self.metric,
        }
        if route.gateway is None:
            args["scope"] = RT_SCOPE_LINK
        else:
            args["gateway"] = route.gateway
            args["flags"] = RTNH_F_ONLINK
        try:
            await self.ipr.route("replace", **args)
        except NetlinkError as exc:
            self.errors += 1
            log.warning(
                "route add failed",
                extra={
                    "fields": {"event": "route_error", "route": _show(route), "error": str(exc)}
                },
            )
            return False
        self.changes += 1
        return True

    async def _delete(self, route: KernelRoute) -> None:
        try:
            await self.ipr.route(
                "del",
                dst=route.dest,
                dst_len=route.prefix,
                table=self.table,
                proto=self.protocol,  # the kernel deletes only a route of this protocol
                scope=RT_SCOPE_NOWHERE,
            )
            self.changes += 1
        except NetlinkError as exc:
            if exc.code != 3:  # ESRCH: already gone (its interface went away)
                self.errors += 1
                log.warning(
                    "route delete failed",
                    extra={
                        "fields": {"event": "route_error", "route": _show(route), "error": str(exc)}
                    },
                )

    async def apply(self, desired: dict[tuple[str, int], KernelRoute]) -> tuple[int, int]:
        """Install what is new or changed and delete what is no longer wanted."""
        added = removed = 0
        for key, route in list(self.installed.items()):
            if key not in desired:
                await self._delete(route)
                del self.installed[key]
                removed += 1
        for key, route in desired.items():
            if self.installed.get(key) != route:
                if await self._add(route):
                    self.installed[key] = route
                else:
                    self.installed.pop(key, None)
                added += 1
        return added, removed

    async def check(self) -> int:
        """Compare with the kernel: put back our routes deleted by someone, drop strays."""
        kernel = await self._kernel_routes()
        repaired = 0
        for key, route in kernel.items():
            if key not in self.installed:
                await self._delete(route)
                repaired += 1
        for key, route in list(self.installed.items()):
            if kernel.get(key) != route:
                if not await self._add(route):
                    del self.installed[key]
                repaired += 1
        return repaired

    async def flush(self) -> int:
        """Remove every route of ours from the kernel (clean exit)."""
        kernel = await self._kernel_routes()
        for route in kernel.values():
            await self._delete(route)
        self.installed.clear()
        return len(kernel)


def _show(route: KernelRoute) -> str:
    via = f" via {route.gateway}" if route.gateway else ""
    return f"{route.dest}/{route.prefix}{via} oif {route.oif}"
