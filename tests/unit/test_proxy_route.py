"""Route matching for the sidecar and the gateway (``mapmesh.proxy.route``), no I/O.

One section per concern, in request order: the request view, path/method/scheme/port
conditions, header conditions (with Envoy's edges: inverted matches and missing headers,
``range`` as [start, end)), query parameters, route order and the "no route" answers,
weighted target choice, the sidecar's lookup by host, and the gateway's match and rewrite.
The small builders (:func:`route`, :func:`table`, :func:`head`...) are shared with the
property tests.
"""

from __future__ import annotations

import doctest
import math
import random
from collections import Counter
from typing import Any

import pytest

from mapmesh.model.snapshot import (
    GatewayRoute,
    HeaderMatch,
    HostnameMatch,
    PathMatch,
    Provider,
    QueryMatch,
    Rewrite,
    Route,
    RouteMatch,
    RouteTable,
    Timeouts,
    WeightedCluster,
)
from mapmesh.proxy import route as route_module
from mapmesh.proxy import routing
from mapmesh.proxy.route import (
    CompiledGatewayRoutes,
    CompiledRouteTable,
    GatewayHit,
    InvalidRoute,
    NoRoute,
    OutboundRoutes,
    RequestHead,
    RouteHit,
    WeightedPicker,
    query_params,
    rewrite_prefix,
    split_authority,
)

TIMEOUT = Timeouts(request_ms=15000, idle_ms=300000)
V1 = "demo/worker-v1:8080"
V2 = "demo/worker-v2:8080"


# -- builders ----------------------------------------------------------------------------


def target(cluster: str = V1, weight: int = 1) -> WeightedCluster:
    return WeightedCluster(cluster=cluster, weight=weight, port=8080)


def route(name: str, match: RouteMatch | None = None, *targets: WeightedCluster) -> Route:
    return Route(
        name=name,
        priority=None,
        protocol="http",
        match=match if match is not None else RouteMatch(),
        targets=targets or (target(),),
        retry=None,
        timeout=TIMEOUT,
    )


def table(*routes: Route, service: str = "worker.corp") -> RouteTable:
    return RouteTable(
        virtual_service=service,
        ports=(8080,),
        provider=Provider(kind="virtualRouter", name="worker-router"),
        routes=routes,
        client_tls=None,
        client_policy_from="none",
    )


def head(
    path: str = "/",
    *,
    method: str = "GET",
    host: str = "worker.corp",
    port: int = 8080,
    scheme: str = "http",
    **headers: str,
) -> RequestHead:
    """A request; keyword arguments are headers, ``x_canary`` meaning ``x-canary``."""
    return RequestHead(
        method, path, host, port, scheme, {k.replace("_", "-"): v for k, v in headers.items()}
    )


def matches(match: RouteMatch, request: RequestHead) -> bool:
    """Whether a one-route table routes ``request``."""
    return isinstance(
        CompiledRouteTable.from_table(table(route("r", match))).match(request), RouteHit
    )


def prefix(value: str) -> PathMatch:
    return PathMatch(kind="prefix", value=value)


def header(name: str, kind: Any, value: str | None = None, **more: Any) -> RouteMatch:
    return RouteMatch(headers=(HeaderMatch(name=name, kind=kind, value=value, **more),))


# -- the request view --------------------------------------------------------------------


@pytest.mark.parametrize("module", [routing, routing.weighted])
def test_the_docstring_examples_run(module: Any) -> None:
    assert doctest.testmod(module).failed == 0


def test_the_route_module_is_the_routing_package_surface() -> None:
    assert route_module.__all__ == routing.__all__
    for name in routing.__all__:
        assert getattr(route_module, name) is getattr(routing, name)


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("worker.corp", ("worker.corp", 80)),
        ("Worker.CORP", ("worker.corp", 80)),
        ("worker.corp:8080", ("worker.corp", 8080)),
        ("WORKER.corp:8080 ", ("worker.corp", 8080)),
        ("worker.corp:", ("worker.corp", 80)),
        ("[::1]:8080", ("[::1]", 8080)),
        ("[::1]", ("[::1]", 80)),
        ("::1", ("::1", 80)),
        ("worker.corp:http", ("worker.corp:http", 80)),
        ("worker.corp:99999", ("worker.corp:99999", 80)),
    ],
)
def test_split_authority(authority: str, expected: tuple[str, int]) -> None:
    assert split_authority(authority, 80) == expected


