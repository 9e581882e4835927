"""Register the sidecar's instance in its node's Cloud Map service, and deregister it.

What ECS does for a task: once the local app passes its health check the instance is
registered (address: the sidecar's advertised address; port: the sidecar's inbound port, so
callers reach the app through its proxy), with the node's discovery attributes (for
example ``version=v1``, so the node's own attribute filter selects it) and any extra ones.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mapmesh.model.snapshot import Discovery
from mapmesh.proxy.control_http import request

__all__ = ["CloudMapRegistrar", "RegistrationError"]

log = logging.getLogger("mapmesh.proxy.registration")

_TARGET = "Route53AutoNaming_v20170314."


class RegistrationError(Exception):
    pass


class CloudMapRegistrar:
    def __init__(self, control_plane: str, instance_id: str) -> None:
        self._control_plane = control_plane
        self.instance_id = instance_id
        self.service_id: str | None = None

    async def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        status, body = await request(
            self._control_plane,
            "POST",
            "/",
            json.dumps(params).encode(),
            {
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": _TARGET + operation,
            },
        )
        payload: dict[str, Any] = json.loads(body) if body else {}
        if status >= 400:
            raise RegistrationError(
                f"{operation}: {payload.get('__type', status)}: {payload.get('Message', '')}"
            )
        return payload

    async def _service_id(self, namespace: str, service: str) -> str:
        namespaces = await self._call(
            "ListNamespaces",
            {"Filters": [{"Name": "HTTP_NAME", "Values": [namespace], "Condition": "EQ"}]},
        )
        found = namespaces.get("Namespaces", [])
        if not found:
            raise RegistrationError(f"Cloud Map namespace {namespace!r} not found")
        services = await self._call(
            "ListServices",
            {"Filters": [{"Name": "NAMESPACE_ID", "Values": [found[0]["Id"]]}]},
        )
        for candidate in services.get("Services", []):
            if candidate["Name"].lower() == service.lower():
                return str(candidate["Id"])
        raise RegistrationError(f"Cloud Map service {service!r} not found in {namespace!r}")

    async def register(
        self, discovery: Discovery, address: str, port: int, extra: dict[str, str]
    ) -> None:
        if discovery.namespace is None or discovery.service is None:
            raise RegistrationError("the node has no Cloud Map service discovery")
        self.service_id = await self._service_id(discovery.namespace, discovery.service)
        key = "AWS_INSTANCE_IPV6" if ":" in address else "AWS_INSTANCE_IPV4"
        attributes = {**dict(discovery.attributes), **extra, key: address,
                      "AWS_INSTANCE_PORT": str(port)}  # fmt: skip
        await self._call(
            "RegisterInstance",
            {
                "ServiceId": self.service_id,
                "InstanceId": self.instance_id,
                "Attributes": attributes,
            },
        )
        log.info(
            "registered",
            extra={"service_id": self.service_id, "instance": self.instance_id, "port": port},
        )

    async def deregister(self) -> None:
        if self.service_id is None:
            return
        try:
            await self._call(
                "DeregisterInstance",
                {"ServiceId": self.service_id, "InstanceId": self.instance_id},
            )
            log.info("deregistered", extra={"instance": self.instance_id})
        except (RegistrationError, OSError, TimeoutError) as exc:
            log.warning("deregistration failed", extra={"error": str(exc)})
        self.service_id = None
