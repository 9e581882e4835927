"""``mapmesh explain``: a snapshot as a person reads it, every default marked.

App Mesh's hidden defaults (a 15 s timeout nobody set, two retries nobody asked for) were a
top complaint; here each value says where it came from. :func:`explain` turns a snapshot
(and the compile's warnings) into a JSON-able dict in request order — listeners, gateway
routes, backends → routes → targets, each target with its cluster's circuit breaker, outlier
detection, health check and endpoints. Every setting is ``{"value": ..., "source":
"default" | "configured"}``, taken from the snapshot's ``defaulted`` lists. :func:`render_text`
prints that dict for a terminal; the CLI may fetch the dict from the server and render it
locally.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mapmesh.model.plain import to_json
from mapmesh.model.snapshot import (
    Cluster,
    Endpoint,
    GatewayRoute,
    Listener,
    Route,
    RouteMatch,
    RouteTable,
    Snapshot,
    SnapshotModel,
)
from mapmesh.xds.diagnostics import CompileWarning

__all__ = ["annotate", "explain", "match_summary", "render_text"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, SnapshotModel):
        return to_json(value, exclude={"defaulted"})
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _setting(value: Any, source: str) -> dict[str, Any]:
    return {"value": _jsonable(value), "source": source}


def annotate(model: SnapshotModel) -> dict[str, Any]:
    """Each field of ``model`` as a setting; nested models as dicts of settings."""
    defaulted = set(getattr(model, "defaulted", ()))
    out: dict[str, Any] = {}
    for name in model.field_names():
        if name == "defaulted":
            continue
        value = getattr(model, name)
        source = "default" if name in defaulted else "configured"
        if isinstance(value, SnapshotModel):
            out[name] = annotate(value)
        else:
            out[name] = _setting(value, source)
    return out


def match_summary(match: RouteMatch) -> str:
    """One line: ``GET host exact example.com prefix /api header x-canary exact 'yes'``."""
    parts: list[str] = []
    if match.method:
        parts.append(match.method)
    if match.scheme:
        parts.append(f"{match.scheme}://")
    if match.hostname is not None:
        parts.append(f"host {match.hostname.kind} {match.hostname.value}")
    parts.append(f"{match.path.kind} {match.path.value}")
    for header in match.headers:
        name = ("not " if header.invert else "") + f"header {header.name}"
        if header.kind == "present":
            parts.append(f"{name} present")
        elif header.kind == "range":
            parts.append(f"{name} in [{header.range_start}, {header.range_end})")
        else:
            parts.append(f"{name} {header.kind} {header.value!r}")
    for query in match.query:
        parts.append(f"query {query.name}" + (f"={query.exact}" if query.exact is not None else ""))
    if match.port is not None:
        parts.append(f"port {match.port}")
    return " ".join(parts)


def _endpoint(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "address": endpoint.address,
        "port": endpoint.port,
        "health": endpoint.health,
        "instance_id": endpoint.instance_id,
        "weight": _setting(
            endpoint.weight if endpoint.weight is not None else 1,
            "default" if endpoint.weight is None else "configured",
        ),
        "receives_traffic": endpoint.health != "UNHEALTHY",
    }


def _cluster(cluster: Cluster | None, name: str) -> dict[str, Any]:
    if cluster is None:  # cannot happen for compiled snapshots; keep explain total
        return {"cluster": name, "missing": True}
    out = annotate(cluster)
    out["endpoints"] = [_endpoint(e) for e in cluster.endpoints]
    return out


def _route(route: Route, snapshot: Snapshot) -> dict[str, Any]:
    out = annotate(route)
    out["match"] = {"summary": match_summary(route.match), **_jsonable(route.match)}
    out["targets"] = [
        {
            "cluster": target.cluster,
            "weight": target.weight,
            "port": _setting(target.port, target.source("port")),
            "upstream": _cluster(snapshot.cluster(target.cluster), target.cluster),
        }
        for target in route.targets
    ]
    return out


def _table(table: RouteTable, snapshot: Snapshot) -> dict[str, Any]:
    return {
        "virtual_service": table.virtual_service,
        "ports": list(table.ports),
        "provider": _jsonable(table.provider),
        "client_tls": (
            annotate(table.client_tls)
            if table.client_tls is not None
            else _setting(None, "default")
        ),
        "client_policy_from": table.client_policy_from,
        "routes": [_route(route, snapshot) for route in table.routes],
    }


def _limited(model: Listener | GatewayRoute) -> dict[str, Any]:
    """``annotate``, with an absent rate limit (an extension; unlimited unless set) marked as
    the default it is."""
    out = annotate(model)
    if model.rate_limit is None:
        out["rate_limit"] = _setting(None, "default")
    return out


def explain(snapshot: Snapshot, warnings: Iterable[CompileWarning] = ()) -> dict[str, Any]:
    """The snapshot in request order with every setting's source; JSON-able."""
    gateway_routes = []
    for route in snapshot.gateway_routes:
        entry = _limited(route)
        entry["match"] = {"summary": match_summary(route.match), **_jsonable(route.match)}
        gateway_routes.append(entry)
    return {
        "proxy": {"mesh": snapshot.mesh, "kind": snapshot.kind, "name": snapshot.name},
        "egress_filter": _setting(snapshot.egress_filter, snapshot.source("egress_filter")),
        "access_log": (
            annotate(snapshot.access_log)
            if snapshot.access_log is not None
            else _setting(None, "default")
        ),
        "listeners": [_limited(listener) for listener in snapshot.listeners],
        "gateway_routes": gateway_routes,
        "backends": [_table(table, snapshot) for table in snapshot.route_tables],
        "warnings": [
            {"subject": w.subject, "code": str(w.code), "message": w.message}
            for w in sorted(warnings)
        ],
    }