def test_query_params_are_raw_and_the_first_occurrence_wins() -> None:
    assert query_params("/p?a=1&b&c=&a=2&&d=x%20y#frag") == {
        "a": "1",
        "b": "",
        "c": "",
        "d": "x%20y",
    }
    assert query_params("/p") == {}
    assert query_params("/p?") == {}


def test_query_is_parsed_once_per_request() -> None:
    request = head("/p?a=1")
    assert request.query_params() is request.query_params()


# -- path, method, scheme, port ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "expected"),
    [
        ("/", "/", True),
        ("/", "/anything/at/all?q=1", True),
        ("/api", "/api", True),
        ("/api", "/api/users", True),
        ("/api", "/apis", True),  # a string prefix, as in Envoy: not segment-aware
        ("/api/", "/api", False),
        ("/api", "/ap", False),
        ("/api", "/API/users", False),  # case-sensitive
        ("/api", "/v1/api", False),
        ("/api?x", "/api?x=1", False),  # the query is never part of the path
    ],
)
def test_prefix(value: str, path: str, expected: bool) -> None:
    assert matches(RouteMatch(path=prefix(value)), head(path)) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/users", True),
        ("/users?id=1", True),
        ("/users#top", True),
        ("/users/", False),
        ("/users/1", False),
        ("/Users", False),
        ("/us%65rs", False),  # no percent-decoding
    ],
)
def test_exact_path(path: str, expected: bool) -> None:
    assert matches(RouteMatch(path=PathMatch(kind="exact", value="/users")), head(path)) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/users/12", True),
        ("/users/12?full=1", True),
        ("/users/12/orders", False),  # a full match, not a search
        ("/v1/users/12", False),
        ("/users/", False),
    ],
)
def test_regex_path_is_a_full_match_without_the_query(path: str, expected: bool) -> None:
    match = RouteMatch(path=PathMatch(kind="regex", value=r"/users/[0-9]+"))
    assert matches(match, head(path)) is expected


def test_method_scheme_and_port() -> None:
    assert matches(RouteMatch(method="POST"), head(method="POST"))
    assert not matches(RouteMatch(method="POST"), head(method="GET"))
    assert matches(RouteMatch(scheme="https"), head(scheme="https"))
    assert matches(RouteMatch(scheme="HTTPS"), head(scheme="https"))
    assert not matches(RouteMatch(scheme="https"), head(scheme="http"))
    assert matches(RouteMatch(port=9090), head(port=9090))
    assert not matches(RouteMatch(port=9090), head(port=8080))


def test_every_condition_must_hold() -> None:
    match = RouteMatch(
        path=prefix("/api/"),
        method="GET",
        port=8080,
        headers=(HeaderMatch(name="x-canary", kind="exact", value="1"),),
        query=(QueryMatch(name="debug"),),
    )
    assert matches(match, head("/api/x?debug", x_canary="1"))
    assert not matches(match, head("/api/x?debug", x_canary="1", method="PUT"))
    assert not matches(match, head("/api/x", x_canary="1"))
    assert not matches(match, head("/api/x?debug", x_canary="0"))
    assert not matches(match, head("/web/x?debug", x_canary="1"))
    assert not matches(match, head("/api/x?debug", x_canary="1", port=9090))


