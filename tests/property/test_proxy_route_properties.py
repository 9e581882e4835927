"""Invariants of route matching over random route tables and requests.

1. Agreement: the compiled table routes every request to the same route as a slow matcher
   written straight from the semantics (Envoy's, as App Mesh ran it) — the first route in
   order whose every condition holds, else no route. The same holds for gateway routes, and
   for each header condition alone over arbitrary values (range edges included).
2. Weights: a picker never returns a target of weight 0, and every draw lands on the target
   that owns that share of [0, 1) — so picks follow weight / total exactly.
3. Rewrites: a gateway prefix rewrite keeps the query and the rest of the path, and never
   leaves ``//`` at the seam when the replacement ends with ``/``.

Values come from small alphabets that overlap on purpose, so generated conditions often
hold and often fail by one character.
"""

from __future__ import annotations

import math
import re
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from mapmesh.model.snapshot import (
    GatewayRoute,
    HeaderMatch,
    HostnameMatch,
    PathMatch,
    QueryMatch,
    Rewrite,
    RouteMatch,
    WeightedCluster,
)
from mapmesh.proxy.route import (
    CompiledGatewayRoutes,
    CompiledRouteTable,
    GatewayHit,
    NoRoute,
    RequestHead,
    RouteHit,
    WeightedPicker,
    rewrite_prefix,
)
from tests.unit.test_proxy_route import route, table

SEGMENTS = ("a", "b", "ab", "api", "v1", "")
PATHS = ("/", "/a", "/a/", "/a/b", "/ab", "/api/v1", "/api/v1/x", "/api/v2", "/b/", "/b/b", "/ba")
PATH_PREFIXES = ("/", "/a", "/a/", "/ab", "/api/v1", "/b/")
PATH_REGEXES = ("/a/.*", "/[ab]+", "/.*", "/api/v[0-9]", "/(a|b)/b?")
HEADER_NAMES = ("x-a", "x-b")
HEADER_VALUES = ("1", "10", "ab", "abc", "a", "-3", " 7 ", "+7", "a,b", "", "99999999999999999999")
MATCH_VALUES = ("1", "a", "ab", "abc", "", "b", "0")
VALUE_REGEXES = ("a.*", "[0-9]+", "1|10", ".*", "b")
QUERY_NAMES = ("x", "y")
QUERY_VALUES = ("1", "2", "")
HOSTS = ("worker.corp", "api.worker.corp", "other.io", "corp")
HOSTNAME_VALUES = ("worker.corp", "corp", ".corp", "other.io")
T = TypeVar("T")

# -- the reference: obviously correct, slow ----------------------------------------------


def reference_query(target: str) -> dict[str, str]:
    before_fragment = target.split("#", 1)[0]
    query = before_fragment.split("?", 1)[1] if "?" in before_fragment else ""
    params: dict[str, str] = {}
    for part in query.split("&"):
        if part == "":
            continue
        name = part.split("=", 1)[0]
        value = part.split("=", 1)[1] if "=" in part else ""
        if name not in params:
            params[name] = value
    return params


def reference_range(value: str, start: int, end: int) -> bool:
    text = value.strip(" \t\n\v\f\r")
    if re.fullmatch(r"[+-]?[0-9]+", text, re.ASCII) is None:
        return False
    number = int(text)
    return -(2**63) <= number < 2**63 and start <= number < end


def reference_header(condition: HeaderMatch, headers: dict[str, str]) -> bool:
    if condition.name not in headers:
        return condition.kind == "present" and condition.invert
    value = headers[condition.name]
    if condition.kind == "present":
        holds = True
    elif condition.kind == "exact":
        holds = value == condition.value
    elif condition.kind == "prefix":
        holds = value.startswith(condition.value or "")
    elif condition.kind == "suffix":
        holds = value.endswith(condition.value or "")
    elif condition.kind == "regex":
        holds = re.fullmatch(condition.value or "", value) is not None
    else:
        holds = reference_range(value, condition.range_start or 0, condition.range_end or 0)
    return holds != condition.invert


def reference_matches(match: RouteMatch, request: RequestHead) -> bool:
    path = re.split(r"[?#]", request.path, maxsplit=1)[0]
    if match.path.kind == "prefix" and not path.startswith(match.path.value):
        return False
    if match.path.kind == "exact" and path != match.path.value:
        return False
    if match.path.kind == "regex" and re.fullmatch(match.path.value, path) is None:
        return False
    if match.method is not None and match.method != request.method:
        return False
    if match.scheme is not None and match.scheme != request.scheme:
        return False
    if match.port is not None and match.port != request.port:
        return False
    if match.hostname is not None:
        if match.hostname.kind == "exact" and request.host != match.hostname.value:
            return False
        if match.hostname.kind == "suffix" and not request.host.endswith(match.hostname.value):
            return False
    headers = dict(request.headers)
    if not all(reference_header(h, headers) for h in match.headers):
        return False
    params = reference_query(request.path)
    for q in match.query:
        if q.name not in params:
            return False
        if q.exact is not None and params[q.name] != q.exact:
            return False
    return True