# -- text ------------------------------------------------------------------------------------


def _duration(ms: int) -> str:
    if ms == 0:
        return "disabled"
    for size, unit in ((3_600_000, "h"), (60_000, "min"), (1000, "s")):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def _is_setting(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"value", "source"}


def _format(key: str, value: Any) -> str:
    if value is None:
        return "off"
    if key.endswith("_ms") and isinstance(value, int):
        return _duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if value and all(isinstance(v, list) and len(v) == 2 for v in value):
            return ", ".join(f"{k}={v}" for k, v in value)
        return ", ".join(_format("", v) for v in value) if value else "none"
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_format(k, v)}" for k, v in value.items() if v not in (None, []))
    return str(value)


def _label(key: str) -> str:
    return key.removesuffix("_ms").replace("_", " ")


def _sources(settings: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for value in settings.values():
        if not _shown(value):
            continue
        if _is_setting(value):
            found.add(value["source"])
        elif isinstance(value, Mapping):
            found |= _sources(value)
    return found


def _shown(value: Any) -> bool:
    """Unset, not-applicable values (None or empty, and not a default) are left out."""
    if _is_setting(value):
        return value["source"] == "default" or value["value"] not in (None, [])
    return True


def _inline(settings: Mapping[str, Any], *, mark_each: bool) -> str:
    parts = []
    for key, value in settings.items():
        if not _shown(value):
            continue
        if _is_setting(value):
            text = f"{_label(key)} {_format(key, value['value'])}"
            parts.append(f"{text} ({value['source']})" if mark_each else text)
        elif isinstance(value, Mapping):
            parts.append(f"{_label(key)} [{_inline(value, mark_each=mark_each)}]")
    return ", ".join(parts)


def _policy(title: str, value: Any) -> str:
    """``title: a 1 (default), b 2 (configured)`` — or one mark when all share a source."""
    if _is_setting(value):
        shown = "off" if value["value"] is None else _format(title, value["value"])
        return f"{title}: {shown} ({value['source']})"
    sources = _sources(value)
    if len(sources) == 1:
        return f"{title}: {_inline(value, mark_each=False)} (all {sources.pop()})"
    return f"{title}: {_inline(value, mark_each=True)}"


def _value(setting: Mapping[str, Any]) -> Any:
    return setting["value"]


def _render_target(target: Mapping[str, Any], lines: list[str], pad: str) -> None:
    port = target["port"]
    lines.append(
        f"{pad}→ {target['cluster']} weight {target['weight']}"
        + (" (port: default)" if port["source"] == "default" else "")
    )
    upstream = target["upstream"]
    inner = pad + "    "
    if upstream.get("missing"):
        lines.append(f"{inner}cluster missing from the snapshot")
        return
    for key, title in (
        ("lb_policy", "load balancing"),
        ("connection_pool", "circuit breaker"),
        ("outlier_detection", "outlier detection"),
        ("health_check", "health check"),
        ("discovery", "discovery"),
    ):
        lines.append(inner + _policy(title, upstream[key]))
    endpoints = upstream["endpoints"]
    lines.append(f"{inner}endpoints: {len(endpoints) or 'none'}")
    for e in endpoints:
        note = "" if e["receives_traffic"] else " — no traffic"
        instance = f" ({e['instance_id']})" if e["instance_id"] else ""
        weight = e.get("weight")
        weighted = f" weight {weight['value']}" if weight and weight["source"] != "default" else ""
        lines.append(f"{inner}  {e['address']}:{e['port']} {e['health']}{weighted}{instance}{note}")


def _render_route(route: Mapping[str, Any], lines: list[str], pad: str) -> None:
    priority = _value(route["priority"])
    lines.append(
        f"{pad}route {_value(route['name'])} (priority "
        f"{'none' if priority is None else priority}) {_value(route['protocol'])} "
        f"{route['match']['summary']}"
    )
    inner = pad + "  "
    lines.append(inner + _policy("retry", route["retry"]))
    lines.append(inner + _policy("timeout", route["timeout"]))
    for target in route["targets"]:
        _render_target(target, lines, inner)


def render_text(explanation: Mapping[str, Any]) -> str:
    """The :func:`explain` dict as indented text, one setting source per value."""
    proxy = explanation["proxy"]
    lines = [f"{proxy['kind']} {proxy['mesh']}/{proxy['name']}"]
    lines.append("  " + _policy("egress filter", explanation["egress_filter"]))
    lines.append("  " + _policy("access log", explanation["access_log"]))
    for listener in explanation["listeners"]:
        lines.append(f"listener :{_value(listener['port'])} {_value(listener['protocol'])}")
        for key, title in (
            ("timeout", "timeout"),
            ("connection_pool", "circuit breaker"),
            ("outlier_detection", "outlier detection"),
            ("health_check", "health check"),
            ("tls", "tls"),
            ("rate_limit", "rate limit"),
        ):
            lines.append("  " + _policy(title, listener[key]))
    for route in explanation["gateway_routes"]:
        priority = _value(route["priority"])
        lines.append(
            f"gateway route {_value(route['name'])} (priority "
            f"{'none' if priority is None else priority}) {_value(route['protocol'])} "
            f"{route['match']['summary']} → {_value(route['virtual_service'])}"
        )
        lines.append("  " + _policy("rewrite", route["rewrite"]))
        lines.append("  " + _policy("rate limit", route["rate_limit"]))
    for backend in explanation["backends"]:
        provider = backend["provider"]
        by = f"{provider['kind']} {provider['name']}" if provider["name"] else "no provider"
        ports = ", ".join(str(p) for p in backend["ports"]) or "none"
        lines.append(f"backend {backend['virtual_service']} → {by} (ports {ports})")
        lines.append("  " + _policy("client tls", backend["client_tls"]))
        if not backend["routes"]:
            lines.append("  no routes: requests get 404")
        for route in backend["routes"]:
            _render_route(route, lines, "  ")
    if explanation["warnings"]:
        lines.append("warnings:")
        lines.extend(
            f"  {w['subject']}: {w['message']} [{w['code']}]" for w in explanation["warnings"]
        )
    return "\n".join(lines) + "\n"