# -- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "sent", "expected"),
    [
        ("exact", "beta", "beta", True),
        ("exact", "beta", "Beta", False),
        ("exact", "beta", "beta2", False),
        ("exact", "", "", True),
        ("prefix", "be", "beta", True),
        ("prefix", "ta", "beta", False),
        ("suffix", "ta", "beta", True),
        ("suffix", "be", "beta", False),
        ("regex", "b.t.", "beta", True),
        ("regex", "bet", "beta", False),  # full match
        ("regex", "a", "beta", False),
        ("present", None, "", True),
        ("present", None, "anything", True),
    ],
)
def test_header_kinds(kind: str, value: str | None, sent: str, expected: bool) -> None:
    match = header("x-version", kind, value)
    assert matches(match, head(x_version=sent)) is expected
    # invert negates a header that is there
    inverted = header("x-version", kind, value, invert=True)
    assert matches(inverted, head(x_version=sent)) is (not expected)


@pytest.mark.parametrize("kind", ["exact", "prefix", "suffix", "regex", "range"])
@pytest.mark.parametrize("invert", [False, True])
def test_a_missing_header_fails_value_conditions_inverted_or_not(kind: str, invert: bool) -> None:
    # Envoy's HeaderUtility::matchHeaders: a missing header only satisfies inverted `present`.
    if kind == "range":
        match = header("x-version", "range", range_start=0, range_end=10, invert=invert)
    else:
        match = header("x-version", kind, "beta", invert=invert)
    assert not matches(match, head(other="beta"))


def test_present_on_a_missing_header() -> None:
    assert not matches(header("x-debug", "present"), head())
    assert matches(header("x-debug", "present", invert=True), head())


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("10", True),  # start is inside
        ("19", True),
        ("20", False),  # end is outside: [start, end)
        ("9", False),
        ("+15", True),
        (" 15 ", True),
        ("\t15", True),
        ("015", True),
        ("15.0", False),
        ("1_5", False),
        ("", False),
        ("fifteen", False),
        ("\u0661\u0665", False),  # only ASCII digits (Arabic-Indic 15)
        ("15,16", False),  # two header lines joined: not an integer
    ],
)
def test_range_is_start_inclusive_end_exclusive(sent: str, expected: bool) -> None:
    match = header("x-minor", "range", range_start=10, range_end=20)
    assert matches(match, head(x_minor=sent)) is expected
    inverted = header("x-minor", "range", range_start=10, range_end=20, invert=True)
    assert matches(inverted, head(x_minor=sent)) is (not expected)


def test_range_with_negative_bounds_and_int64_limits() -> None:
    assert matches(header("x-n", "range", range_start=-5, range_end=0), head(x_n="-5"))
    assert not matches(header("x-n", "range", range_start=-5, range_end=0), head(x_n="0"))
    wide = header("x-n", "range", range_start=-(2**70), range_end=2**70)
    assert matches(wide, head(x_n=str(2**63 - 1)))
    assert not matches(wide, head(x_n=str(2**63)))  # not an int64 in Envoy
    assert matches(wide, head(x_n=str(-(2**63))))
    assert not matches(wide, head(x_n=str(-(2**63) - 1)))


def test_header_names_compare_in_lower_case_and_values_as_joined() -> None:
    assert matches(header("X-Canary", "exact", "1"), head(x_canary="1"))
    assert matches(header("accept", "exact", "a,b"), head(accept="a,b"))


def test_several_header_conditions_all_hold() -> None:
    match = RouteMatch(
        headers=(
            HeaderMatch(name="x-a", kind="exact", value="1"),
            HeaderMatch(name="x-b", kind="prefix", value="v"),
            HeaderMatch(name="x-c", kind="present", invert=True),
        )
    )
    assert matches(match, head(x_a="1", x_b="v2"))
    assert not matches(match, head(x_a="1", x_b="v2", x_c=""))
    assert not matches(match, head(x_a="1"))


