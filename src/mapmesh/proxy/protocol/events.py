"""mapmesh's own stream events: the only currency between a codec and the router.

A codec turns bytes from one peer into these events and the router reads nothing else, so
HTTP/2 and gRPC arrive later as one new codec file producing the same events (hypercorn's
``protocol/events.py`` is the model). One message is always::

    RequestHead | ResponseHead      exactly once (a response may be preceded by
                                    InformationalResponse events: 100, 102, 103)
    Body*                           zero or more pieces of the decoded payload, never empty
    EndBody                         exactly once, carrying trailers when there were any

``ProtocolError`` can replace any of these and is always the last event a codec produces;
``ConnectionClosed`` reports that the peer closed at a message boundary.

Field values are wire bytes, not decoded text: ``method`` is ``b"GET"``, header names keep
the case they arrived in (compare them with :func:`mapmesh.proxy.protocol.headers.get_field`
or lower-case them yourself). Events are cheap (``__slots__``, no per-event dict) and must be
treated as immutable: codecs share one ``EndBody`` instance among messages without trailers.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "Body",
    "ConnectionClosed",
    "EndBody",
    "Event",
    "Fields",
    "InformationalResponse",
    "ProtocolError",
    "RequestHead",
    "ResponseHead",
    "split_fields",
]

Fields = list[tuple[bytes, bytes]]
"""Header or trailer fields in arrival order, ``(name, value)``; value without surrounding
whitespace. Repeated names stay separate entries."""


class Event:
    """Base of every event. Equality compares type and every slot (handy in tests)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"


class _Head(Event):
    """Shared by message heads: ``headers`` is parsed from ``raw_headers`` only when read.

    The codecs validate every field line (llhttp) and pick out the few fields they act on
    without building the list, so a request that is forwarded untouched never pays for it.
    """

    __slots__ = ()
    _headers: Fields | None
    raw_headers: bytes

    @property
    def headers(self) -> Fields:
        fields = self._headers
        if fields is None:
            fields = split_fields(self.raw_headers)
            self._headers = fields  # type: ignore[misc]  # the slot is declared by subclasses
        return fields


def split_fields(block: bytes) -> Fields:
    """``(name, value)`` pairs of a validated field block (lines ending CRLF); values
    without surrounding whitespace."""
    fields: Fields = []
    for line in block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            fields.append((name, value.strip(b" \t")))
    return fields


