"""AWS's rest-json protocol, driven entirely by a botocore service model.

A rest-json operation is an HTTP method plus a URI template (``PUT
/v20190125/meshes/{meshName}/virtualNodes``); its input members say where each value travels
(``location``: ``uri``, ``querystring``, ``header``, ``headers``; none = the JSON body) and its
output may name a ``payload`` member that *is* the body. Nothing here knows App Mesh: give
:class:`RestJsonApi` a model and one handler per operation name and it serves them.

A request walks: :class:`Router` (template match, most literal characters wins) →
:func:`decode_request` (path labels, query, headers and body into one dict keyed by member
name, strings converted to the member's type) → ``ServiceSpec.validate_input`` → the handler →
:func:`encode_output` (headers, status and body per member location; timestamps as epoch
seconds, which botocore's rest-json parser reads). Errors leave as the protocol wants them:
the model's status code, ``x-amzn-ErrorType: <Code>`` and a ``{"message": ...}`` body.

Routing, decoding and encoding do no I/O; only :meth:`RestJsonApi.endpoint` touches
Starlette, so the whole pipeline is testable with plain :class:`HttpRequest` values.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mapmesh.api.awsrpc import region_from_authorization
from mapmesh.api.spec import OperationSpec, ServiceSpec, ValidationFailed
from mapmesh.core.context import CallerContext

__all__ = [
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "RestJsonApi",
    "RestJsonError",
    "RouteMiss",
    "Router",
    "decode_request",
    "encode_error",
    "encode_output",
]

log = logging.getLogger("mapmesh.api")

Handler = Callable[[CallerContext, dict[str, Any]], Awaitable[dict[str, Any]]]

_JSON = "application/json"
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class RestJsonError(Exception):
    """A refused call; ``status`` defaults to the model's ``httpStatusCode`` for ``code``."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields = dict(fields or {})


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str  # as sent: still percent-encoded, no query string
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


# -- routing -------------------------------------------------------------------------------

_LABEL = re.compile(r"\{([^}]+?)(\+?)\}")


@dataclass(frozen=True, slots=True)
class _Template:
    operation: OperationSpec
    pattern: re.Pattern[str]
    labels: tuple[str, ...]  # label names, in group order
    query: tuple[tuple[str, str | None], ...]  # literal query conditions: ?uploads, ?x-id=Get
    rank: tuple[int, int]  # higher wins: (literal characters + conditions, -greedy labels)

    @staticmethod
    def compile(operation: OperationSpec) -> _Template:
        path, _, literal_query = operation.request_uri.partition("?")
        parts: list[str] = []
        labels: list[str] = []
        literal = greedy = position = 0
        for label in _LABEL.finditer(path):
            chunk = path[position : label.start()]
            parts.append(re.escape(chunk))
            literal += len(chunk)
            labels.append(label.group(1))
            greedy += bool(label.group(2))
            parts.append("(.+)" if label.group(2) else "([^/]+)")
            position = label.end()
        parts.append(re.escape(path[position:]))
        literal += len(path) - position
        query = tuple(
            (key, value or None) for key, value in parse_qsl(literal_query, keep_blank_values=True)
        )
        return _Template(
            operation,
            re.compile("".join(parts)),
            tuple(labels),
            query,
            (literal + len(query), -greedy),
        )


@dataclass(frozen=True, slots=True)
class RouteMatch:
    operation: OperationSpec
    labels: dict[str, str]  # label name → decoded value


@dataclass(frozen=True, slots=True)
class RouteMiss:
    allowed: tuple[str, ...]  # methods that exist for this path; empty: no such path


class Router:
    """Operations by method and URI template; the most specific matching template wins."""

    def __init__(self, operations: Mapping[str, OperationSpec]) -> None:
        self._templates = sorted(
            (_Template.compile(op) for op in operations.values()),
            key=lambda t: t.rank,
            reverse=True,
        )

    @property
    def prefixes(self) -> frozenset[str]:
        """The first path segment of every template (``/v20190125``), for mounting."""
        return frozenset(
            "/" + t.operation.request_uri.lstrip("/").split("/", 1)[0].split("?", 1)[0]
            for t in self._templates
        )

    def match(self, method: str, path: str, query: Mapping[str, Any]) -> RouteMatch | RouteMiss:
        allowed: list[str] = []
        for template in self._templates:
            found = template.pattern.fullmatch(path)
            if found is None or not all(
                key in query and (value is None or value in query[key])
                for key, value in template.query
            ):
                continue
            if template.operation.http_method != method:
                allowed.append(template.operation.http_method)
                continue
            labels = {
                name: unquote(value)
                for name, value in zip(template.labels, found.groups(), strict=True)
            }
            return RouteMatch(template.operation, labels)
        return RouteMiss(tuple(sorted(set(allowed))))


