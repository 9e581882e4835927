"""App files: a whole mesh described the way ECS Service Connect users think, parsed without I/O.

An app file names services, how to run them (command, replicas, env, health check) and which
other services each one calls; App Mesh-level detail (version weights, retries, timeouts,
connection pool, outlier detection) is optional. :func:`parse` turns the YAML text into frozen
values or raises :class:`AppFileError`, whose message starts with the file, the line and the
field (``app.yaml:14: services.worker.versions.v1.replicas: must be a whole number >= 0``),
so a mistake is found before anything is started. ``docs/runner.md`` documents every field.

Only shape and meaning are checked here; what the App Mesh API would refuse is caught later,
when the derived resources are checked against its model (:mod:`mapmesh.runner.derive`).
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

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
    "parse",
    "parse_duration",
]

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
"""Names of the app, services and versions: DNS labels, since they become host names."""

_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_LAST_STEP = re.compile(r"(\.[^.\[]+|\[\d+\])$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HTTP_RETRY_EVENTS = ("server-error", "gateway-error", "client-error", "stream-error")
_TCP_RETRY_EVENTS = ("connection-error",)
RESERVED_ENV = (
    "PORT", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "MAPMESH_SERVICE", "MAPMESH_VERSION", "MAPMESH_REPLICA",
)  # fmt: skip
"""Variables the runner sets for every app (``docs/runner.md``); ``env`` may not set them."""
MAX_TOTAL_WEIGHT = 100  # App Mesh: the weights of a route's targets add up to at most 100


class AppFileError(Exception):
    """The app file cannot be run as written; ``field`` is the path of the offending member."""

    def __init__(self, file: str, field: str, message: str, line: int | None = None) -> None:
        self.file = file
        self.field = field
        self.message = message
        self.line = line
        where = f"{file}:{line}" if line else file
        subject = f"{field}: " if field else ""
        super().__init__(f"{where}: {subject}{message}")


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


def parse_duration(value: object) -> float:
    """``"500ms"``, ``"5s"``, ``"1m"``, ``"1h"`` or a number of seconds → seconds.

    Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.match(value)):
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    else:
        raise ValueError(f'expected a duration like "500ms", "5s", "1m" or seconds, got {value!r}')
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def parse(text: str, file: str = "app.yaml") -> AppFile:
    """The app file in ``text``; :class:`AppFileError` names the first field that is wrong."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise AppFileError(
            file, "", f"not valid YAML: {exc.problem or exc.context}", line
        ) from None
    except yaml.YAMLError as exc:
        raise AppFileError(file, "", f"not valid YAML: {exc}") from None
    lines: dict[str, int] = {}
    if node is not None:
        _index_lines(node, "", lines)
    root = _Field(file, "", data, lines)
    return _app(root)


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            member = f"{path}.{key_node.value}" if path else str(key_node.value)
            lines.setdefault(member, key_node.start_mark.line + 1)
            _index_lines(value_node, member, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            member = f"{path}[{i}]"
            lines.setdefault(member, item.start_mark.line + 1)
            _index_lines(item, member, lines)


@dataclass(frozen=True, slots=True)
class _Field:
    """A value at a path of the file, able to raise errors that point at it."""

    file: str
    path: str
    value: Any
    lines: Mapping[str, int]

    def fail(self, message: str) -> AppFileError:
        """An error at this field, on its line (or its closest parent's)."""
        path = self.path
        while path and path not in self.lines:
            parent = _LAST_STEP.sub("", path)
            if parent == path:
                break
            path = parent
        return AppFileError(self.file, self.path, message, self.lines.get(path))

    def child(self, key: str | int) -> _Field:
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
            value = self.value[key]
        else:
            path = f"{self.path}.{key}" if self.path else key
            value = self.value.get(key) if isinstance(self.value, dict) else None
        return _Field(self.file, path, value, self.lines)

    @property
    def missing(self) -> bool:
        return self.value is None

    def mapping(self, allowed: Sequence[str], what: str) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.fail(f"must be a mapping ({what}), not a {_type(self.value)}")
        for key in self.value:
            if not isinstance(key, str) or key not in allowed:
                hint = _did_you_mean(str(key), allowed)
                raise self.child(str(key)).fail(
                    f"unknown field{hint}; {what} takes {', '.join(allowed)}"
                )
        return self.value

    def string(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail(f"must be a non-empty string, got {_show(self.value)}")
        return self.value

    def name(self, what: str) -> str:
        value = self.value
        if not isinstance(value, str) or not NAME.match(value) or len(value) > 63:
            raise self.fail(
                f"{what} must be lower-case letters, digits and '-' (a DNS label, at most 63 "
                f"characters, not starting or ending with '-'), got {_show(value)}"
            )
        return value

    def integer(self, low: int, high: int | None = None) -> int:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(f"must be a whole number >= {low}, got {_show(value)}")
        if high is not None and value > high:
            raise self.fail(f"must be at most {high}, got {value}")
        return value

    def duration(self) -> float:
        try:
            return parse_duration(self.value)
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"must be true or false, got {_show(self.value)}")
        return self.value

    def strings(self) -> list[str]:
        if not isinstance(self.value, list):
            raise self.fail(f"must be a list, not a {_type(self.value)}")
        return [self.child(i).string() for i in range(len(self.value))]


def _app(root: _Field) -> AppFile:
    if root.missing:
        raise root.fail("the file is empty; it needs at least `app:` and `services:`")
    top = root.mapping(("app", "namespace", "gateway", "services"), "an app file")
    del top
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
                f"got {_show(ns_field.value)}"
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
                hint = _did_you_mean(called, names)
                raise calls.child(i).fail(
                    f"{called!r} is not a service in this file{hint}; services: {', '.join(names)}"
                )
    gateway = _gateway(root.child("gateway"), names)
    return AppFile(app, namespace, tuple(services), gateway)


_SERVICE_KEYS = (
    "command", "replicas", "env", "versions", "health", "calls", "timeout", "retries",
    "connectionPool", "outlierDetection",
)  # fmt: skip
_VERSION_KEYS = ("command", "replicas", "weight", "env")


def _service(field: _Field) -> Service:
    name = _Field(field.file, field.path, field.path.rsplit(".", 1)[-1], field.lines).name(
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
    field: _Field, service: _Field, name: str, env: tuple[tuple[str, str], ...]
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
        version = _Field(item.file, item.path, key, item.lines).name("a version's name")
        if item.missing:
            item = _Field(item.file, item.path, {}, item.lines)
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


def _check_nodes(field: _Field, services: Sequence[Service]) -> None:
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


def _command(field: _Field) -> tuple[str, ...]:
    value = field.value
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise field.fail(f"cannot be split like a shell would: {exc}") from None
    elif isinstance(value, list):
        parts = field.strings()
    else:
        raise field.fail(f"must be a string or a list of strings, not a {_type(value)}")
    if not parts:
        raise field.fail("is empty; say how to run the service")
    return tuple(parts)


def _replicas(field: _Field) -> int:
    return 1 if field.missing else field.integer(0, 100)


def _env(field: _Field) -> tuple[tuple[str, str], ...]:
    if field.missing:
        return ()
    if not isinstance(field.value, dict):
        raise field.fail(f"must be a mapping of NAME: value, not a {_type(field.value)}")
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
            raise item.fail(f"must be a string or a number, not a {_type(value)}")
        pairs.append((key, str(value)))
    return tuple(pairs)


_HEALTH_KEYS = (
    "path", "tcp", "interval", "timeout", "healthyThreshold", "unhealthyThreshold", "startTimeout",
)  # fmt: skip


def _health(field: _Field) -> HealthCheck:
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


def _optional(field: _Field, default: float) -> float:
    return default if field.missing else field.duration()


def _threshold(field: _Field, default: int) -> int:
    return default if field.missing else field.integer(1, 10)


def _retries(field: _Field) -> Retries | None:
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


def _events(field: _Field, allowed: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    if field.missing:
        return default
    events = field.strings()
    for i, event in enumerate(events):
        if event not in allowed:
            hint = _did_you_mean(event, allowed)
            raise field.child(i).fail(f"unknown event {event!r}{hint}; one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(events))


def _pool(field: _Field) -> ConnectionPool | None:
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


def _outlier(field: _Field) -> OutlierDetection | None:
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


def _gateway(field: _Field, services: Sequence[str]) -> Gateway | None:
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
            hint = _did_you_mean(service, services)
            raise service_field.fail(
                f"{service!r} is not a service in this file{hint}; services: {', '.join(services)}"
            )
        routes.append(GatewayRoute(prefix, service, _rewrite(item.child("rewrite"))))
    return Gateway(port, tuple(routes))


def _rewrite(field: _Field) -> str | None:
    if field.missing:
        return "/"
    if field.value is False:
        return None
    value = field.value
    if not isinstance(value, str) or not value.startswith("/"):
        raise field.fail(f"must be a path prefix starting with '/' or false, got {_show(value)}")
    return value


# -- helpers ------------------------------------------------------------------------------


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return "string" if isinstance(value, str) else type(value).__name__


def _show(value: object) -> str:
    return "nothing" if value is None else repr(value)
