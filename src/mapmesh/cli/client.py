"""A small synchronous Cloud Map client for the command line: JSON 1.1 over ``urllib``.

The CLI must start fast and carry no SDK, so this speaks the wire protocol directly:
``POST /`` with ``X-Amz-Target: Route53AutoNaming_v20170314.<Operation>`` and a JSON body;
errors come back as HTTP 4xx/5xx with ``{"__type": "<Code>", "Message": "..."}``.

Requests are unsigned; mapmesh takes the region from a SigV4 header when there is one and
uses its default otherwise.

Errors say whose fault it was, and are translated in exactly one place
(:meth:`HttpEndpoint._send`, shared with the App Mesh client):

- :class:`ApiError` -- the control plane answered and refused (its code and message);
- :class:`EndpointUnreachable` -- nothing answered (refused, unknown host, timed out);
- :class:`OperationFailed` / :class:`OperationTimedOut` -- from :func:`wait_for_operation`.

Proxies: a shell inside the mesh has ``HTTP_PROXY`` pointing at its sidecar, which knows nothing
of the control plane, so loopback endpoints never go through a proxy; other endpoints follow
``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``, and errors name the proxy when one was used.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from email.message import Message
from typing import Any

__all__ = [
    "TARGET_PREFIX",
    "ApiError",
    "ClientError",
    "CloudMapClient",
    "EndpointUnreachable",
    "HttpEndpoint",
    "OperationFailed",
    "OperationTimedOut",
    "wait_for_operation",
]

TARGET_PREFIX = "Route53AutoNaming_v20170314"
_CONTENT_TYPE = "application/x-amz-json-1.1"


class ClientError(Exception):
    """Base of everything this client raises on purpose."""


class ApiError(ClientError):
    """The control plane refused the request; ``code`` is the Cloud Map exception name."""

    def __init__(self, code: str, message: str, status: int, operation: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.operation = operation


class EndpointUnreachable(ClientError):
    """Nothing usable answered at ``endpoint``; ``reason`` is short and lower-case."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"cannot reach {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class OperationFailed(ClientError):
    """An asynchronous operation ended in FAIL; ``operation`` is its wire shape."""

    def __init__(self, operation: dict[str, Any]) -> None:
        self.operation = operation
        self.code = str(operation.get("ErrorCode") or "Unknown")
        self.message = str(operation.get("ErrorMessage") or "no reason given")
        super().__init__(f"operation {operation.get('Id')} failed: {self.code}: {self.message}")


class OperationTimedOut(ClientError):
    """An operation was neither SUCCESS nor FAIL when the wait ran out."""

    def __init__(self, operation: dict[str, Any], waited: float) -> None:
        self.operation = operation
        self.waited = waited
        super().__init__(
            f"operation {operation.get('Id')} still {operation.get('Status')} after {waited:g}s"
        )


class HttpEndpoint:
    """The transport every CLI client shares: proxy rules, timeouts and :meth:`_send`.

    Subclasses speak one wire protocol on top (:class:`CloudMapClient` JSON 1.1,
    :class:`mapmesh.cli.appmesh_client.AppMeshClient` REST-JSON).
    """

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"endpoint must be an http:// or https:// URL, got {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.proxy: str | None = None
        if not _is_loopback(parsed.hostname) and not urllib.request.proxy_bypass(parsed.hostname):
            self.proxy = urllib.request.getproxies().get(parsed.scheme)
        proxies = {parsed.scheme: self.proxy} if self.proxy else {}
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))

    def _send(self, request: urllib.request.Request) -> tuple[int, bytes]:
        """(status, body) of any answer; raises :class:`EndpointUnreachable` when none came."""
        status, _, body = self._exchange(request)
        return status, body

    def _exchange(self, request: urllib.request.Request) -> tuple[int, Message, bytes]:
        """(status, headers, body) of any answer; the one place transport errors are mapped."""
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return int(response.status), response.headers, bytes(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers, exc.read()
        except urllib.error.URLError as exc:
            raise self._unreachable(_reason(exc.reason, self.timeout)) from None
        except OSError as exc:  # TimeoutError and resets while reading the answer
            raise self._unreachable(_reason(exc, self.timeout)) from None
        except http.client.HTTPException as exc:
            raise self._unreachable(f"it does not answer in HTTP: {type(exc).__name__}") from None

    def _unreachable(self, reason: str) -> EndpointUnreachable:
        via = f" via proxy {self.proxy}" if self.proxy else ""
        return EndpointUnreachable(self.endpoint, reason + via)


class CloudMapClient(HttpEndpoint):
    """``CloudMapClient("http://127.0.0.1:7070").call("ListNamespaces")``."""

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Run one operation; the result is the response's JSON object."""
        body = json.dumps(params, separators=(",", ":")).encode()
        request = urllib.request.Request(
            self.endpoint + "/",
            data=body,
            method="POST",
            headers={
                "Content-Type": _CONTENT_TYPE,
                "X-Amz-Target": f"{TARGET_PREFIX}.{operation}",
                "Accept": "application/json",
                "User-Agent": "mapmesh-cli",
            },
        )
        status, payload = self._send(request)
        result = _decode(payload)
        if status >= 300 or result is None:
            raise _api_error(operation, status, result, payload)
        return result

    def pages(self, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every page of a paginated operation (follows ``NextToken``)."""
        token: str | None = None
        while True:
            page = self.call(operation, **params, **({"NextToken": token} if token else {}))
            yield page
            token = page.get("NextToken")
            if not token:
                return

    def paginate(self, operation: str, key: str, **params: Any) -> list[Any]:
        """Every item of the list ``key`` across all pages."""
        return [item for page in self.pages(operation, **params) for item in page.get(key) or []]


def wait_for_operation(
    client: CloudMapClient,
    operation_id: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    max_interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll GetOperation until SUCCESS (returned) or FAIL (raised), for at most ``timeout``.

    The poll interval doubles from ``interval`` up to ``max_interval``.
    """
    started = clock()
    while True:
        operation: dict[str, Any] = client.call("GetOperation", OperationId=operation_id)[
            "Operation"
        ]
        status = operation.get("Status")
        if status == "SUCCESS":
            return operation
        if status == "FAIL":
            raise OperationFailed(operation)
        waited = clock() - started
        if waited >= timeout:
            raise OperationTimedOut(operation, waited)
        sleep(min(interval, timeout - waited))
        interval = min(interval * 2, max_interval)


def _decode(payload: bytes) -> dict[str, Any] | None:
    if not payload.strip():
        return {}
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _api_error(
    operation: str, status: int, result: dict[str, Any] | None, payload: bytes
) -> ApiError:
    if result is None or "__type" not in result:
        snippet = payload[:120].decode(errors="replace").strip() or "empty body"
        return ApiError(
            "UnexpectedResponse",
            f"the endpoint answered HTTP {status} ({snippet!r}), which is not a Cloud Map answer",
            status,
            operation,
        )
    # "__type" may be namespaced ("com.amazonaws...#NamespaceNotFound") or carry a URL suffix.
    code = str(result["__type"]).rsplit("#", 1)[-1].split(":", 1)[0]
    message = result.get("Message") or result.get("message") or ""
    return ApiError(code, str(message), status, operation)


def _reason(reason: object, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host name not resolved"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(reason, ConnectionResetError):
        return "connection reset"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