# -- request decoding ----------------------------------------------------------------------


def decode_request(
    spec: ServiceSpec, match: RouteMatch, request: HttpRequest, query: dict[str, list[str]]
) -> dict[str, Any]:
    """One params dict keyed by member name, from the path, query, headers and body.

    Values that do not convert (``limit=abc``) are passed on as sent, so the model validator
    reports them against the member's name; misplaced body members are refused here.
    """
    operation = match.operation
    if operation.input_shape is None:
        return {}
    shape = spec.shapes[operation.input_shape]
    members: dict[str, Any] = shape.get("members", {})
    params: dict[str, Any] = {}
    claimed_query = {
        m.get("locationName", name)
        for name, m in members.items()
        if m.get("location") == "querystring" and spec.shapes[m["shape"]]["type"] != "map"
    }
    for name, member in members.items():
        location = member.get("location")
        wire_name = member.get("locationName", name)
        target = spec.shapes[member["shape"]]
        value: Any = None
        if location == "uri":
            value = _from_text(target, match.labels.get(wire_name), "iso8601")
        elif location == "querystring":
            value = _from_query(spec, target, wire_name, query, claimed_query)
        elif location == "header":
            value = _from_header(spec, target, request.headers.get(wire_name.lower()))
        elif location == "headers":
            prefix = wire_name.lower()
            found = {
                k[len(prefix) :]: v for k, v in request.headers.items() if k.startswith(prefix)
            }
            value = found or None
        if value is not None:
            params[name] = value
    params.update(_decode_body(spec, shape, request.body))
    return params


def _from_query(
    spec: ServiceSpec,
    shape: dict[str, Any],
    wire_name: str,
    query: dict[str, list[str]],
    claimed: set[str],
) -> Any:
    if shape["type"] == "map":  # a map member takes every parameter no other member names
        rest = {k: v for k, v in query.items() if k not in claimed}
        value_shape = spec.shapes[shape["value"]["shape"]]
        if value_shape["type"] == "list":
            return rest or None
        return {k: v[-1] for k, v in rest.items()} or None
    values = query.get(wire_name)
    if values is None:
        return None
    if shape["type"] == "list":
        item = spec.shapes[shape["member"]["shape"]]
        return [_from_text(item, v, "iso8601") for v in values]
    return _from_text(shape, values[-1], "iso8601")


def _from_header(spec: ServiceSpec, shape: dict[str, Any], text: str | None) -> Any:
    if text is None:
        return None
    if shape["type"] == "list":
        item = spec.shapes[shape["member"]["shape"]]
        return [_from_text(item, part.strip(), "rfc822") for part in text.split(",")]
    if shape["type"] == "string" and shape.get("jsonvalue"):
        try:
            return json.loads(base64.b64decode(text))
        except (ValueError, binascii.Error):
            return text
    return _from_text(shape, text, "rfc822")


def _from_text(shape: dict[str, Any], text: str | None, stamp: str) -> Any:
    """A path, query or header string as the member's type (unchanged when it does not fit)."""
    if text is None:
        return None
    kind = shape["type"]
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("double", "float"):
            return float(text)
        if kind == "boolean":
            return {"true": True, "false": False}.get(text.lower(), text)
        if kind == "timestamp":
            return _parse_timestamp(text, shape.get("timestampFormat", stamp))
    except (ValueError, OverflowError, OSError):
        return text
    return text


def _parse_timestamp(text: str, fmt: str) -> datetime:
    if fmt == "unixTimestamp":
        return datetime.fromtimestamp(float(text), UTC)
    if fmt == "rfc822":
        try:
            return parsedate_to_datetime(text)
        except (TypeError, ValueError):
            pass
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _decode_body(spec: ServiceSpec, shape: dict[str, Any], body: bytes) -> dict[str, Any]:
    members: dict[str, Any] = shape.get("members", {})
    payload = shape.get("payload")
    if payload is not None:
        target = spec.shapes[members[payload]["shape"]]
        if not body:
            return {}
        if target["type"] == "blob":
            return {payload: body}
        if target["type"] == "string":
            return {payload: body.decode("utf-8", errors="replace")}
        return {payload: _from_json(spec, members[payload]["shape"], _parse_json(body))}
    if not body.strip():
        return {}
    document = _parse_json(body)
    if not isinstance(document, dict):
        raise ValidationFailed(["request body: must be a JSON object"])
    by_wire: dict[str, str] = {
        m.get("locationName", name): name for name, m in members.items() if "location" not in m
    }
    placed = {name for name, m in members.items() if "location" in m}
    problems = [
        f"{key}: belongs in the {members[key]['location']}" for key in placed & set(document)
    ]
    if problems:
        raise ValidationFailed(problems)
    out: dict[str, Any] = {}
    for key, value in document.items():
        name = (
            by_wire[key] if key in by_wire else str(key)
        )  # unknown keys pass through; the validator names them
        out[name] = _from_json(spec, members[name]["shape"], value) if name in members else value
    return out


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed([f"request body: not valid JSON ({exc})"]) from None


