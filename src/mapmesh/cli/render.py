"""How registry resources look on a terminal (rich tables) and to scripts (JSON).

JSON output is the API's own shapes, unchanged, one document per command, on stdout. Tables
are for people: they fold long cells instead of cutting them, so ids are always complete.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = [
    "Output",
    "discovered_table",
    "emit_json",
    "instances_table",
    "namespaces_table",
    "print_table",
    "say",
    "services_table",
]

ATTR_IPV4 = "AWS_INSTANCE_IPV4"
ATTR_IPV6 = "AWS_INSTANCE_IPV6"
ATTR_PORT = "AWS_INSTANCE_PORT"
_ADDRESS_ATTRS = (ATTR_IPV4, ATTR_IPV6, ATTR_PORT)


class Output(StrEnum):
    table = "table"
    json = "json"


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def say(text: str) -> None:
    """A line for people (table mode only)."""
    sys.stdout.write(text + "\n")


def print_table(table: Table) -> None:
    Console(highlight=False, soft_wrap=False).print(table)


def _table(*headers: str, whole: int = 2) -> Table:
    """A table whose first ``whole`` columns (names, ids) never wrap; the rest fold."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for index, header in enumerate(headers):
        table.add_column(header, overflow="fold", no_wrap=index < whole)
    return table


def namespaces_table(namespaces: Iterable[Mapping[str, Any]]) -> Table:
    table = _table("NAME", "ID", "TYPE", "SERVICES", "DESCRIPTION")
    for ns in namespaces:
        table.add_row(
            ns.get("Name", ""),
            ns.get("Id", ""),
            ns.get("Type", ""),
            str(ns.get("ServiceCount", "")),
            ns.get("Description") or "",
        )
    return table


def services_table(services: Iterable[tuple[Mapping[str, Any], str]]) -> Table:
    """Rows of (ServiceSummary, the name of its namespace)."""
    table = _table("NAME", "ID", "NAMESPACE", "DNS", "HEALTH CHECK", "INSTANCES")
    for svc, namespace in services:
        table.add_row(
            svc.get("Name", ""),
            svc.get("Id", ""),
            namespace,
            _dns_text(svc.get("DnsConfig")),
            _health_check_text(svc),
            str(svc.get("InstanceCount", "")),
        )
    return table


def instances_table(instances: Sequence[Mapping[str, Any]], status: Mapping[str, str]) -> Table:
    table = _table("INSTANCE", "ADDRESS", "HEALTH", "ATTRIBUTES")
    for inst in instances:
        attributes = inst.get("Attributes") or {}
        table.add_row(
            inst.get("Id", ""),
            _address(attributes),
            status.get(inst.get("Id", ""), "UNKNOWN"),
            _attributes_text(attributes),
        )
    return table


def discovered_table(instances: Sequence[Mapping[str, Any]]) -> Table:
    table = _table("INSTANCE", "ADDRESS", "HEALTH", "ATTRIBUTES")
    for inst in instances:
        attributes = inst.get("Attributes") or {}
        table.add_row(
            inst.get("InstanceId", ""),
            _address(attributes),
            inst.get("HealthStatus", ""),
            _attributes_text(attributes),
        )
    return table


def _address(attributes: Mapping[str, str]) -> str:
    port = attributes.get(ATTR_PORT)
    if ATTR_IPV4 in attributes:
        host = attributes[ATTR_IPV4]
    elif ATTR_IPV6 in attributes:
        host = f"[{attributes[ATTR_IPV6]}]" if port else attributes[ATTR_IPV6]
    else:
        return f":{port}" if port else "-"
    return f"{host}:{port}" if port else host


def _attributes_text(attributes: Mapping[str, str]) -> str:
    rest = [f"{k}={v}" for k, v in sorted(attributes.items()) if k not in _ADDRESS_ATTRS]
    return " ".join(rest) or "-"


def _dns_text(dns: Mapping[str, Any] | None) -> str:
    if not dns:
        return "-"
    records = ",".join(f"{r.get('Type')}({r.get('TTL')}s)" for r in dns.get("DnsRecords") or [])
    policy = str(dns.get("RoutingPolicy") or "").lower()
    return f"{records} {policy}".strip()


def _health_check_text(svc: Mapping[str, Any]) -> str:
    if svc.get("HealthCheckCustomConfig") is not None:
        return "custom"
    check = svc.get("HealthCheckConfig")
    if not check:
        return "-"
    kind = str(check.get("Type", "")).lower()
    path = check.get("ResourcePath") if kind != "tcp" else None
    threshold = check.get("FailureThreshold")
    text = f"{kind} {path}" if path else kind
    return f"{text} (x{threshold})" if threshold else text
