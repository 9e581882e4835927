"""App files: a whole mesh described the way ECS Service Connect users think.

An app file names services, how to run them (command, replicas, env, health check) and which
other services each one calls; App Mesh-level detail (version weights, retries, timeouts,
connection pool, outlier detection) is optional. :func:`parse` (no I/O; :func:`load_file`
reads the file first) turns the YAML text into frozen values or raises
:class:`AppFileError`, whose message starts with the file, the line and the field
(``app.yaml:14: services.worker.versions.v1.replicas: must be a whole number >= 0``), so a
mistake is found before anything is started. ``docs/runner.md`` documents every field.

Only shape and meaning are checked here; what the App Mesh API would refuse is caught later,
when the derived resources are checked against its model (:mod:`mapmesh.runner.derive`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mapmesh.runner.fields import (
    AppFileError,
    Field,
    did_you_mean,
    load,
    parse_duration,
    show,
    yaml_type,
)

__all__ = [
    "RESERVED_ENV",
    "AppFile",
    "AppFileError",
    "ConnectionPool",
    "Gateway",
    "GatewayRoute",
    "HealthCheck",
    "OutlierDetection",
    "Retries",
    "Service",
    "Version",
    "load_file",
    "parse",
    "parse_duration",
]

_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HTTP_RETRY_EVENTS = ("server-error", "gateway-error", "client-error", "stream-error")
_TCP_RETRY_EVENTS = ("connection-error",)
RESERVED_ENV = (
    "PORT", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "MAPMESH_SERVICE", "MAPMESH_VERSION", "MAPMESH_REPLICA",
)  # fmt: skip
"""Variables the runner sets for every app (``docs/runner.md``); ``env`` may not set them."""
MAX_TOTAL_WEIGHT = 100  # App Mesh: the weights of a route's targets add up to at most 100


# -- the values ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How the runner (and the callers' proxies) decide a replica is healthy."""

    path: str | None = "/health"  # None: a TCP connect check
    interval: float = 5.0
    timeout: float = 2.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2
    start_timeout: float = 60.0  # a new replica must be healthy within this

    @property
    def tcp(self) -> bool:
        return self.path is None


@dataclass(frozen=True, slots=True)
class Retries:
    max_retries: int
    per_retry_timeout: float
    http_events: tuple[str, ...]
    tcp_events: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    max_connections: int
    max_pending_requests: int | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    max_server_errors: int
    interval: float
    base_ejection_duration: float
    max_ejection_percent: int


@dataclass(frozen=True, slots=True)
class Version:
    """One way of running a service: a virtual node of its own when the service has versions."""

    service: str
    name: str | None  # None: the service has no versions
    command: tuple[str, ...]
    replicas: int
    weight: int
    env: tuple[tuple[str, str], ...]

    @property
    def node(self) -> str:
        """The virtual node's name: ``frontend``, ``worker-v1``."""
        return self.service if self.name is None else f"{self.service}-{self.name}"


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    versions: tuple[Version, ...]
    health: HealthCheck
    calls: tuple[str, ...]
    timeout: float | None = None
    retries: Retries | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None

    @property
    def versioned(self) -> bool:
        return self.versions[0].name is not None


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    prefix: str
    service: str
    rewrite: str | None = "/"  # what replaces the matched prefix; None keeps the path


@dataclass(frozen=True, slots=True)
class Gateway:
    port: int
    routes: tuple[GatewayRoute, ...]


@dataclass(frozen=True, slots=True)
class AppFile:
    app: str
    namespace: str
    services: tuple[Service, ...]
    gateway: Gateway | None
    egress: str = "DROP_ALL"  # the mesh's egress filter: ALLOW_ALL lets apps call outside hosts

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    @property
    def versions(self) -> tuple[Version, ...]:
        """Every version of every service: one virtual node each."""
        return tuple(v for s in self.services for v in s.versions)


# -- parsing ------------------------------------------------------------------------------


def parse(text: str, file: str = "app.yaml") -> AppFile:
    """The app file in ``text``; :class:`AppFileError` names the first field that is wrong."""
    return _app(load(text, file))