def reference_first(matches: list[RouteMatch], request: RequestHead) -> int | None:
    for index, match in enumerate(matches):
        if reference_matches(match, request):
            return index
    return None


# -- generators ----------------------------------------------------------------------------


@st.composite
def path_matches(draw: st.DrawFn) -> PathMatch:
    kind = draw(st.sampled_from(("prefix", "prefix", "exact", "regex")))
    if kind == "prefix":
        return PathMatch(kind="prefix", value=draw(st.sampled_from(PATH_PREFIXES)))
    if kind == "exact":
        return PathMatch(kind="exact", value=draw(paths()))
    return PathMatch(kind="regex", value=draw(st.sampled_from(PATH_REGEXES)))


@st.composite
def header_matches(draw: st.DrawFn) -> HeaderMatch:
    name = draw(st.sampled_from(HEADER_NAMES))
    invert = draw(st.booleans())
    kind = draw(st.sampled_from(("exact", "prefix", "suffix", "regex", "range", "present")))
    if kind == "present":
        return HeaderMatch(name=name, kind="present", invert=invert)
    if kind == "range":
        # bounds on and next to the integers the requests send, so both edges get tested
        start = draw(st.sampled_from((-5, -3, 1, 2, 7, 10)))
        end = draw(st.sampled_from((-3, 1, 7, 8, 10, 11, 2**70)))
        return HeaderMatch(name=name, kind="range", range_start=start, range_end=end, invert=invert)
    values = VALUE_REGEXES if kind == "regex" else MATCH_VALUES
    return HeaderMatch(name=name, kind=kind, value=draw(st.sampled_from(values)), invert=invert)


@st.composite
def route_matches(draw: st.DrawFn, gateway: bool = False) -> RouteMatch:
    hostname = None
    if gateway:
        hostname = draw(
            st.none()
            | st.builds(
                HostnameMatch,
                kind=st.sampled_from(("exact", "suffix")),
                value=st.sampled_from(HOSTNAME_VALUES),
            )
        )
    return RouteMatch(
        path=draw(path_matches()),
        method=draw(rarely(("GET", "POST"))),
        scheme=None if gateway else draw(rarely(("http", "https"))),
        headers=tuple(draw(st.lists(header_matches(), max_size=draw(st.sampled_from((0, 1, 2)))))),
        query=tuple(
            draw(
                st.lists(
                    st.builds(
                        QueryMatch,
                        name=st.sampled_from(QUERY_NAMES),
                        exact=st.none() | st.sampled_from(QUERY_VALUES),
                    ),
                    max_size=draw(st.sampled_from((0, 0, 1, 2))),
                )
            )
        ),
        port=draw(rarely((8080, 9090))),
        hostname=hostname,
    )


def rarely(values: tuple[T, ...]) -> st.SearchStrategy[T | None]:
    """None two times in three: most routes set few conditions, so many requests match."""
    return st.sampled_from((None, None, None, None, *values))


def paths() -> st.SearchStrategy[str]:
    """Paths near the generated prefixes and regexes, and arbitrary ones."""
    built = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map(
        lambda segments: "/" + "/".join(segments)
    )
    return st.sampled_from(PATHS) | built


@st.composite
def targets(draw: st.DrawFn) -> str:
    path = draw(paths())
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(QUERY_NAMES), st.sampled_from(QUERY_VALUES), st.booleans()),
            min_size=draw(st.sampled_from((0, 1, 1, 2))),
            max_size=3,
        )
    )
    bare_question_mark = draw(st.booleans())
    if pairs or bare_question_mark:
        path += "?" + "&".join(name + (f"={value}" if eq else "") for name, value, eq in pairs)
    if draw(st.integers(0, 9)) == 0:
        path += "#" + draw(st.sampled_from(("x", "?x=1")))
    return path


