"""A small synchronous App Mesh client for the command line: REST-JSON over ``urllib``.

Requests are built from the same vendored botocore model the control plane serves
(``api/specs/appmesh-2019-01-25.json``), as boto3 builds them: members bound to the URI fill
the path template, ``querystring`` members the query, the rest the JSON body. Results have
boto3's shape too: an output whose model names a ``payload`` member (``DescribeVirtualNode`` →
``virtualNode``) comes back wrapped under that name.

Errors follow :mod:`mapmesh.cli.client` and come from the same transport
(:class:`~mapmesh.cli.client.HttpEndpoint`): a refusal (HTTP status, ``x-amzn-ErrorType``
header, ``{"message": ...}`` body) is an :class:`~mapmesh.cli.client.ApiError` whose code is
the App Mesh exception name (``NotFoundException``, ``BadRequestException``…); no answer at
all is :class:`~mapmesh.cli.client.EndpointUnreachable`.

The helpers below the wire level (:meth:`AppMeshClient.describe`, :meth:`~AppMeshClient.create`
…) take a :class:`~mapmesh.mesh.kinds.ResourceId`, so one code path serves all seven kinds.
:meth:`~AppMeshClient.extensions` and :meth:`~AppMeshClient.set_extensions` are not App Mesh:
they speak mapmesh's native ``/v1/extensions`` endpoint on the same port, for the settings App
Mesh has no member for (:mod:`mapmesh.mesh.extensions`).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from email.message import Message
from typing import Any

from mapmesh.api.spec import load_spec
from mapmesh.cli.client import ApiError, HttpEndpoint
from mapmesh.mesh.kinds import KINDS, ResourceId

__all__ = ["SPEC_NAME", "AppMeshClient"]

SPEC_NAME = "appmesh-2019-01-25"


class AppMeshClient(HttpEndpoint):
    """``AppMeshClient("http://127.0.0.1:7070").call("ListMeshes")["meshes"]``."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        super().__init__(endpoint, timeout)
        self._spec = load_spec(SPEC_NAME)

    # -- wire level ----------------------------------------------------------------------

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Run one operation with boto3-style parameters; returns boto3's result shape."""
        op = self._spec.operations.get(operation)
        if op is None:
            raise ValueError(f"App Mesh has no operation {operation!r}")
        members: dict[str, Any] = (
            self._spec.shapes[op.input_shape].get("members", {}) if op.input_shape else {}
        )
        path, query, body = op.request_uri, {}, {}
        for key, value in params.items():
            member = members.get(key)
            if member is None:
                raise ValueError(f"{operation} has no member {key!r}")
            location = member.get("location")
            if location == "uri":
                placeholder = "{" + member.get("locationName", key) + "}"
                path = path.replace(placeholder, urllib.parse.quote(str(value), safe=""))
            elif location == "querystring":
                query[member.get("locationName", key)] = str(value)
            else:
                body[key] = value
        if "{" in path:
            raise ValueError(f"{operation} needs the path parameters of {op.request_uri}")
        url = self.endpoint + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body, separators=(",", ":")).encode() if op.http_method == "PUT" else None
        request = urllib.request.Request(
            url,
            data=data,
            method=op.http_method,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "mapmesh-cli",
            },
        )
        status, headers, payload = self._exchange(request)
        result = _decode(payload)
        if status >= 300 or result is None:
            raise _api_error(operation, status, headers, result, payload)
        output = self._spec.shapes.get(op.output_shape or "", {})
        wrapped = output.get("payload")
        return {wrapped: result} if wrapped else result

    def paginate(self, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of the list ``key`` across all pages (follows ``nextToken``)."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.call(operation, **params, **({"nextToken": token} if token else {}))
            items += page.get(key) or []
            token = page.get("nextToken")
            if not token:
                return items

    # -- one resource of any kind --------------------------------------------------------

    def describe(self, rid: ResourceId) -> dict[str, Any]:
        """The ``<Kind>Data`` of ``rid``; ``NotFoundException`` when it (or its mesh) is missing."""
        kind = KINDS[rid.kind]
        return _data(self.call(f"Describe{kind.title}", **_path(rid)), kind.name)

    def create(
        self, rid: ResourceId, spec: dict[str, Any], tags: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        kind = KINDS[rid.kind]
        params = {**_path(rid), "spec": spec, **({"tags": tags} if tags else {})}
        return _data(self.call(f"Create{kind.title}", **params), kind.name)

    def update(self, rid: ResourceId, spec: dict[str, Any]) -> dict[str, Any]:
        kind = KINDS[rid.kind]
        return _data(self.call(f"Update{kind.title}", **_path(rid), spec=spec), kind.name)

    def delete(self, rid: ResourceId) -> dict[str, Any]:
        kind = KINDS[rid.kind]
        return _data(self.call(f"Delete{kind.title}", **_path(rid)), kind.name)

    def list_refs(self, kind: str, mesh: str = "", parent: str | None = None) -> list[Any]:
        """The ``<Kind>Ref`` items of every page (``mesh`` is ignored for meshes)."""
        spec = KINDS[kind]
        params: dict[str, Any] = {}
        if kind != "mesh":
            params["meshName"] = mesh
        if spec.parent_field is not None:
            params[spec.parent_field] = parent
        operation = "List" + spec.plural[0].upper() + spec.plural[1:]  # ListVirtualNodes
        return self.paginate(operation, spec.plural, **params)

    def tags(self, arn: str) -> list[dict[str, Any]]:
        return self.paginate("ListTagsForResource", "tags", resourceArn=arn)

    def tag(self, arn: str, tags: list[dict[str, str]]) -> None:
        self.call("TagResource", resourceArn=arn, tags=tags)

    def untag(self, arn: str, keys: list[str]) -> None:
        self.call("UntagResource", resourceArn=arn, tagKeys=keys)

    # -- mapmesh extensions (native endpoint) --------------------------------------------

    def extensions(self, rid: ResourceId) -> dict[str, Any]:
        """The resource's mapmesh extensions (``{}`` when none)."""
        return self._extensions("GET", rid, None)

    def set_extensions(self, rid: ResourceId, extensions: dict[str, Any]) -> dict[str, Any]:
        """Replace the resource's extensions (``{}`` removes them); the stored result."""
        return self._extensions("PUT", rid, {"extensions": extensions})

    def _extensions(
        self, method: str, rid: ResourceId, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        kind = KINDS[rid.kind]
        query = {"mesh": rid.mesh}
        if kind.parent is not None and rid.parent is not None:
            query[kind.parent] = rid.parent
        query[rid.kind] = rid.name
        request = urllib.request.Request(
            f"{self.endpoint}/v1/extensions?{urllib.parse.urlencode(query)}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json", "User-Agent": "mapmesh-cli"},
        )
        operation = "GetExtensions" if method == "GET" else "PutExtensions"
        status, _, payload = self._exchange(request)
        result = _decode(payload)
        if status < 300 and result is not None and isinstance(result.get("extensions"), dict):
            extensions: dict[str, Any] = result["extensions"]
            return extensions
        if result is not None and result.get("code"):
            raise ApiError(str(result["code"]), str(result.get("message", "")), status, operation)
        snippet = payload[:120].decode(errors="replace").strip() or "empty body"
        raise ApiError(
            "UnexpectedResponse",
            f"the endpoint answered HTTP {status} ({snippet!r}) to /v1/extensions, which is "
            "not a mapmesh answer",
            status,
            operation,
        )


def _data(result: dict[str, Any], member: str) -> dict[str, Any]:
    data = result.get(member)
    if not isinstance(data, dict):
        raise ApiError("UnexpectedResponse", f"the answer has no {member!r} object", 200)
    return data


def _path(rid: ResourceId) -> dict[str, Any]:
    """The members naming ``rid``: meshName, the parent's name, the resource's name."""
    kind = KINDS[rid.kind]
    params: dict[str, Any] = {"meshName": rid.mesh}
    if kind.parent_field is not None:
        params[kind.parent_field] = rid.parent
    if kind.name != "mesh":
        params[kind.name_field] = rid.name
    return params


def _decode(payload: bytes) -> dict[str, Any] | None:
    if not payload.strip():
        return {}
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _api_error(
    operation: str,
    status: int,
    headers: Message,
    result: dict[str, Any] | None,
    payload: bytes,
) -> ApiError:
    code = headers.get("x-amzn-ErrorType") or (result or {}).get("__type") or ""
    if result is None or not code:
        snippet = payload[:120].decode(errors="replace").strip() or "empty body"
        return ApiError(
            "UnexpectedResponse",
            f"the endpoint answered HTTP {status} ({snippet!r}), which is not an App Mesh answer",
            status,
            operation,
        )
    # "BadRequestException:http://internal.amazon.com/..." or "aws.appmesh#NotFoundException"
    code = str(code).split(":", 1)[0].rsplit("#", 1)[-1]
    message = result.get("message") or result.get("Message") or ""
    return ApiError(code, str(message), status, operation)
