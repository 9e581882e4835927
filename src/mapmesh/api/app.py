"""The control plane's HTTP application: every wire API on one port.

App Mesh arrives as rest-json under ``/v20190125/...`` and is served by the model-driven
:class:`~mapmesh.api.restjson.RestJsonApi` with the handlers of :mod:`mapmesh.api.appmesh`.
Cloud Map arrives as JSON 1.1 on ``POST /`` or as RPC v2 CBOR on
``POST /service/Route53AutoNaming_v20170314/operation/<Op>``; both go through the same
validate → handle → shape pipeline in :func:`_cloudmap_call`.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mapmesh.api.appmesh import SPEC_NAME as APPMESH_SPEC
from mapmesh.api.appmesh import appmesh_handlers
from mapmesh.api.awsrpc import CBOR, JSON11, WireCodec, WireError, region_from_authorization
from mapmesh.api.cloudmap import HANDLERS
from mapmesh.api.extensions import extension_routes
from mapmesh.api.restjson import RestJsonApi
from mapmesh.api.spec import ValidationFailed, load_spec
from mapmesh.api.telemetry import telemetry_routes
from mapmesh.api.xds import stream_routes
from mapmesh.core.context import CallerContext
from mapmesh.dashboard import dashboard_routes
from mapmesh.mesh.service import MeshService
from mapmesh.registry.errors import RegistryError
from mapmesh.registry.registry import Registry
from mapmesh.xds.service import SnapshotService

__all__ = ["CLOUDMAP_TARGET", "create_app"]

log = logging.getLogger("mapmesh.api")

CLOUDMAP_TARGET = "Route53AutoNaming_v20170314"


class _CloudMapApi:
    def __init__(self, registry: Registry, account: str, default_region: str) -> None:
        self.registry = registry
        self.account = account
        self.default_region = default_region
        self.spec = load_spec("servicediscovery-2017-03-14")

    async def json11(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        if prefix != CLOUDMAP_TARGET:
            return self._error(
                JSON11, "UnknownOperationException", f"unknown X-Amz-Target {target!r}", {}, 400
            )
        return await self._call(request, JSON11, name)

    async def cbor(self, request: Request) -> Response:
        if request.path_params["service"] != CLOUDMAP_TARGET:
            return self._error(
                CBOR, "UnknownOperationException", "unknown service in the path", {}, 404
            )
        return await self._call(request, CBOR, request.path_params["operation"])

    async def _call(self, request: Request, codec: WireCodec, name: str) -> Response:
        started = time.perf_counter()
        operation = self.spec.operations.get(name)
        if operation is None or name not in HANDLERS:
            return self._error(
                codec, "UnknownOperationException", f"unknown operation {name!r}", {}, 400
            )
        try:
            params = self.spec.validate_input(operation, codec.decode(await request.body()))
            ctx = CallerContext(
                region=region_from_authorization(
                    request.headers.get("authorization"), self.default_region
                ),
                account=self.account,
            )
            result = await HANDLERS[name](self.registry, ctx, params)
        except WireError as exc:
            return self._error(codec, exc.code, exc.message, {}, exc.status)
        except ValidationFailed as exc:
            return self._error(codec, "InvalidInput", str(exc), {}, 400)
        except RegistryError as exc:
            fields = self._error_fields(exc)
            return self._error(
                codec, exc.code, exc.message, fields, self.spec.error_status(exc.code)
            )
        except Exception:
            log.exception("operation failed", extra={"operation": name})
            return self._error(
                codec, "InternalFailure", "internal error; see the server log", {}, 500
            )
        body = codec.encode(self.spec.shape_output(operation.output_shape, result))
        log.debug(
            "cloudmap call",
            extra={"operation": name, "ms": round((time.perf_counter() - started) * 1000, 2)},
        )
        return Response(body, 200, headers=self._headers(codec))

    def _error_fields(self, exc: RegistryError) -> dict[str, Any]:
        members = self.spec.shapes.get(exc.code, {}).get("members", {})
        return {k: v for k, v in exc.fields.items() if k in members and v is not None}

    def _headers(self, codec: WireCodec) -> dict[str, str]:
        return {
            "content-type": codec.content_type,
            "x-amzn-requestid": str(uuid.uuid4()),
            **codec.extra_headers,
        }

    def _error(
        self, codec: WireCodec, code: str, message: str, fields: dict[str, Any], status: int
    ) -> Response:
        headers = {**self._headers(codec), "x-amzn-errortype": code}
        return Response(codec.encode_error(code, message, fields), status, headers=headers)


def create_app(
    registry: Registry,
    mesh: MeshService,
    snapshots: SnapshotService,
    *,
    account: str,
    default_region: str = "us-east-1",
) -> Starlette:
    cloudmap = _CloudMapApi(registry, account, default_region)
    appmesh = RestJsonApi(
        load_spec(APPMESH_SPEC),
        appmesh_handlers(mesh),
        account=account,
        default_region=default_region,
        validation_error="BadRequestException",
        internal_error="InternalServerErrorException",
    )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "revision": registry.view.revision})

    return Starlette(
        routes=[
            Route("/", cloudmap.json11, methods=["POST"]),
            Route("/service/{service}/operation/{operation}", cloudmap.cbor, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            *appmesh.routes(),
            *stream_routes(snapshots),
            *extension_routes(mesh),
            *dashboard_routes(),
            *telemetry_routes(registry, mesh, snapshots),
        ]
    )