# -- query parameters --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "path", "expected"),
    [
        (QueryMatch(name="debug"), "/?debug", True),
        (QueryMatch(name="debug"), "/?debug=0", True),
        (QueryMatch(name="debug"), "/?debugger=1", False),
        (QueryMatch(name="debug"), "/", False),
        (QueryMatch(name="v", exact="2"), "/?v=2", True),
        (QueryMatch(name="v", exact="2"), "/?a=1&v=2", True),
        (QueryMatch(name="v", exact="2"), "/?v=1&v=2", False),  # the first occurrence wins
        (QueryMatch(name="v", exact="2"), "/?v=20", False),
        (QueryMatch(name="v", exact="a b"), "/?v=a%20b", False),  # raw, not decoded
        (QueryMatch(name="v", exact=""), "/?v", True),
        (QueryMatch(name="v", exact="2"), "/#?v=2", False),
    ],
)
def test_query_parameters(query: QueryMatch, path: str, expected: bool) -> None:
    assert matches(RouteMatch(query=(query,)), head(path)) is expected


# -- order and the "no route" answers ----------------------------------------------------


def test_the_first_route_in_snapshot_order_wins() -> None:
    compiled = CompiledRouteTable.from_table(
        table(
            route(
                "canary", RouteMatch(path=prefix("/api/"), headers=header("x-c", "present").headers)
            ),
            route("api", RouteMatch(path=prefix("/api/"))),
            route("api-users", RouteMatch(path=prefix("/api/users"))),  # shadowed by "api"
            route("rest", RouteMatch()),
        )
    )
    requests = (head("/api/users", x_c="1"), head("/api/users"), head("/web"))
    names = [_route_name(compiled.match(request)) for request in requests]
    assert names == ["canary", "api", "rest"]
    assert [hit.route.name for hit in compiled.hits] == ["canary", "api", "api-users", "rest"]


def _route_name(outcome: RouteHit | NoRoute) -> str:
    assert isinstance(outcome, RouteHit), outcome
    return outcome.route.name


def test_hits_are_built_once() -> None:
    compiled = CompiledRouteTable.from_table(table(route("all")))
    first, second = compiled.match(head("/a")), compiled.match(head("/b?x=1"))
    assert first is second
    assert isinstance(first, RouteHit)
    assert (first.virtual_service, first.index) == ("worker.corp", 0)


def test_no_route_matched_is_a_404_with_flag_nr() -> None:
    compiled = CompiledRouteTable.from_table(table(route("api", RouteMatch(path=prefix("/api")))))
    outcome = compiled.match(head("/web"))
    assert isinstance(outcome, NoRoute)
    assert (outcome.cause, outcome.status, outcome.flag) == ("route_not_matched", 404, "NR")
    assert "worker.corp" in outcome.reason
    assert not outcome.egress_allowed


def test_an_empty_table_answers_404_saying_why() -> None:
    outcome = CompiledRouteTable.from_table(table()).match(head())
    assert isinstance(outcome, NoRoute)
    assert outcome.cause == "empty_table"
    assert outcome.reason.startswith("worker.corp has no routes")


def test_a_route_that_cannot_compile_names_its_field() -> None:
    bad_regex = route("r", header("x-a", "regex", "("))
    with pytest.raises(InvalidRoute, match=r"routes\[1\]\.match\.headers\[0\]\.value: invalid"):
        CompiledRouteTable.from_table(table(route("ok"), bad_regex))
    bad_path = route("r", RouteMatch(path=PathMatch(kind="regex", value="[")))
    with pytest.raises(InvalidRoute, match=r"routes\[0\]\.match\.path\.value"):
        CompiledRouteTable.from_table(table(bad_path))
    no_bounds = route("r", header("x-a", "range", range_start=1))
    with pytest.raises(InvalidRoute, match=r"headers\[0\]: a range needs"):
        CompiledRouteTable.from_table(table(no_bounds))
    no_value = route("r", header("x-a", "suffix"))
    with pytest.raises(InvalidRoute, match=r"headers\[0\]\.value: required"):
        CompiledRouteTable.from_table(table(no_value))


# -- weighted targets --------------------------------------------------------------------


def _picks(picker: WeightedPicker, n: int, seed: int = 1) -> Counter[str]:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    for _ in range(n):
        chosen = picker.choose(rng)
        assert chosen is not None
        counts[chosen.cluster] += 1
    return counts


