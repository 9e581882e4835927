"""Route matching for the sidecar (outbound) and the gateway: pure, no I/O.

Theory of operation
-------------------
A request walks listener → codec → **route** → weighted target → cluster. This package is
the route step. It is compiled once when a snapshot is applied and consulted once per
request (twice at a gateway: gateway route, then the target's route table).

Compile time (per snapshot) does everything that does not depend on the request:

- every :class:`~mapmesh.model.snapshot.RouteMatch` becomes a path prefix plus one closure
  over the conditions the route sets (:mod:`.match`); regexes are compiled here;
- every route becomes a prebuilt :class:`RouteHit` with a :class:`WeightedPicker`
  (cumulative weights, O(log n) pick; weight-0 targets dropped);
- every "no route" answer of a table is prebuilt; hosts are indexed in a dict.

Request time is: one dict lookup by host (sidecar), one ``partition`` to drop the query,
then for each route in order ``path.startswith(prefix)`` and, when the route has other
conditions, one closure call. The first route that holds wins — there is no "best match",
as in App Mesh/Envoy the order is the snapshot's (priority, then name). Nothing is allocated
on a hit. The query is parsed only when a route with query conditions is reached, once.

Outcomes carry reasons, not booleans: :class:`NoRoute` has a ``cause``
(``route_not_matched``, ``empty_table``, ``unknown_host``) that maps to a counter, the
access-log flag ``NR`` and the 404 body; for an undeclared host it also carries the
egress decision (``egress_allowed``) so the proxy can pass the request through under
``ALLOW_ALL``.

Match semantics (Envoy's, which App Mesh ran on) are listed in :mod:`.match`; what the
caller must put in a :class:`RequestHead` in :mod:`.request`; gateway rewrites in
:mod:`.gateway`. Approximations: Python ``re`` instead of RE2 for regexes; no path
normalisation or percent-decoding (Envoy's defaults in App Mesh); a route's protocol is not
checked against the listener's (the caller only consults tables for its own protocol).

Rejected designs: generating one Python function per table with ``exec`` (about 10% faster
on a 10-route table, but unreadable and harder to debug); a trie over path prefixes (route
order, not longest prefix, decides in App Mesh, so a trie would still need the ordered
walk).

Example::

    >>> import random
    >>> from mapmesh.model.snapshot import (
    ...     HeaderMatch, PathMatch, Provider, Route, RouteMatch, RouteTable, Timeouts,
    ...     WeightedCluster)
    >>> def route(name, match, *targets):
    ...     return Route(name=name, priority=None, protocol="http", match=match, retry=None,
    ...                  targets=targets, timeout=Timeouts(request_ms=15000, idle_ms=300000))
    >>> canary = route("canary",
    ...     RouteMatch(path=PathMatch(kind="prefix", value="/api/"),
    ...                headers=(HeaderMatch(name="x-canary", kind="exact", value="1"),)),
    ...     WeightedCluster(cluster="demo/v2:8080", weight=1, port=8080))
    >>> default = route("default", RouteMatch(),
    ...     WeightedCluster(cluster="demo/v1:8080", weight=90, port=8080),
    ...     WeightedCluster(cluster="demo/v2:8080", weight=10, port=8080))
    >>> table = RouteTable(virtual_service="worker.corp", ports=(8080,),
    ...     provider=Provider(kind="virtualRouter", name="worker-router"),
    ...     routes=(canary, default), client_tls=None, client_policy_from="none")
    >>> outbound = OutboundRoutes.from_snapshot([table])
    >>> hit = outbound.match(RequestHead("GET", "/api/users?page=2", "worker.corp", 8080,
    ...                                  headers={"x-canary": "1"}))
    >>> hit.route.name, hit.picker.choose(random.Random(7)).cluster
    ('canary', 'demo/v2:8080')
    >>> outbound.match(RequestHead("GET", "/", "billing.corp", 8080)).reason
    'billing.corp is not a declared backend'
"""

from mapmesh.proxy.routing.gateway import CompiledGatewayRoutes, GatewayHit, rewrite_prefix
from mapmesh.proxy.routing.match import InvalidRoute, NoRoute, NoRouteCause
from mapmesh.proxy.routing.request import RequestHead, query_params, split_authority
from mapmesh.proxy.routing.table import CompiledRouteTable, OutboundRoutes, RouteHit
from mapmesh.proxy.routing.weighted import WeightedPicker

__all__ = [
    "CompiledGatewayRoutes",
    "CompiledRouteTable",
    "GatewayHit",
    "InvalidRoute",
    "NoRoute",
    "NoRouteCause",
    "OutboundRoutes",
    "RequestHead",
    "RouteHit",
    "WeightedPicker",
    "query_params",
    "rewrite_prefix",
    "split_authority",
]
