"""Compile one :class:`RouteMatch` into a path prefix and a predicate, once per snapshot.

:func:`compile_match` returns ``(prefix, test)``. The caller checks ``path.startswith(prefix)``
inline (``""`` for routes whose path condition is not a prefix) and then, only when the
route has any other condition, calls ``test(path, head)`` — ``path`` being the request
target without its query. Every condition becomes one small closure specialised for its
kind, so a request pays for the conditions a route sets and nothing else; regexes are
compiled here, never per request.

Semantics (App Mesh compiled to Envoy; the Envoy behaviour is the reference):

- path ``prefix``: the path starts with the value (``/`` matches every path); ``exact``: the
  path equals the value; ``regex``: Python ``re.fullmatch`` on the path (App Mesh's Envoy
  used RE2: patterns using backreferences or lookaround are Python-only). Case-sensitive,
  the query is never part of the path, nothing is percent-decoded or normalised.
- ``method`` equals the request method; ``scheme`` equals the request scheme (lower case);
  ``port`` equals ``head.port``; ``hostname`` (gateways) ``exact`` equals, ``suffix`` ends
  the request's host.
- headers, on the value of the lower-case name (several values joined with ``,``):
  ``exact`` equal, ``prefix``/``suffix`` starts/ends with, ``regex`` ``re.fullmatch``,
  ``range`` an integer ``start <= n < end`` (Envoy's ``range_match``: optional whitespace
  and sign around decimal digits, within int64; anything else is not in range), ``present``
  any value. ``invert`` negates the condition on a header that is there. A missing header
  fails every condition, inverted or not, except an inverted ``present`` — Envoy's
  ``HeaderUtility::matchHeaders``, which App Mesh ran on. (``invert: true, exact: beta``
  therefore does not match a request without the header.)
- query parameters (raw, first occurrence wins; see :func:`~.request.query_params`): equal
  to ``exact``, or merely present when ``exact`` is None.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from mapmesh.model.snapshot import HeaderMatch, HostnameMatch, QueryMatch, RouteMatch
from mapmesh.proxy.routing.request import RequestHead

__all__ = [
    "FirstMatch",
    "InvalidRoute",
    "NoRoute",
    "NoRouteCause",
    "Test",
    "compile_match",
    "int64_in_range",
]

#: A compiled condition: ``test(path_without_query, head) -> bool``.
Test = Callable[[str, RequestHead], bool]
_Value = Callable[[str], bool]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INTEGER: Final = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*", re.ASCII)


NoRouteCause = Literal["route_not_matched", "empty_table", "unknown_host"]
Hit = TypeVar("Hit")


@dataclass(frozen=True, slots=True)
class NoRoute:
    """Why a request has no route; the proxy answers ``status`` (404) naming ``reason``,
    with access-log flag ``flag`` (NR) and one counter per ``cause``:

    - ``route_not_matched``: the table has routes but none matched;
    - ``empty_table``: the virtual service, its provider or its routes are missing;
    - ``unknown_host``: the host is not a declared backend. ``egress_allowed`` is then True
      when the mesh's egress filter is ``ALLOW_ALL``: the proxy passes the request through to
      the host itself instead of answering 404.
    """

    cause: NoRouteCause
    reason: str
    egress_allowed: bool = False

    @property
    def status(self) -> int:
        return 404

    @property
    def flag(self) -> str:
        return "NR"


class FirstMatch(Generic[Hit]):
    """Ordered entries ``(prefix, test, hit)``: the first whose conditions hold wins.

    Both hits and the miss are built at compile time: a match allocates nothing but the
    path without its query.
    """

    __slots__ = ("_entries", "_miss", "always")

    def __init__(self, entries: Sequence[tuple[str, Test | None, Hit]], miss: NoRoute) -> None:
        self._entries = tuple(entries)
        self._miss = miss
        #: the hit of every origin-form path ("/..."), when the first entry is a bare prefix
        #: "/" (App Mesh's default match): callers may skip building a request view then.
        self.always: Hit | None = None
        if self._entries and self._entries[0][0] == "/" and self._entries[0][1] is None:
            self.always = self._entries[0][2]

    def match(self, head: RequestHead) -> Hit | NoRoute:
        """The first entry whose conditions ``head`` meets, else the table's :class:`NoRoute`."""
        path = head.path.partition("?")[0]
        if "#" in path:
            path = path.partition("#")[0]
        for prefix, test, hit in self._entries:
            if path.startswith(prefix) and (test is None or test(path, head)):
                return hit
        return self._miss


class InvalidRoute(ValueError):
    """A snapshot route the proxy cannot compile; the message starts with the field path
    (``routes[2].match.headers[0].value: ...``). The proxy rejects the whole snapshot."""