@st.composite
def requests(draw: st.DrawFn) -> RequestHead:
    headers = {
        name: draw(st.sampled_from(HEADER_VALUES))
        for name in HEADER_NAMES
        if draw(st.integers(0, 3)) > 0  # each header is there three times in four
    }
    return RequestHead(
        draw(st.sampled_from(("GET", "POST"))),
        draw(targets()),
        draw(st.sampled_from(HOSTS)),
        draw(st.sampled_from((8080, 9090))),
        draw(st.sampled_from(("http", "https"))),
        headers,
    )


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.lists(route_matches(), max_size=6), st.lists(requests(), min_size=1, max_size=8))
def test_compiled_table_agrees_with_the_reference(
    matches: list[RouteMatch], heads: list[RequestHead]
) -> None:
    compiled = CompiledRouteTable.from_table(
        table(*(route(f"r{i}", match) for i, match in enumerate(matches)))
    )
    for request in heads:
        outcome = compiled.match(request)
        expected = reference_first(matches, request)
        if expected is None:
            assert isinstance(outcome, NoRoute), (request, outcome)
        else:
            assert isinstance(outcome, RouteHit), (request, expected)
            assert outcome.index == expected, (request, outcome.index, expected)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(route_matches(gateway=True), max_size=5), st.lists(requests(), min_size=1, max_size=8)
)
def test_compiled_gateway_routes_agree_with_the_reference(
    matches: list[RouteMatch], heads: list[RequestHead]
) -> None:
    compiled = CompiledGatewayRoutes.from_snapshot(
        GatewayRoute(
            name=f"g{i}",
            priority=None,
            protocol="http",
            match=match,
            rewrite=Rewrite(hostname="worker.corp", prefix=None, path=None),
            virtual_service="worker.corp",
            port=None,
        )
        for i, match in enumerate(matches)
    )
    for request in heads:
        outcome = compiled.match(request)
        expected = reference_first(matches, request)
        if expected is None:
            assert isinstance(outcome, NoRoute)
        else:
            assert isinstance(outcome, GatewayHit) and outcome.index == expected


header_values = (
    st.sampled_from(HEADER_VALUES)
    | st.integers(-6, 12).map(str)
    | st.integers().map(lambda n: f" {n:+d}")
    | st.text(max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(header_matches(), st.none() | header_values)
def test_each_header_condition_agrees_with_the_reference(
    condition: HeaderMatch, value: str | None
) -> None:
    headers = {} if value is None else {condition.name: value}
    request = RequestHead("GET", "/", "worker.corp", 8080, "http", headers)
    compiled = CompiledRouteTable.from_table(table(route("r", RouteMatch(headers=(condition,)))))
    routed = isinstance(compiled.match(request), RouteHit)
    assert routed is reference_header(condition, headers)


weights = st.lists(st.integers(0, 100), min_size=1, max_size=10)


def _picker(ws: list[int]) -> WeightedPicker:
    return WeightedPicker(
        [WeightedCluster(cluster=f"c{i}", weight=w, port=8080) for i, w in enumerate(ws)]
    )


@given(weights, st.floats(0.0, 1.0, exclude_max=True))
def test_weight_zero_targets_are_never_picked(ws: list[int], u: float) -> None:
    picked = _picker(ws).pick(u)
    if sum(ws) == 0:
        assert picked is None
    else:
        assert picked is not None and picked.weight > 0
    assert _picker(ws).pick(math.nextafter(1.0, 0.0)) in (None, *_picker(ws).targets[-1:])


@given(weights.filter(lambda ws: 0 < sum(ws) <= 300))
def test_each_share_of_the_draws_goes_to_its_owner(ws: list[int]) -> None:
    picker = _picker(ws)
    owners = [f"c{i}" for i, w in enumerate(ws) for _ in range(w)]  # one slot per unit of weight
    total = len(owners)
    for slot, owner in enumerate(owners):
        picked = picker.pick((slot + 0.5) / total)
        assert picked is not None and picked.cluster == owner


@given(
    st.sampled_from(PATH_PREFIXES),
    st.sampled_from(("/", "/v2/", "/v2", "")),
    st.lists(st.sampled_from(SEGMENTS), max_size=3),
    st.sampled_from(("", "?x=1", "?a=/b", "#f")),
)
def test_prefix_rewrite_keeps_the_rest(
    matched: str, replacement: str, rest_segments: list[str], query: str
) -> None:
    path = matched + "/".join(rest_segments)
    rest = path[len(matched) :]
    rewritten = rewrite_prefix(path, len(matched), replacement)
    assert rewritten.startswith("/") and rewritten.startswith(replacement)
    assert rewritten.endswith(rest.lstrip("/"))
    if replacement.endswith("/") and not rest.startswith("//"):
        assert "//" not in rewritten[len(replacement) - 1 : len(replacement) + 1]
    gateway = CompiledGatewayRoutes.from_snapshot(
        [
            GatewayRoute(
                name="g",
                priority=None,
                protocol="http",
                match=RouteMatch(path=PathMatch(kind="prefix", value=matched)),
                rewrite=Rewrite(hostname=None, prefix=replacement, path=None),
                virtual_service="worker.corp",
                port=None,
            )
        ]
    )
    request = RequestHead("GET", path + query, "gw.io", 8080)
    hit = gateway.match(request)
    assert isinstance(hit, GatewayHit)
    assert hit.rewrite(request) == (rewritten + query, None)
