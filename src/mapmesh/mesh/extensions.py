"""mapmesh extensions: settings App Mesh's API has no member for, kept beside a resource's spec.

The App Mesh API must answer exactly in botocore's shapes, so an extension never enters a
resource's ``spec``: it is stored in :attr:`MeshResource.extensions
<mapmesh.mesh.records.MeshResource.extensions>`, read and written through the native
``/v1/extensions`` endpoint (:mod:`mapmesh.api.extensions`), compiled into snapshots, and
left alone by every App Mesh operation (an ``Update<Kind>`` keeps it, a delete drops it with
the resource). Mesh files write it where a reader expects it — inside the spec — and the CLI
splits it off before the spec goes to the App Mesh API (:mod:`mapmesh.cli.meshfile`).

One extension exists today, ``rateLimit`` (a token bucket, enforced by each proxy process):

- on a **GatewayRoute**: ``{"rateLimit": {...}}``;
- on a **VirtualNode** listener, by port: ``{"listeners": [{"port": 8080, "rateLimit": {...}}]}``.

The wire form is camelCase like App Mesh's; :meth:`Extensions.wire` gives the canonical form
(members without a value left out, listeners sorted by port) that apply compares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "SUPPORTED",
    "Extensions",
    "ListenerExtensions",
    "RateLimit",
    "check_extensions",
    "describe_error",
]

MAX_REQUESTS_PER_UNIT = 1_000_000_000


class _ExtensionModel(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class RateLimit(_ExtensionModel):
    """At most ``requestsPerUnit`` requests per ``unit`` on average, ``burst`` at once
    (default: ``requestsPerUnit``)."""

    requests_per_unit: int = Field(alias="requestsPerUnit", ge=1, le=MAX_REQUESTS_PER_UNIT)
    unit: Literal["second", "minute"]
    burst: int | None = Field(default=None, ge=1, le=MAX_REQUESTS_PER_UNIT)


class ListenerExtensions(_ExtensionModel):
    """The extensions of one virtual node listener, named by its port."""

    port: int = Field(ge=1, le=65535)
    rate_limit: RateLimit | None = Field(default=None, alias="rateLimit")


class Extensions(_ExtensionModel):
    """Every extension of one resource; which members a kind takes is :data:`SUPPORTED`."""

    rate_limit: RateLimit | None = Field(default=None, alias="rateLimit")
    listeners: tuple[ListenerExtensions, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.wire()

    def listener(self, port: int) -> ListenerExtensions | None:
        return next((li for li in self.listeners if li.port == port), None)

    def wire(self) -> dict[str, Any]:
        """Canonical wire form: unset members left out, listeners by port, empty ones dropped."""
        out: dict[str, Any] = {}
        if self.rate_limit is not None:
            out["rateLimit"] = _wire(self.rate_limit)
        listeners = [
            {"port": li.port, "rateLimit": _wire(li.rate_limit)}
            for li in sorted(self.listeners, key=lambda li: li.port)
            if li.rate_limit is not None
        ]
        if listeners:
            out["listeners"] = listeners
        return out

    @classmethod
    def from_wire(cls, value: Mapping[str, Any] | None) -> Extensions:
        """Parse a wire dict; raises pydantic's ValidationError (see :func:`describe_error`)."""
        return cls.model_validate(dict(value or {}))


def _wire(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


# Which top-level members each kind takes (kinds not listed take none).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "gatewayRoute": ("rateLimit",),
    "virtualNode": ("listeners",),
}


def check_extensions(kind: str, extensions: Extensions, spec: Mapping[str, Any]) -> list[str]:
    """Problems with ``extensions`` on a ``kind`` resource whose spec is ``spec``, each naming
    its field (``extensions.listeners[0].port: ...``); empty when it can be stored."""
    problems: list[str] = []
    allowed = SUPPORTED.get(kind, ())
    for member in extensions.wire():
        if member not in allowed:
            where = " or ".join(k for k, members in SUPPORTED.items() if member in members)
            problems.append(f"extensions.{member}: a {kind} takes no {member} (only a {where})")
    ports = [li.port for li in extensions.listeners]
    declared = {
        listener.get("portMapping", {}).get("port")
        for listener in spec.get("listeners") or ()
        if isinstance(listener, Mapping)
    }
    for i, port in enumerate(ports):
        if ports.index(port) != i:
            problems.append(f"extensions.listeners[{i}].port: port {port} appears twice")
        elif "listeners" in allowed and port not in declared:
            problems.append(
                f"extensions.listeners[{i}].port: the {kind} has no listener on port {port}"
            )
    return problems


def describe_error(exc: ValidationError, prefix: str = "extensions") -> str:
    """``extensions.rateLimit.unit: Input should be 'second' or 'minute'`` (first 5 errors)."""
    parts = []
    for error in exc.errors()[:5]:
        location = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        )
        parts.append(f"{prefix}{location}: {error['msg']}")
    return "; ".join(parts)