def load_file(path: Path) -> AppFile:
    """Read and parse ``path``; an unreadable file is an :class:`AppFileError` too."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AppFileError(str(path), "", f"cannot read the app file: {exc.strerror}") from None
    return parse(text, str(path))


def _app(root: Field) -> AppFile:
    if root.missing:
        raise root.fail("the file is empty; it needs at least `app:` and `services:`")
    root.mapping(("app", "namespace", "egressFilter", "gateway", "services"), "an app file")
    app_field = root.child("app")
    if app_field.missing:
        raise app_field.fail("missing; add `app: NAME`, which names the mesh")
    app = app_field.name("the app's name")
    namespace = f"{app}.local"
    ns_field = root.child("namespace")
    if not ns_field.missing:
        namespace = ns_field.string().rstrip(".").lower()
        if not _NAMESPACE.match(namespace) or len(namespace) > 253:
            raise ns_field.fail(
                f"must be a DNS name like {app}.local (labels of letters, digits and '-'), "
                f"got {show(ns_field.value)}"
            )
    services_field = root.child("services")
    if services_field.missing:
        raise services_field.fail("missing; add `services:` with at least one service")
    if not isinstance(services_field.value, dict) or not services_field.value:
        raise services_field.fail("must be a mapping of service name to service, with one or more")
    for key in services_field.value:
        if not isinstance(key, str):
            raise services_field.fail(f"service names must be strings, got {key!r}")
    services = [_service(services_field.child(name)) for name in services_field.value]
    names = [s.name for s in services]
    _check_nodes(services_field, services)
    for service in services:
        calls = services_field.child(service.name).child("calls")
        for i, called in enumerate(service.calls):
            if called not in names:
                hint = did_you_mean(called, names)
                raise calls.child(i).fail(
                    f"{called!r} is not a service in this file{hint}; services: {', '.join(names)}"
                )
    gateway = _gateway(root.child("gateway"), names)
    egress_field = root.child("egressFilter")
    egress = "DROP_ALL" if egress_field.missing else egress_field.string()
    if egress not in ("DROP_ALL", "ALLOW_ALL"):
        raise egress_field.fail(f"must be DROP_ALL or ALLOW_ALL, got {egress!r}")
    return AppFile(app, namespace, tuple(services), gateway, egress)


_SERVICE_KEYS = (
    "command", "replicas", "env", "versions", "health", "calls", "timeout", "retries",
    "connectionPool", "outlierDetection",
)  # fmt: skip
_VERSION_KEYS = ("command", "replicas", "weight", "env")


def _service(field: Field) -> Service:
    name = Field(field.file, field.path, field.path.rsplit(".", 1)[-1], field.lines).name(
        "a service's name"
    )
    if field.missing:
        raise field.fail("is empty; give it at least `command:`")
    field.mapping(_SERVICE_KEYS, "a service")
    env = _env(field.child("env"))
    versions_field = field.child("versions")
    versions: tuple[Version, ...]
    if versions_field.missing:
        command_field = field.child("command")
        if command_field.missing:
            raise command_field.fail("missing; say how to run the service (or give `versions:`)")
        versions = (
            Version(
                service=name,
                name=None,
                command=_command(command_field),
                replicas=_replicas(field.child("replicas")),
                weight=100,
                env=env,
            ),
        )
    else:
        versions = _versions(versions_field, field, name, env)
    return Service(
        name=name,
        versions=versions,
        health=_health(field.child("health")),
        calls=tuple(dict.fromkeys(field.child("calls").strings()))
        if not field.child("calls").missing
        else (),
        timeout=None if field.child("timeout").missing else field.child("timeout").duration(),
        retries=_retries(field.child("retries")),
        connection_pool=_pool(field.child("connectionPool")),
        outlier_detection=_outlier(field.child("outlierDetection")),
    )


def _versions(
    field: Field, service: Field, name: str, env: tuple[tuple[str, str], ...]
) -> tuple[Version, ...]:
    if not isinstance(field.value, dict) or not field.value:
        raise field.fail("must be a mapping of version name to {command, replicas, weight, env}")
    if len(field.value) > 10:
        raise field.fail("at most 10 versions (App Mesh routes to at most 10 targets)")
    default_command = service.child("command")
    default_replicas = service.child("replicas")
    weights_given: list[bool] = []
    versions: list[Version] = []
    for key in field.value:
        item = field.child(str(key))
        version = Field(item.file, item.path, key, item.lines).name("a version's name")
        if item.missing:
            item = Field(item.file, item.path, {}, item.lines)
        item.mapping(_VERSION_KEYS, "a version")
        command_field = item.child("command")
        if command_field.missing:
            command_field = default_command
        if command_field.missing:
            raise item.child("command").fail(
                "missing; give the version a command (or the service a `command:` every "
                "version uses)"
            )
        replicas_field = item.child("replicas")
        if replicas_field.missing:
            replicas_field = default_replicas
        weight_field = item.child("weight")
        weights_given.append(not weight_field.missing)
        weight = 1 if weight_field.missing else weight_field.integer(0, MAX_TOTAL_WEIGHT)
        versions.append(
            Version(
                service=name,
                name=version,
                command=_command(command_field),
                replicas=_replicas(replicas_field),
                weight=weight,
                env=(*env, *_env(item.child("env"))),
            )
        )
    if any(weights_given) and not all(weights_given):
        unset = [v.name for v, given in zip(versions, weights_given, strict=True) if not given]
        raise field.child(str(unset[0])).fail(
            "weight: missing; give every version a weight, or none (for an even split)"
        )
    if sum(v.weight for v in versions) > MAX_TOTAL_WEIGHT:
        raise field.fail(
            f"the weights add up to {sum(v.weight for v in versions)}; App Mesh allows at most "
            f"{MAX_TOTAL_WEIGHT} (they are relative: 90 and 10 split 90%/10%)"
        )
    if all(v.weight == 0 for v in versions):
        raise field.fail("every weight is 0, so no version would get traffic; give one a weight")
    return tuple(versions)


def _check_nodes(field: Field, services: Sequence[Service]) -> None:
    """Virtual node names must not collide (service ``worker-v1`` vs ``worker`` version v1)."""
    seen: dict[str, str] = {}
    for service in services:
        for version in service.versions:
            where = (
                service.name if version.name is None else f"{service.name}.versions.{version.name}"
            )
            other = seen.setdefault(version.node, where)
            if other != where:
                raise field.child(service.name).fail(
                    f"its virtual node would be named {version.node!r}, like services.{other}'s; "
                    "rename one of them"
                )


def _command(field: Field) -> tuple[str, ...]:
    value = field.value
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise field.fail(f"cannot be split like a shell would: {exc}") from None
    elif isinstance(value, list):
        parts = field.strings()
    else:
        raise field.fail(f"must be a string or a list of strings, not a {yaml_type(value)}")
    if not parts:
        raise field.fail("is empty; say how to run the service")
    return tuple(parts)


def _replicas(field: Field) -> int:
    return 1 if field.missing else field.integer(0, 100)


def _env(field: Field) -> tuple[tuple[str, str], ...]:
    if field.missing:
        return ()
    if not isinstance(field.value, dict):
        raise field.fail(f"must be a mapping of NAME: value, not a {yaml_type(field.value)}")
    pairs: list[tuple[str, str]] = []
    for key, value in field.value.items():
        item = field.child(str(key))
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise item.fail("is not a valid environment variable name (letters, digits, '_')")
        if key in RESERVED_ENV:
            raise item.fail(
                "is set by the runner for every app (see docs/runner.md); drop it from env"
            )
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise item.fail(f"must be a string or a number, not a {yaml_type(value)}")
        pairs.append((key, str(value)))
    return tuple(pairs)


_HEALTH_KEYS = (
    "path", "tcp", "interval", "timeout", "healthyThreshold", "unhealthyThreshold", "startTimeout",
)  # fmt: skip


def _health(field: Field) -> HealthCheck:
    if field.missing:
        return HealthCheck()
    field.mapping(_HEALTH_KEYS, "a health check")
    tcp = False if field.child("tcp").missing else field.child("tcp").boolean()
    path_field = field.child("path")
    if tcp and not path_field.missing:
        raise path_field.fail("a TCP check has no path; drop `path` or `tcp: true`")
    path: str | None = None if tcp else "/health"
    if not path_field.missing:
        path = path_field.string()
        if not path.startswith("/"):
            raise path_field.fail(f"must start with '/', got {path!r}")
    defaults = HealthCheck()
    interval = _optional(field.child("interval"), defaults.interval)
    timeout = _optional(field.child("timeout"), defaults.timeout)
    if timeout > interval and field.child("timeout").missing:
        timeout = interval
    if timeout > interval:
        raise field.child("timeout").fail(
            f"must not be longer than the interval ({interval:g}s), got {timeout:g}s"
        )
    return HealthCheck(
        path=path,
        interval=interval,
        timeout=timeout,
        healthy_threshold=_threshold(field.child("healthyThreshold"), defaults.healthy_threshold),
        unhealthy_threshold=_threshold(
            field.child("unhealthyThreshold"), defaults.unhealthy_threshold
        ),
        start_timeout=_optional(field.child("startTimeout"), defaults.start_timeout),
    )


def _optional(field: Field, default: float) -> float:
    return default if field.missing else field.duration()


def _threshold(field: Field, default: int) -> int:
    return default if field.missing else field.integer(1, 10)


def _retries(field: Field) -> Retries | None:
    if field.missing:
        return None
    keys = ("maxRetries", "perRetryTimeout", "events", "httpRetryEvents", "tcpRetryEvents")
    field.mapping(keys, "a retry policy")
    max_field = field.child("maxRetries")
    if max_field.missing:
        raise max_field.fail("missing; how many times a failed request is retried")
    per_try = field.child("perRetryTimeout")
    events_field = field.child("events")
    if not field.child("httpRetryEvents").missing:
        if not events_field.missing:
            raise events_field.fail("`events` and `httpRetryEvents` are the same; keep one")
        events_field = field.child("httpRetryEvents")
    http_events = _events(events_field, _HTTP_RETRY_EVENTS, ("gateway-error",))
    tcp_events = _events(field.child("tcpRetryEvents"), _TCP_RETRY_EVENTS, ("connection-error",))
    return Retries(
        max_retries=max_field.integer(0, 10),
        per_retry_timeout=15.0 if per_try.missing else per_try.duration(),
        http_events=http_events,
        tcp_events=tcp_events,
    )


def _events(field: Field, allowed: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    if field.missing:
        return default
    events = field.strings()
    for i, event in enumerate(events):
        if event not in allowed:
            hint = did_you_mean(event, allowed)
            raise field.child(i).fail(f"unknown event {event!r}{hint}; one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(events))


def _pool(field: Field) -> ConnectionPool | None:
    if field.missing:
        return None
    field.mapping(("maxConnections", "maxPendingRequests"), "a connection pool")
    connections = field.child("maxConnections")
    if connections.missing:
        raise connections.fail("missing; the most connections callers open to the service")
    pending = field.child("maxPendingRequests")
    return ConnectionPool(
        max_connections=connections.integer(1),
        max_pending_requests=None if pending.missing else pending.integer(1),
    )


def _outlier(field: Field) -> OutlierDetection | None:
    if field.missing:
        return None
    keys = ("maxServerErrors", "interval", "baseEjectionDuration", "maxEjectionPercent")
    field.mapping(keys, "outlier detection")
    for key in keys:
        if field.child(key).missing:
            raise field.child(key).fail(
                f"missing; outlier detection needs all of {', '.join(keys)}"
            )
    return OutlierDetection(
        max_server_errors=field.child("maxServerErrors").integer(1),
        interval=field.child("interval").duration(),
        base_ejection_duration=field.child("baseEjectionDuration").duration(),
        max_ejection_percent=field.child("maxEjectionPercent").integer(0, 100),
    )


def _gateway(field: Field, services: Sequence[str]) -> Gateway | None:
    if field.missing:
        return None
    field.mapping(("port", "routes"), "the gateway")
    port_field = field.child("port")
    port = 8080 if port_field.missing else port_field.integer(1, 65535)
    routes_field = field.child("routes")
    if routes_field.missing or not isinstance(routes_field.value, list) or not routes_field.value:
        raise routes_field.fail(
            "the gateway needs a list of routes, e.g. `routes: [{prefix: /, service: web}]`"
        )
    routes: list[GatewayRoute] = []
    for i in range(len(routes_field.value)):
        item = routes_field.child(i)
        item.mapping(("prefix", "service", "rewrite"), "a gateway route")
        prefix_field, service_field = item.child("prefix"), item.child("service")
        if prefix_field.missing:
            raise prefix_field.fail("missing; the path prefix this route matches, e.g. /")
        prefix = prefix_field.string()
        if not prefix.startswith("/"):
            raise prefix_field.fail(f"must start with '/', got {prefix!r}")
        if service_field.missing:
            raise service_field.fail("missing; the service requests matching this route go to")
        service = service_field.string()
        if service not in services:
            hint = did_you_mean(service, services)
            raise service_field.fail(
                f"{service!r} is not a service in this file{hint}; services: {', '.join(services)}"
            )
        routes.append(GatewayRoute(prefix, service, _rewrite(item.child("rewrite"))))
    return Gateway(port, tuple(routes))


def _rewrite(field: Field) -> str | None:
    if field.missing:
        return "/"
    if field.value is False:
        return None
    value = field.value
    if not isinstance(value, str) or not value.startswith("/"):
        raise field.fail(f"must be a path prefix starting with '/' or false, got {show(value)}")
    return value


# -- helpers ------------------------------------------------------------------------------