class RequestHead(_Head):
    """A request's line and header block, as received from downstream.

    - ``method``, ``target``: exactly as in the request line (``target`` may be origin-form
      ``/a?b``, absolute-form ``http://host/a`` from HTTP-proxy clients, ``*`` or CONNECT's
      authority-form).
    - ``path``: the origin-form target to forward (``target`` itself unless absolute-form).
    - ``authority``: the absolute-form target's authority, else the ``Host`` value, else None.
    - ``http_version``: ``"1.0"`` or ``"1.1"`` (HTTP/2 codecs will say ``"2"``).
    - ``headers``: every field, in order; ``raw_headers``: the field lines exactly as
      received (``b"Host: a\\r\\nAccept: */*\\r\\n"``, without the request line and the final
      empty line); ``forward_headers``: the same bytes minus hop-by-hop lines, ready to be
      sent upstream as they are — the very same object as ``raw_headers`` when nothing had to
      be removed.
    - ``keep_alive``: whether the client wants the connection kept after the response.
    - ``content_length`` / ``chunked``: the body's framing; neither means no body.
    - ``expect_continue``: the client waits for ``100 Continue`` before sending the body.
    - ``upgrade``: the ``Upgrade`` value when the client asked to switch protocols (the
      codec forwards such requests as plain requests unless the router does something else).
    - ``request_id``: the ``x-request-id`` the client sent, if any; ``traceparent``: the
      W3C trace context it sent, if any; ``amzn_trace_id``: X-Ray's ``X-Amzn-Trace-Id``, if
      any.
    """

    __slots__ = (
        "_headers",
        "amzn_trace_id",
        "authority",
        "chunked",
        "content_length",
        "expect_continue",
        "forward_headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "raw_headers",
        "request_id",
        "target",
        "traceparent",
        "upgrade",
    )
    _fields = (
        "method",
        "target",
        "path",
        "authority",
        "http_version",
        "headers",
        "raw_headers",
        "forward_headers",
        "keep_alive",
        "content_length",
        "chunked",
        "expect_continue",
        "upgrade",
        "request_id",
        "traceparent",
        "amzn_trace_id",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        path: bytes,
        authority: bytes | None,
        http_version: str,
        headers: Fields | None,
        raw_headers: bytes,
        forward_headers: bytes,
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        expect_continue: bool = False,
        upgrade: bytes | None = None,
        request_id: bytes | None = None,
        traceparent: bytes | None = None,
        amzn_trace_id: bytes | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.authority = authority
        self.http_version = http_version
        self._headers = headers
        self.raw_headers = raw_headers
        self.forward_headers = forward_headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.request_id = request_id
        self.traceparent = traceparent
        self.amzn_trace_id = amzn_trace_id

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class InformationalResponse(_Head):
    """A 1xx response (100 Continue, 102, 103 Early Hints) that precedes the real one."""

    __slots__ = ("_headers", "raw_headers", "reason", "status")
    _fields = ("status", "reason", "headers", "raw_headers")

    def __init__(
        self, status: int, reason: bytes, headers: Fields | None, raw_headers: bytes
    ) -> None:
        self.status = status
        self.reason = reason
        self._headers = headers
        self.raw_headers = raw_headers


class ResponseHead(_Head):
    """A response's status line and header block, as received from upstream.

    ``headers`` / ``raw_headers`` / ``forward_headers`` as in :class:`RequestHead`.
    ``keep_alive``: the upstream connection may carry another request once this response is
    read to its end. ``has_body`` is False for responses to HEAD and for 204/304; otherwise
    the body is framed by ``content_length``, ``chunked``, or — neither — by the upstream
    closing the connection.
    """

    __slots__ = (
        "_headers",
        "chunked",
        "content_length",
        "forward_headers",
        "has_body",
        "http_version",
        "keep_alive",
        "raw_headers",
        "reason",
        "status",
    )
    _fields = (
        "status",
        "reason",
        "http_version",
        "headers",
        "raw_headers",
        "forward_headers",
        "keep_alive",
        "content_length",
        "chunked",
        "has_body",
    )

    def __init__(
        self,
        status: int,
        reason: bytes,
        http_version: str,
        headers: Fields | None,
        raw_headers: bytes,
        forward_headers: bytes,
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        has_body: bool = True,
    ) -> None:
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self._headers = headers
        self.raw_headers = raw_headers
        self.forward_headers = forward_headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.has_body = has_body

    @property
    def close_delimited(self) -> bool:
        """The body runs until the upstream closes the connection."""
        return self.has_body and self.content_length is None and not self.chunked


class Body(Event):
    """A piece of decoded payload (chunk framing removed); never empty."""

    __slots__ = ("data",)
    _fields = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EndBody(Event):
    """The message is complete; ``trailers`` holds chunked trailer fields, if any."""

    __slots__ = ("trailers",)
    _fields = ("trailers",)

    def __init__(self, trailers: Fields | None = None) -> None:
        self.trailers: Fields = trailers if trailers is not None else []


class ProtocolError(Event):
    """The peer broke HTTP; the codec is finished and the connection must close.

    Whose fault and what to answer (h11's ``error_status_hint``): a downstream codec says
    400 (malformed), 413 (body over the limit), 414 (request line too long), 431 (header
    block too large), 501 (unsupported transfer coding) or 505 (HTTP version); an upstream
    codec always says 502. ``reason`` is a short fixed phrase for the access log and the
    local response body.
    """

    __slots__ = ("reason", "status_hint")
    _fields = ("status_hint", "reason")

    def __init__(self, status_hint: int, reason: str) -> None:
        self.status_hint = status_hint
        self.reason = reason


class ConnectionClosed(Event):
    """The peer closed the connection between messages (nothing was lost)."""

    __slots__ = ()