@pytest.mark.parametrize(
    "weights",
    [
        {"a": 90, "b": 10},
        {"a": 50, "b": 30, "c": 20},
        {"a": 1, "b": 1, "c": 1, "d": 1},
        {"a": 99, "b": 1},
    ],
)
def test_weighted_picks_follow_the_weights(weights: dict[str, int]) -> None:
    n = 10_000
    picker = WeightedPicker([target(c, w) for c, w in weights.items()])
    counts = _picks(picker, n)
    total = sum(weights.values())
    for cluster, weight in weights.items():
        p = weight / total
        tolerance = 5 * math.sqrt(n * p * (1 - p))  # five standard deviations
        assert abs(counts[cluster] - n * p) <= tolerance, (cluster, counts)


def test_weight_zero_targets_are_never_picked() -> None:
    picker = WeightedPicker(
        [target("zero-a", 0), target("a", 3), target("zero-b", 0), target("b", 1)]
    )
    assert {t.cluster for t in picker.targets} == {"a", "b"}
    assert set(_picks(picker, 2_000)) == {"a", "b"}
    assert picker.share("zero-a") == 0.0
    assert picker.share("a") == 0.75


def test_pick_boundaries() -> None:
    picker = WeightedPicker([target("a", 1), target("b", 1), target("c", 2)])
    assert [picker.pick(u).cluster for u in (0.0, 0.2499, 0.25, 0.4999, 0.5)] == list("aabbc")  # type: ignore[union-attr]
    last = picker.pick(math.nextafter(1.0, 0.0))
    assert last is not None and last.cluster == "c"


def test_a_single_target_needs_no_draw_and_no_positive_weight_picks_nothing() -> None:
    only = WeightedPicker([target("a", 0), target("b", 5)])

    class NoDraws(random.Random):
        def random(self) -> float:
            raise AssertionError("drew a number")

    picked = only.choose(NoDraws())
    assert picked is not None and picked.cluster == "b"
    nothing = WeightedPicker([target("a", 0)])
    assert nothing.pick(0.5) is None
    assert nothing.choose(random.Random(1)) is None
    assert WeightedPicker([]).pick(0.0) is None


def test_picks_are_reproducible_from_a_seed() -> None:
    picker = WeightedPicker([target("a", 1), target("b", 1), target("c", 1)])
    assert _picks(picker, 500, seed=42) == _picks(picker, 500, seed=42)


def test_a_hit_carries_the_routes_picker() -> None:
    compiled = CompiledRouteTable.from_table(
        table(route("split", None, target(V1, 90), target(V2, 10)))
    )
    hit = compiled.match(head())
    assert isinstance(hit, RouteHit)
    assert [t.cluster for t in hit.picker.targets] == [V1, V2]
    assert hit.picker.total == 100


# -- the sidecar's outbound lookup --------------------------------------------------------


def outbound(egress: Any = "DROP_ALL") -> OutboundRoutes:
    return OutboundRoutes.from_snapshot(
        [
            table(route("worker-route"), service="worker.corp"),
            table(route("billing-route"), service="Billing.Corp"),
            table(service="missing.corp"),
        ],
        egress_filter=egress,
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("worker.corp", "worker-route"),
        ("billing.corp", "billing-route"),
        ("WORKER.corp", "worker-route"),  # a caller that did not lower-case
        ("worker.corp:8080", "worker-route"),  # or did not strip the port
        ("Billing.Corp:80", "billing-route"),
    ],
)
def test_outbound_finds_the_table_by_host(host: str, expected: str) -> None:
    assert _route_name(outbound().match(head(host=host))) == expected


def test_outbound_table_lookup_by_authority() -> None:
    routes = outbound()
    for authority in ("worker.corp", "Worker.Corp:8080", "worker.corp:"):
        found = routes.table(authority)
        assert found is not None and found.virtual_service == "worker.corp"
    assert routes.table("worker.corp.example") is None
    assert "worker.corp:8080" in routes
    assert "nope.corp" not in routes
    assert len(routes) == 3
    assert routes.virtual_services == ("worker.corp", "billing.corp", "missing.corp")


