"""Health-check kinds shared by the registry model and the probes (stdlib only, so the
sidecar's health checker does not import the Cloud Map models)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["HealthCheckType"]


class HealthCheckType(StrEnum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"
    TCP = "TCP"
