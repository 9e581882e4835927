"""Warnings the compiler returns instead of raising.

Configuration is accepted resource by resource, so a proxy's view of it can dangle: a backend
names a virtual service that was deleted, a route targets a node with no registered
instances. Such a proxy still gets a snapshot — its other routes keep working, and the broken
part answers 404/503 as the data-plane table says — and each gap becomes one
:class:`CompileWarning` whose ``code`` names the reason (one code, one counter).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CompileWarning", "WarningCode"]


class WarningCode(StrEnum):
    MESH_NOT_FOUND = "MESH_NOT_FOUND"
    INVALID_SPEC = "INVALID_SPEC"
    VIRTUAL_SERVICE_NOT_FOUND = "VIRTUAL_SERVICE_NOT_FOUND"
    NO_PROVIDER = "NO_PROVIDER"
    PROVIDER_NOT_FOUND = "PROVIDER_NOT_FOUND"
    NO_ROUTES = "NO_ROUTES"
    TARGET_NODE_NOT_FOUND = "TARGET_NODE_NOT_FOUND"
    NO_LISTENER = "NO_LISTENER"
    AMBIGUOUS_PORT = "AMBIGUOUS_PORT"
    PORT_NOT_FOUND = "PORT_NOT_FOUND"
    NO_SERVICE_DISCOVERY = "NO_SERVICE_DISCOVERY"
    NAMESPACE_NOT_FOUND = "NAMESPACE_NOT_FOUND"
    SERVICE_NOT_FOUND = "SERVICE_NOT_FOUND"
    INSTANCE_SKIPPED = "INSTANCE_SKIPPED"
    INVALID_WEIGHT = "INVALID_WEIGHT"
    NO_ENDPOINTS = "NO_ENDPOINTS"


@dataclass(frozen=True, slots=True, order=True)
class CompileWarning:
    """``subject`` names the resource (``route demo/router/r1``), ``message`` the gap."""

    subject: str
    code: WarningCode
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message} [{self.code}]"