def test_an_undeclared_host_is_not_routed_unless_egress_allows_it() -> None:
    dropped = outbound().match(head(host="example.com"))
    assert isinstance(dropped, NoRoute)
    assert dropped.cause == "unknown_host"
    assert dropped.reason == "example.com is not a declared backend"
    assert not dropped.egress_allowed
    allowed = outbound("ALLOW_ALL").match(head(host="example.com"))
    assert isinstance(allowed, NoRoute)
    assert allowed.cause == "unknown_host" and allowed.egress_allowed
    assert outbound("ALLOW_ALL").egress_allowed and not outbound().egress_allowed
    no_host = outbound().match(head(host=""))
    assert isinstance(no_host, NoRoute) and no_host.reason == "(no host) is not a declared backend"


def test_a_declared_host_without_a_matching_route_is_404_even_with_allow_all() -> None:
    outcome = outbound("ALLOW_ALL").match(head(host="missing.corp"))
    assert isinstance(outcome, NoRoute)
    assert outcome.cause == "empty_table" and not outcome.egress_allowed


def test_a_host_declared_twice_is_rejected() -> None:
    with pytest.raises(InvalidRoute, match="declared twice"):
        OutboundRoutes.from_snapshot([table(service="a.corp"), table(service="A.corp")])


# -- the gateway --------------------------------------------------------------------------


def gateway_route(
    name: str,
    match: RouteMatch | None = None,
    *,
    service: str = "worker.corp",
    hostname: str | None = "worker.corp",
    prefix_to: str | None = None,
    path_to: str | None = None,
    port: int | None = None,
) -> GatewayRoute:
    return GatewayRoute(
        name=name,
        priority=None,
        protocol="http",
        match=match if match is not None else RouteMatch(),
        rewrite=Rewrite(hostname=hostname, prefix=prefix_to, path=path_to),
        virtual_service=service,
        port=port,
    )


def gateway_hit(route_: GatewayRoute, request: RequestHead) -> GatewayHit:
    outcome = CompiledGatewayRoutes.from_snapshot([route_]).match(request)
    assert isinstance(outcome, GatewayHit), outcome
    return outcome


@pytest.mark.parametrize(
    ("hostname", "host", "expected"),
    [
        (HostnameMatch(kind="exact", value="www.example.com"), "www.example.com", True),
        (HostnameMatch(kind="exact", value="www.example.com"), "api.example.com", False),
        (HostnameMatch(kind="suffix", value=".example.com"), "api.example.com", True),
        (HostnameMatch(kind="suffix", value=".example.com"), "example.com", False),
        (HostnameMatch(kind="suffix", value="example.com"), "example.com", True),
        (HostnameMatch(kind="suffix", value=".example.com"), "api.example.org", False),
    ],
)
def test_gateway_hostname_match(hostname: HostnameMatch, host: str, expected: bool) -> None:
    routes = CompiledGatewayRoutes.from_snapshot(
        [gateway_route("g", RouteMatch(hostname=hostname))]
    )
    assert isinstance(routes.match(head(host=host)), GatewayHit) is expected


def test_gateway_routes_in_order_and_no_route() -> None:
    routes = CompiledGatewayRoutes.from_snapshot(
        [
            gateway_route("red", RouteMatch(path=prefix("/red"))),
            gateway_route("api", RouteMatch(path=prefix("/"), method="POST"), service="api.corp"),
        ]
    )
    red = routes.match(head("/red/1", method="POST"))
    assert isinstance(red, GatewayHit) and red.route.name == "red" and red.index == 0
    api = routes.match(head("/x", method="POST"))
    assert isinstance(api, GatewayHit) and api.virtual_service == "api.corp"
    missed = routes.match(head("/x"))
    assert isinstance(missed, NoRoute) and missed.cause == "route_not_matched"
    empty = CompiledGatewayRoutes.from_snapshot([]).match(head())
    assert isinstance(empty, NoRoute) and empty.cause == "empty_table"


