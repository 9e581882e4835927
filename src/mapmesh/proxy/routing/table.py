"""A virtual service's routes, compiled; and the sidecar's outbound lookup by host.

:class:`CompiledRouteTable` keeps the snapshot's route order (priority ascending, routes
without one last, then name — the compiler sorted them) and returns the first route whose
match holds as a prebuilt :class:`RouteHit`, or the table's :class:`NoRoute`.

:class:`OutboundRoutes` is what the sidecar's outbound listener consults first: the request's
host (lower case, no port) names a declared backend's table. A host that is not declared is
a :class:`NoRoute` with cause ``unknown_host``, whose ``egress_allowed`` carries the mesh's
egress filter decision (``ALLOW_ALL``: pass the request through; ``DROP_ALL``: 404).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mapmesh.model.snapshot import EgressFilter, Route, RouteTable, Timeouts
from mapmesh.proxy.routing.match import FirstMatch, InvalidRoute, NoRoute, compile_match
from mapmesh.proxy.routing.request import RequestHead, split_authority
from mapmesh.proxy.routing.weighted import WeightedPicker

__all__ = ["CompiledRouteTable", "OutboundRoutes", "RouteHit", "timeout_ms"]


def timeout_ms(timeouts: Timeouts) -> tuple[int, int]:
    """(request, idle) timeouts in ms, 0 for none: what a request's target carries."""
    return timeouts.request_ms or 0, timeouts.idle_ms


@dataclass(frozen=True, slots=True, eq=False)
class RouteHit:
    """The route a request matched: the route (retry policy, timeouts, targets), its position
    in the table, and the weighted picker over its targets. Built once per route, with what
    every request reads of the route (its name, its timeouts in ms, 0 for none) copied out
    of the snapshot's model, which compiled code reads only by attribute name."""

    virtual_service: str
    index: int
    route: Route
    picker: WeightedPicker
    name: str
    request_ms: int
    idle_ms: int

    @classmethod
    def of(cls, virtual_service: str, index: int, route: Route) -> RouteHit:
        picker = WeightedPicker(route.targets)
        return cls(virtual_service, index, route, picker, route.name, *timeout_ms(route.timeout))


class CompiledRouteTable(FirstMatch[RouteHit]):
    """One :class:`RouteTable`, precompiled; ``match(head) -> RouteHit | NoRoute``."""

    __slots__ = ("hits", "table", "virtual_service")

    def __init__(self, table: RouteTable) -> None:
        name = table.virtual_service
        entries = []
        for i, route in enumerate(table.routes):
            prefix, test = compile_match(route.match, f"route_tables[{name}].routes[{i}].match")
            entries.append((prefix, test, RouteHit.of(name, i, route)))
        if table.routes:
            miss = NoRoute("route_not_matched", f"no route of {name} matched the request")
        else:
            miss = NoRoute("empty_table", f"{name} has no routes (service or provider missing)")
        super().__init__(entries, miss)
        self.table = table
        self.virtual_service = name
        self.hits = tuple(hit for _, _, hit in entries)

    @classmethod
    def from_table(cls, table: RouteTable) -> CompiledRouteTable:
        """Compile ``table``; raises :class:`InvalidRoute` naming the field it cannot use."""
        return cls(table)

    def __repr__(self) -> str:
        return f"CompiledRouteTable({self.virtual_service!r}, routes={len(self.hits)})"


class OutboundRoutes:
    """The sidecar's declared backends: host → :class:`CompiledRouteTable`."""

    __slots__ = ("_tables", "egress_allowed", "egress_filter")

    def __init__(
        self, tables: Iterable[CompiledRouteTable], egress_filter: EgressFilter = "DROP_ALL"
    ) -> None:
        self._tables: dict[str, CompiledRouteTable] = {}
        for table in tables:
            host = table.virtual_service.lower()
            if host in self._tables:
                raise InvalidRoute(f"route_tables[{host}]: declared twice")
            self._tables[host] = table
        self.egress_filter: EgressFilter = egress_filter
        #: whether a request for an undeclared host is passed through (``ALLOW_ALL``)
        self.egress_allowed = egress_filter == "ALLOW_ALL"

    @classmethod
    def from_snapshot(
        cls, route_tables: Iterable[RouteTable], egress_filter: EgressFilter = "DROP_ALL"
    ) -> OutboundRoutes:
        """Compile every table of a snapshot (``snapshot.route_tables``, ``egress_filter``)."""
        return cls((CompiledRouteTable(t) for t in route_tables), egress_filter)

    def table_of_host(self, host: str) -> CompiledRouteTable | None:
        """The table for a host already lower-cased and without port (``split_authority``)."""
        return self._tables.get(host)

    def table(self, authority: str) -> CompiledRouteTable | None:
        """The table for a ``Host`` value in any case, with or without port (``Worker.corp:80``)."""
        table = self._tables.get(authority)
        if table is None:
            table = self._tables.get(split_authority(authority, 0)[0])
        return table

    def match(self, head: RequestHead) -> RouteHit | NoRoute:
        """Route ``head`` by its host, then by the host's route table."""
        table = self._tables.get(head.host)
        if table is None:
            table = self.table(head.host)
            if table is None:
                return NoRoute(
                    "unknown_host",
                    f"{head.host or '(no host)'} is not a declared backend",
                    egress_allowed=self.egress_allowed,
                )
        return table.match(head)

    @property
    def virtual_services(self) -> tuple[str, ...]:
        return tuple(self._tables)

    def __contains__(self, authority: object) -> bool:
        return isinstance(authority, str) and self.table(authority) is not None

    def __len__(self) -> int:
        return len(self._tables)

    def __repr__(self) -> str:
        return f"OutboundRoutes({sorted(self._tables)!r}, egress_filter={self.egress_filter!r})"
