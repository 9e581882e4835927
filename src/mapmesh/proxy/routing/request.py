"""The request view route matching reads: :class:`RequestHead`, built once per request.

The codec builds it from the request line and headers; nothing here parses HTTP. What the
caller must supply, exactly:

- ``method``: the request method as received (``GET``; methods are case-sensitive).
- ``path``: the request target in origin form, query included (``/users/7?full=1``). A proxy
  request in absolute form (``GET http://worker.corp/users/7``) must be reduced to its path
  first. Any other target (``*``) is matched as it is, so prefix routes never match it.
- ``host``: the ``Host`` header (HTTP/2: ``:authority``) lower-cased and without its port
  (:func:`split_authority` does both), or, on a local per-backend port, that backend's
  virtual service name.
- ``port``: the port the request is addressed to, compared with a route's ``port``
  condition: a gateway's listener port; on the sidecar's outbound side the port the app
  addressed (the ``Host`` header's port, else the listener's).
- ``scheme``: ``http`` or ``https``, lower case.
- ``headers``: a mapping from lower-case header name to value, several values of one name
  joined with ``,`` (as Envoy does). Pseudo-headers are not expected.

Nothing is percent-decoded or normalised (Envoy's defaults in App Mesh): paths and query
values are matched byte for byte as the client sent them.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["RequestHead", "query_params", "split_authority", "strip_query"]


class RequestHead:
    """What route matching reads from one request. Treat it as immutable.

    ``query_params()`` parses the query on first use and caches it, so a route table whose
    routes have no query conditions never parses it.
    """

    __slots__ = ("_query", "headers", "host", "method", "path", "port", "scheme")

    def __init__(
        self,
        method: str,
        path: str,
        host: str,
        port: int,
        scheme: str = "http",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.host = host
        self.port = port
        self.scheme = scheme
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self._query: dict[str, str] | None = None

    def query_params(self) -> dict[str, str]:
        """The query parameters of ``path`` (see :func:`query_params`), parsed once."""
        query = self._query
        if query is None:
            query = self._query = query_params(self.path)
        return query

    def __repr__(self) -> str:
        return (
            f"RequestHead({self.method!r}, {self.path!r}, host={self.host!r}, "
            f"port={self.port}, scheme={self.scheme!r}, headers={dict(self.headers)!r})"
        )


def strip_query(target: str) -> str:
    """The path part of a request target: everything before the first ``?`` or ``#``."""
    path = target.partition("?")[0]
    if "#" in path:
        path = path.partition("#")[0]
    return path


def query_params(target: str) -> dict[str, str]:
    """The query parameters of a request target, as Envoy's route matching sees them.

    The query runs from the first ``?`` to the first ``#`` (there is none when ``#`` comes
    first); parameters are separated by ``&``; a parameter without ``=`` has the value
    ``""``; empty parameters are skipped; the first occurrence of a name wins. Names and
    values are not percent-decoded (Envoy's router matches the raw query string).
    """
    query = target.partition("#")[0].partition("?")[2]
    params: dict[str, str] = {}
    if not query:
        return params
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            params.setdefault(name, value)
    return params


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """``(host, port)`` from a ``Host`` header value: host lower-cased, port or the default.

    ``Worker.Corp:8080`` → ``("worker.corp", 8080)``; ``worker.corp`` → ``("worker.corp",
    default_port)``; ``[::1]:8080`` → ``("[::1]", 8080)`` (IPv6 literals keep their
    brackets). An authority whose port is not a number in 0-65535 is returned whole, with the
    default port: it then names no declared backend.
    """
    lowered = authority.strip().lower()
    if lowered.startswith("["):
        end = lowered.find("]")
        if end < 0:
            return lowered, default_port
        host, rest = lowered[: end + 1], lowered[end + 1 :]
        if not rest:
            return host, default_port
        if rest[0] != ":":
            return lowered, default_port
        port_text = rest[1:]
    else:
        host, sep, port_text = lowered.rpartition(":")
        if not sep:
            return lowered, default_port
        if ":" in host:  # a bare IPv6 address without brackets: no port to split off
            return lowered, default_port
    if not port_text:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        return lowered, default_port
    return host, int(port_text)