@pytest.mark.parametrize(
    ("matched", "replacement", "path", "expected"),
    [
        ("/chapter", "/", "/chapter/1", "/1"),  # the default: matched prefix becomes /
        ("/chapter", "/", "/chapter", "/"),
        ("/chapter/", "/", "/chapter/1", "/1"),
        ("/chapter", "/", "/chapter?page=2", "/?page=2"),
        ("/chapter", "/", "/chapter/1?page=2#x", "/1?page=2#x"),
        ("/chapter", "/", "/chapters", "/s"),
        ("/chapter", "/book/", "/chapter/1", "/book/1"),
        ("/chapter", "/book", "/chapter/1", "/book/1"),
        ("/chapter/", "/book/", "/chapter/1", "/book/1"),
        ("/", "/v2/", "/users", "/v2/users"),
        ("/", "/", "/users", "/users"),
    ],
)
def test_gateway_prefix_rewrite(matched: str, replacement: str, path: str, expected: str) -> None:
    hit = gateway_hit(
        gateway_route("g", RouteMatch(path=prefix(matched)), prefix_to=replacement), head(path)
    )
    assert hit.rewrite(head(path)) == (expected, "worker.corp")


def test_gateway_without_path_rewrites_keeps_the_target() -> None:
    disabled = gateway_route("g", RouteMatch(path=prefix("/chapter")), prefix_to=None)
    assert gateway_hit(disabled, head("/chapter/1?a")).rewrite(head("/chapter/1?a")) == (
        "/chapter/1?a",
        "worker.corp",
    )


def test_gateway_exact_path_rewrite_keeps_the_query() -> None:
    exact = gateway_route(
        "g", RouteMatch(path=PathMatch(kind="exact", value="/old")), path_to="/new"
    )
    request = head("/old?x=1")
    assert gateway_hit(exact, request).rewrite(request) == ("/new?x=1", "worker.corp")


def test_gateway_path_rewrite_wins_over_prefix_and_prefix_needs_a_prefix_match() -> None:
    both = gateway_route("g", RouteMatch(path=prefix("/a")), prefix_to="/b/", path_to="/c")
    assert gateway_hit(both, head("/a/1")).rewrite(head("/a/1"))[0] == "/c"
    regex = gateway_route(
        "g", RouteMatch(path=PathMatch(kind="regex", value="/a/.*")), prefix_to="/"
    )
    assert gateway_hit(regex, head("/a/1")).rewrite(head("/a/1"))[0] == "/a/1"


def test_gateway_hostname_rewrite() -> None:
    default = gateway_route("g", hostname="worker.corp")
    assert gateway_hit(default, head(host="www.example.com")).rewrite(head())[1] == "worker.corp"
    kept = gateway_route("g", hostname=None)
    assert gateway_hit(kept, head(host="www.example.com")).rewrite(head())[1] is None


def test_gateway_forward_builds_the_head_for_the_target_table() -> None:
    hit = gateway_hit(
        gateway_route("g", RouteMatch(path=prefix("/worker")), prefix_to="/", port=9090),
        head("/worker/jobs?id=3", host="www.example.com", port=443, scheme="https", x_a="1"),
    )
    forwarded = hit.forward(head("/worker/jobs?id=3", host="www.example.com", port=443, x_a="1"))
    assert (forwarded.path, forwarded.host, forwarded.port) == ("/jobs?id=3", "worker.corp", 9090)
    assert forwarded.headers == {"x-a": "1"}
    kept = gateway_hit(gateway_route("k", hostname=None), head()).forward(
        head(host="gw.io", port=443)
    )
    assert (kept.host, kept.port) == ("gw.io", 443)


def test_rewrite_prefix_always_returns_an_absolute_path() -> None:
    assert rewrite_prefix("/a", 2, "") == "/"
    assert rewrite_prefix("/a/b", 3, "") == "/b"