def int64_in_range(value: str, start: int, end: int) -> bool:
    """Envoy's header ``range_match``: ``value`` is a decimal int64 in [start, end)."""
    found = _INTEGER.fullmatch(value)
    if found is None:
        return False
    number = int(found.group(1))
    return _INT64_MIN <= number <= _INT64_MAX and start <= number < end


def compile_match(match: RouteMatch, where: str) -> tuple[str, Test | None]:
    """``(prefix, test)`` for ``match``; ``where`` names it in errors (``routes[2].match``).

    ``test`` is None when the route has no condition besides its path prefix.
    """
    tests: list[Test] = []
    if match.port is not None:
        tests.append(_equals_port(match.port))
    if match.method is not None:
        tests.append(_equals_method(match.method))
    if match.scheme is not None:
        tests.append(_equals_scheme(match.scheme.lower()))
    if match.hostname is not None:
        tests.append(_hostname(match.hostname))
    prefix = ""
    path = match.path
    if path.kind == "prefix":
        prefix = path.value
    elif path.kind == "exact":
        tests.append(_path_exact(path.value))
    else:
        tests.append(_path_regex(_regex(path.value, f"{where}.path.value")))
    for i, header in enumerate(match.headers):
        tests.append(_header(header, f"{where}.headers[{i}]"))
    tests.extend(_query(q) for q in match.query)
    return prefix, _all_of(tests)


def _all_of(tests: list[Test]) -> Test | None:
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests

        def both(path: str, head: RequestHead) -> bool:
            return first(path, head) and second(path, head)

        return both
    every = tuple(tests)

    def each(path: str, head: RequestHead) -> bool:
        for test in every:  # noqa: SIM110 - a plain loop is ~2x cheaper than all(genexpr)
            if not test(path, head):
                return False
        return True

    return each


def _regex(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise InvalidRoute(f"{where}: invalid regular expression {pattern!r}: {error}") from None


# -- request line ------------------------------------------------------------------------


def _equals_port(port: int) -> Test:
    return lambda path, head: head.port == port


def _equals_method(method: str) -> Test:
    return lambda path, head: head.method == method


def _equals_scheme(scheme: str) -> Test:
    return lambda path, head: head.scheme == scheme


def _hostname(hostname: HostnameMatch) -> Test:
    value = hostname.value.lower()
    if hostname.kind == "exact":
        return lambda path, head: head.host == value
    return lambda path, head: head.host.endswith(value)


def _path_exact(value: str) -> Test:
    return lambda path, head: path == value


def _path_regex(pattern: re.Pattern[str]) -> Test:
    fullmatch = pattern.fullmatch
    return lambda path, head: fullmatch(path) is not None


# -- headers -----------------------------------------------------------------------------


def _header(header: HeaderMatch, where: str) -> Test:
    name = header.name.lower()
    if header.kind == "present":
        if header.invert:
            return lambda path, head: name not in head.headers
        return lambda path, head: name in head.headers
    if header.kind == "exact" and not header.invert:
        exact = _required(header.value, f"{where}.value")
        return lambda path, head: head.headers.get(name) == exact
    if header.kind == "prefix" and not header.invert:
        prefix = _required(header.value, f"{where}.value")

        def starts(path: str, head: RequestHead) -> bool:
            value = head.headers.get(name)
            return value is not None and value.startswith(prefix)

        return starts
    holds = _value_condition(header, where)
    if header.invert:

        def inverted(path: str, head: RequestHead) -> bool:
            value = head.headers.get(name)
            return value is not None and not holds(value)

        return inverted

    def condition(path: str, head: RequestHead) -> bool:
        value = head.headers.get(name)
        return value is not None and holds(value)

    return condition


def _value_condition(header: HeaderMatch, where: str) -> _Value:
    if header.kind == "range":
        if header.range_start is None or header.range_end is None:
            raise InvalidRoute(f"{where}: a range needs range_start and range_end")
        start, end = header.range_start, header.range_end
        return lambda value: int64_in_range(value, start, end)
    wanted = _required(header.value, f"{where}.value")
    if header.kind == "exact":
        return lambda value: value == wanted
    if header.kind == "prefix":
        return lambda value: value.startswith(wanted)
    if header.kind == "suffix":
        return lambda value: value.endswith(wanted)
    fullmatch = _regex(wanted, f"{where}.value").fullmatch
    return lambda value: fullmatch(value) is not None


def _required(value: str | None, where: str) -> str:
    if value is None:
        raise InvalidRoute(f"{where}: required for this kind of header match")
    return value


# -- query -------------------------------------------------------------------------------


def _query(query: QueryMatch) -> Test:
    name, exact = query.name, query.exact
    if exact is None:
        return lambda path, head: name in head.query_params()
    return lambda path, head: head.query_params().get(name) == exact
