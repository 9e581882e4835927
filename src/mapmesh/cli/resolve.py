"""From what the user typed to Cloud Map resources and request parameters.

Two jobs, both without printing anything:

- *resolution*: a namespace or service given by name, id or ARN becomes its summary dict
  (names compare case-insensitively, as the registry does). A miss raises the same
  :class:`ApiError` the control plane would (``NamespaceNotFound`` / ``ServiceNotFound``);
- *parsing*: ``KEY=VALUE`` flags, DNS record types, IP addresses, raising
  :class:`UsageProblem` with the flag's name and the offending value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from mapmesh.cli.client import ApiError, CloudMapClient
from mapmesh.cli.problems import UsageProblem

__all__ = [
    "RECORD_TYPES",
    "address_attributes",
    "find_namespace",
    "find_service",
    "parse_pairs",
    "parse_record_types",
    "services_in",
]

RECORD_TYPES = ("A", "AAAA", "SRV", "CNAME")


def find_namespace(client: CloudMapClient, ref: str) -> dict[str, Any]:
    """The NamespaceSummary whose id, ARN, name or HTTP name is ``ref``."""
    wanted = ref.rstrip(".").lower()
    namespaces: list[dict[str, Any]] = client.paginate("ListNamespaces", "Namespaces")
    for ns in namespaces:
        http_name = ((ns.get("Properties") or {}).get("HttpProperties") or {}).get("HttpName")
        if ref in (ns.get("Id"), ns.get("Arn")):
            return ns
        if wanted in (str(ns.get("Name", "")).lower(), str(http_name or "").lower()):
            return ns
    raise ApiError("NamespaceNotFound", f"namespace {ref!r} not found", 400, "ListNamespaces")


def services_in(client: CloudMapClient, namespace_id: str) -> list[dict[str, Any]]:
    return client.paginate(
        "ListServices",
        "Services",
        Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}],
    )


def find_service(client: CloudMapClient, namespace: dict[str, Any], ref: str) -> dict[str, Any]:
    """The ServiceSummary in ``namespace`` whose id, ARN or name is ``ref``."""
    wanted = ref.lower()
    for svc in services_in(client, str(namespace["Id"])):
        if ref in (svc.get("Id"), svc.get("Arn")) or str(svc.get("Name", "")).lower() == wanted:
            return svc
    raise ApiError("ServiceNotFound", f"service {ref!r} not found", 400, "ListServices")


def parse_pairs(flag: str, values: Iterable[str] | None) -> dict[str, str]:
    """``["env=prod", "tier=web"]`` → ``{"env": "prod", "tier": "web"}`` (last one wins)."""
    pairs: dict[str, str] = {}
    for value in values or ():
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise UsageProblem(f"{flag} expects KEY=VALUE, got {value!r}")
        pairs[key.strip()] = rest
    return pairs


def parse_record_types(values: Iterable[str]) -> list[str]:
    """``["A,SRV", "AAAA"]`` → ``["A", "SRV", "AAAA"]``, validated, without repeats."""
    types: list[str] = []
    for value in values:
        for part in value.split(","):
            kind = part.strip().upper()
            if kind not in RECORD_TYPES:
                raise UsageProblem(
                    f"--dns expects record types among {', '.join(RECORD_TYPES)} "
                    f"(comma-separated) or 'none', got {part.strip()!r}"
                )
            if kind not in types:
                types.append(kind)
    return types


def address_attributes(ip: str | None, port: int | None, extra: dict[str, str]) -> dict[str, str]:
    """Cloud Map's instance attributes for ``--ip``/``--port`` plus the ``--attr`` pairs."""
    attributes: dict[str, str] = {}
    if ip is not None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise UsageProblem(f"--ip expects an IPv4 or IPv6 address, got {ip!r}") from None
        attributes[f"AWS_INSTANCE_IPV{address.version}"] = str(address)
    if port is not None:
        attributes["AWS_INSTANCE_PORT"] = str(port)
    for key in extra:
        if key in attributes:
            flag = "--port" if key.endswith("PORT") else "--ip"
            raise UsageProblem(f"{key} is already set by {flag}; drop one of them")
    attributes.update(extra)
    if not attributes:
        raise UsageProblem(
            "give the instance an address with --ip (and --port) or --attr KEY=VALUE"
        )
    return attributes