def _from_json(spec: ServiceSpec, shape_name: str, value: Any) -> Any:
    """Wire JSON to member-named values: ``locationName`` keys renamed, timestamps parsed."""
    shape = spec.shapes[shape_name]
    kind = shape["type"]
    if kind == "structure" and isinstance(value, dict):
        members: dict[str, Any] = shape.get("members", {})
        by_wire: dict[str, str] = {m.get("locationName", name): name for name, m in members.items()}
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = by_wire[key] if key in by_wire else str(key)
            out[name] = _from_json(spec, members[name]["shape"], item) if name in members else item
        return out
    if kind == "list" and isinstance(value, list):
        return [_from_json(spec, shape["member"]["shape"], item) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _from_json(spec, shape["value"]["shape"], v) for k, v in value.items()}
    if kind == "timestamp" and isinstance(value, int | float | str) and not isinstance(value, bool):
        fmt = "unixTimestamp" if isinstance(value, int | float) else "iso8601"
        try:
            return _parse_timestamp(str(value), shape.get("timestampFormat", fmt))
        except (ValueError, OverflowError, OSError):
            return value
    return value


# -- response encoding ---------------------------------------------------------------------


def encode_output(
    spec: ServiceSpec, operation: OperationSpec, result: Mapping[str, Any]
) -> HttpResponse:
    """Place each output member where the model says: header, status code, payload or body."""
    headers = {"content-type": _JSON}
    status = operation.response_code
    if operation.output_shape is None:
        return HttpResponse(status, headers, b"{}")
    shape = spec.shapes[operation.output_shape]
    members: dict[str, Any] = shape.get("members", {})
    shaped: dict[str, Any] = spec.shape_output(operation.output_shape, dict(result))
    body: dict[str, Any] = {}
    for name, value in shaped.items():
        member = members[name]
        location = member.get("location")
        wire_name = member.get("locationName", name)
        if location == "header":
            headers[wire_name.lower()] = _to_header(spec, member["shape"], value)
        elif location == "headers":
            headers.update({f"{wire_name}{k}".lower(): str(v) for k, v in value.items()})
        elif location == "statusCode":
            status = int(value)
        elif name != shape.get("payload"):
            body[wire_name] = _to_json(spec, member["shape"], value)
    payload = shape.get("payload")
    if payload is None:
        return HttpResponse(status, headers, _dump(body))
    value = shaped.get(payload)
    kind = spec.shapes[members[payload]["shape"]]["type"]
    if kind == "blob":
        headers["content-type"] = "application/octet-stream"
        return HttpResponse(status, headers, bytes(value or b""))
    if kind == "string":
        headers["content-type"] = "text/plain"
        return HttpResponse(status, headers, str(value or "").encode())
    document = _to_json(spec, members[payload]["shape"], value) if value is not None else {}
    return HttpResponse(status, headers, _dump(document))


def encode_error(code: str, message: str, status: int, fields: Mapping[str, Any]) -> HttpResponse:
    headers = {"content-type": _JSON, "x-amzn-errortype": code}
    return HttpResponse(status, headers, _dump({"message": message, **fields}))


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _to_json(spec: ServiceSpec, shape_name: str, value: Any) -> Any:
    """Shaped output values to wire JSON: ``locationName`` keys, timestamps per format."""
    shape = spec.shapes[shape_name]
    kind = shape["type"]
    if kind == "structure":
        members: dict[str, Any] = shape.get("members", {})
        return {
            members[k].get("locationName", k): _to_json(spec, members[k]["shape"], v)
            for k, v in value.items()
        }
    if kind == "list":
        return [_to_json(spec, shape["member"]["shape"], item) for item in value]
    if kind == "map":
        return {k: _to_json(spec, shape["value"]["shape"], v) for k, v in value.items()}
    if kind == "timestamp":
        return _format_timestamp(value, shape.get("timestampFormat", "unixTimestamp"))
    if kind == "blob":
        return base64.b64encode(value).decode()
    return value


