"""A virtual gateway's routes, compiled: match, then rewrite, then the target's route table.

Gateway routes match like routes (:mod:`.match`), plus the request's hostname (``exact``
or ``suffix`` on the lower-case host without port). The first matching route, in the
snapshot's order, wins; its :class:`GatewayHit` says how to rewrite the request before it
goes through the ``virtual_service`` route table.

Rewrites follow the snapshot (:class:`~mapmesh.model.snapshot.Rewrite`), where the control
plane has already applied App Mesh's defaults:

- ``hostname``: the ``Host`` to send (by default the target virtual service's name); None
  keeps the client's ``Host`` header untouched (App Mesh ``defaultTargetHostname:
  DISABLED``).
- ``prefix``: replaces the prefix the route matched (by default ``/``; an explicit
  ``value``; None when ``defaultPrefix: DISABLED``). Where the replacement ends with ``/``
  and the rest of the path starts with ``/``, one is dropped: match ``/chapter``, request
  ``/chapter/1``, prefix ``/`` → ``/1``; request ``/chapter`` → ``/``. Applies only to
  routes matching a path prefix.
- ``path``: replaces the whole path (App Mesh's exact path rewrite); it wins over
  ``prefix`` when both are set.

The query string (and anything after it) is kept as the client sent it.
"""

from __future__ import annotations

from collections.abc import Iterable

from mapmesh.model.snapshot import GatewayRoute
from mapmesh.proxy.routing.match import FirstMatch, NoRoute, compile_match
from mapmesh.proxy.routing.request import RequestHead, strip_query

__all__ = ["CompiledGatewayRoutes", "GatewayHit", "rewrite_prefix"]


def rewrite_prefix(path: str, matched: int, replacement: str) -> str:
    """``path`` with its first ``matched`` characters replaced, collapsing ``//`` at the seam.

    The result always starts with ``/`` (one is added when an empty replacement would leave
    none).
    """
    rest = path[matched:]
    if replacement.endswith("/") and rest.startswith("/"):
        rest = rest[1:]
    rewritten = replacement + rest
    return rewritten if rewritten.startswith("/") else "/" + rewritten


class GatewayHit:
    """The gateway route a request matched, and how to send the request on."""

    __slots__ = ("_matched", "_path", "_prefix", "host", "index", "route")

    def __init__(self, index: int, route: GatewayRoute) -> None:
        self.index = index
        self.route = route
        rewrite = route.rewrite
        #: the ``Host`` to send upstream, or None to keep the client's
        self.host = rewrite.hostname
        self._path = rewrite.path
        matches_prefix = route.match.path.kind == "prefix"
        self._prefix = rewrite.prefix if matches_prefix else None
        self._matched = len(route.match.path.value) if matches_prefix else 0

    @property
    def virtual_service(self) -> str:
        """The route table to route the rewritten request through."""
        return self.route.virtual_service

    @property
    def port(self) -> int | None:
        """The target virtual service port, or None when the route names none."""
        return self.route.port

    def rewrite(self, head: RequestHead) -> tuple[str, str | None]:
        """``(target, host)`` to send: the rewritten request target (query kept) and the new
        ``Host`` header value, or None to keep the client's."""
        target = head.path
        if self._path is None and self._prefix is None:
            return target, self.host
        path = strip_query(target)
        if self._path is not None:
            new_path = self._path
        elif self._prefix is not None:
            new_path = rewrite_prefix(path, self._matched, self._prefix)
        else:
            new_path = path
        return new_path + target[len(path) :], self.host

    def forward(self, head: RequestHead) -> RequestHead:
        """The request as the target's route table sees it: rewritten target and host, and the
        route's target port when it names one."""
        target, host = self.rewrite(head)
        return RequestHead(
            head.method,
            target,
            head.host if host is None else host,
            head.port if self.route.port is None else self.route.port,
            head.scheme,
            head.headers,
        )

    def __repr__(self) -> str:
        return f"GatewayHit({self.route.name!r} → {self.route.virtual_service!r})"


class CompiledGatewayRoutes(FirstMatch[GatewayHit]):
    """A gateway's routes, precompiled; ``match(head) -> GatewayHit | NoRoute``."""

    __slots__ = ("hits",)

    def __init__(self, routes: Iterable[GatewayRoute]) -> None:
        entries = []
        for i, route in enumerate(routes):
            prefix, test = compile_match(route.match, f"gateway_routes[{i}].match")
            entries.append((prefix, test, GatewayHit(i, route)))
        if entries:
            miss = NoRoute("route_not_matched", "no gateway route matched the request")
        else:
            miss = NoRoute("empty_table", "the gateway has no routes")
        super().__init__(entries, miss)
        self.hits = tuple(hit for _, _, hit in entries)

    @classmethod
    def from_snapshot(cls, gateway_routes: Iterable[GatewayRoute]) -> CompiledGatewayRoutes:
        """Compile ``snapshot.gateway_routes``; raises :class:`.InvalidRoute` like tables."""
        return cls(gateway_routes)

    def __repr__(self) -> str:
        return f"CompiledGatewayRoutes(routes={len(self.hits)})"