def _to_header(spec: ServiceSpec, shape_name: str, value: Any) -> str:
    shape = spec.shapes[shape_name]
    kind = shape["type"]
    if kind == "list":
        return ",".join(_to_header(spec, shape["member"]["shape"], v) for v in value)
    if kind == "timestamp":
        return str(_format_timestamp(value, shape.get("timestampFormat", "rfc822")))
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "string" and shape.get("jsonvalue"):
        return base64.b64encode(_dump(value)).decode()
    return str(value)


def _format_timestamp(value: datetime, fmt: str) -> float | int | str:
    if fmt == "iso8601":
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if fmt == "rfc822":
        return format_datetime(value.astimezone(UTC), usegmt=True)
    seconds = value.timestamp()
    return int(seconds) if seconds == math.floor(seconds) else round(seconds, 3)


# -- the service ---------------------------------------------------------------------------


class RestJsonApi:
    """Serves every operation of a rest-json model that has a handler.

    ``validation_error`` is the model's exception for malformed requests (App Mesh:
    ``BadRequestException``); ``internal_error`` the one for unexpected failures.
    """

    def __init__(
        self,
        spec: ServiceSpec,
        handlers: Mapping[str, Handler],
        *,
        account: str,
        default_region: str,
        validation_error: str,
        internal_error: str = "InternalFailure",
    ) -> None:
        unknown = set(handlers) - set(spec.operations)
        if unknown:
            raise ValueError(f"handlers for operations the model lacks: {sorted(unknown)}")
        self.spec = spec
        self.handlers = dict(handlers)
        self.router = Router(spec.operations)
        self.account = account
        self.default_region = default_region
        self.validation_error = validation_error
        self.internal_error = internal_error
        self.service_name = str(spec.metadata.get("serviceFullName", "this service"))

    def routes(self) -> list[BaseRoute]:
        """Starlette routes sending every path under the model's prefixes here."""
        paths: set[str] = set()
        for prefix in self.router.prefixes:
            literal = "{" not in prefix  # a model whose URIs open with a label takes every path
            paths.update((prefix, prefix + "/{rest:path}") if literal else ("/{rest:path}",))
        # every method reaches the router, which answers 405 with the allowed ones
        return [Route(path, self.endpoint, methods=_METHODS) for path in sorted(paths)]

    async def endpoint(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else request.url.path
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        http = HttpRequest(
            method=request.method,
            path=path.split("?", 1)[0],
            query=request.url.query,
            headers=headers,
            body=await request.body(),
        )
        response = await self.handle(http)
        return Response(response.body, response.status, headers=response.headers)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        response = await self._dispatch(request)
        response.headers["x-amzn-requestid"] = str(uuid.uuid4())
        return response

    async def _dispatch(self, request: HttpRequest) -> HttpResponse:
        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(request.query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        found = self.router.match(request.method, request.path, query)
        if isinstance(found, RouteMiss):
            return self._miss(request, found)
        name = found.operation.name
        handler = self.handlers.get(name)
        if handler is None:
            message = f"{name} is not implemented by mapmesh"
            return encode_error("NotImplemented", message, 501, {})
        started = time.perf_counter()
        try:
            params = decode_request(self.spec, found, request, query)
            params = self.spec.validate_input(found.operation, params)
            ctx = CallerContext(
                region=region_from_authorization(
                    request.headers.get("authorization"), self.default_region
                ),
                account=self.account,
            )
            result = await handler(ctx, params)
            response = encode_output(self.spec, found.operation, result)
        except ValidationFailed as exc:
            return encode_error(self.validation_error, str(exc), 400, {})
        except RestJsonError as exc:
            status = exc.status or self.spec.error_status(exc.code)
            return encode_error(exc.code, exc.message, status, self._fields(exc))
        except Exception:
            log.exception("operation failed", extra={"operation": name})
            message = "internal error; see the server log"
            return encode_error(self.internal_error, message, 500, {})
        log.debug(
            "rest-json call",
            extra={"operation": name, "ms": round((time.perf_counter() - started) * 1000, 2)},
        )
        return response

    def _miss(self, request: HttpRequest, miss: RouteMiss) -> HttpResponse:
        where = f"{request.method} {request.path}"
        if miss.allowed:
            allowed = ", ".join(miss.allowed)
            response = encode_error(
                "UnknownOperationException",
                f"no {self.service_name} operation for {where}; this path takes {allowed}",
                405,
                {},
            )
            response.headers["allow"] = allowed
            return response
        return encode_error(
            "UnknownOperationException", f"no {self.service_name} operation for {where}", 404, {}
        )

    def _fields(self, exc: RestJsonError) -> dict[str, Any]:
        members = self.spec.shapes.get(exc.code, {}).get("members", {})
        return {k: v for k, v in exc.fields.items() if k in members and k != "message"}
