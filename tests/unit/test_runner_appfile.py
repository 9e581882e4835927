"""App files without running anything: what parses, its defaults, and errors that name the field."""

from __future__ import annotations

import textwrap

import pytest

from mapmesh.runner.appfile import (
    AppFileError,
    ConnectionPool,
    GatewayRoute,
    HealthCheck,
    OutlierDetection,
    Retries,
    parse,
    parse_duration,
)

SPEC_EXAMPLE = """\
app: social                  # required; names the mesh; [a-z0-9-]
namespace: social.local      # optional; default "<app>.local"
gateway:
  port: 8080
  routes:
    - prefix: /
      service: frontend
services:
  frontend:
    command: python frontend.py
    replicas: 2
    env: {GREETING: hi}
    health:
      path: /health
      interval: 5s
      timeout: 2s
      healthyThreshold: 2
      unhealthyThreshold: 2
    calls: [auth, worker]
    timeout: 15s
    retries:
      maxRetries: 2
      perRetryTimeout: 2s
      events: [gateway-error]
    connectionPool: {maxConnections: 50, maxPendingRequests: 10}
    outlierDetection:
      {maxServerErrors: 5, interval: 10s, baseEjectionDuration: 30s, maxEjectionPercent: 50}
  auth: {command: [python, auth.py, --fast]}
  worker:
    versions:
      v1: {command: python worker.py, replicas: 2, weight: 90, env: {WORKER_VERSION: v1}}
      v2: {command: python worker.py, replicas: 1, weight: 10, env: {WORKER_VERSION: v2}}
    health: {path: /health}
"""


def test_the_documented_example_parses() -> None:
    app = parse(SPEC_EXAMPLE, "app.yaml")
    assert (app.app, app.namespace) == ("social", "social.local")
    assert app.gateway is not None
    assert app.gateway.port == 8080
    assert app.gateway.routes == (GatewayRoute("/", "frontend", "/"),)
    frontend = app.service("frontend")
    assert not frontend.versioned
    (version,) = frontend.versions
    assert (version.node, version.command, version.replicas) == (
        "frontend", ("python", "frontend.py"), 2,
    )  # fmt: skip
    assert version.env == (("GREETING", "hi"),)
    assert frontend.health == HealthCheck("/health", 5.0, 2.0, 2, 2)
    assert frontend.calls == ("auth", "worker")
    assert frontend.timeout == 15.0
    assert frontend.retries == Retries(2, 2.0, ("gateway-error",), ("connection-error",))
    assert frontend.connection_pool == ConnectionPool(50, 10)
    assert frontend.outlier_detection == OutlierDetection(5, 10.0, 30.0, 50)
    assert app.service("auth").versions[0].command == ("python", "auth.py", "--fast")
    worker = app.service("worker")
    assert worker.versioned
    assert [(v.node, v.replicas, v.weight, v.env) for v in worker.versions] == [
        ("worker-v1", 2, 90, (("WORKER_VERSION", "v1"),)),
        ("worker-v2", 1, 10, (("WORKER_VERSION", "v2"),)),
    ]
    assert [v.node for v in app.versions] == ["frontend", "auth", "worker-v1", "worker-v2"]


def test_defaults() -> None:
    app = parse("app: shop\nservices:\n  web: {command: ./web}\n")
    assert app.namespace == "shop.local"
    assert app.gateway is None
    web = app.service("web")
    assert web.health == HealthCheck()  # GET /health every 5s
    assert web.versions[0].replicas == 1
    assert (web.calls, web.timeout, web.retries, web.connection_pool) == ((), None, None, None)


def test_versions_without_weights_split_evenly_and_inherit_the_service_command() -> None:
    app = parse(
        "app: shop\nservices:\n  web:\n    command: ./web\n    replicas: 3\n"
        "    env: {A: '1'}\n    versions: {blue: {}, green: {env: {B: 2}}}\n"
    )
    blue, green = app.service("web").versions
    assert (blue.command, blue.replicas, blue.weight, blue.env) == (("./web",), 3, 1, (("A", "1"),))
    assert green.env == (("A", "1"), ("B", "2"))
    assert green.weight == 1


def test_tcp_health_check_and_a_short_interval_shortens_the_timeout() -> None:
    app = parse("app: a\nservices:\n  db: {command: x, health: {tcp: true, interval: 500ms}}\n")
    health = app.service("db").health
    assert health.tcp and health.path is None
    assert (health.interval, health.timeout) == (0.5, 0.5)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("1m", 60.0),
        ("1.5s", 1.5),
        (2, 2.0),
        (0.25, 0.25),
        ("1h", 3600.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5", "5 sec", "-1s", 0, True, "ms"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


WEB = "app: shop\nservices:\n  web:\n    command: x\n"  # a service "web", to extend
SVC = "\nservices:\n  web: {command: x}\n"  # after a gateway

BASE = """\
app: shop
services:
  web:
    command: python web.py
    calls: [db]
  db:
    command: python db.py
"""


@pytest.mark.parametrize(
    ("text", "field", "message", "line"),
    [
        ("", "", "the file is empty", None),
        ("app: shop\nservices: {}\n", "services", "with one or more", 2),
        ("services:\n  web: {command: x}\n", "app", "missing; add `app: NAME`", None),
        ("app: Shop\nservices:\n  web: {command: x}\n", "app", "lower-case letters", 1),
        ("app: shop\nservice:\n  web: {command: x}\n", "service",
         "unknown field (did you mean 'services'?)", 2),
        ("app: shop\nnamespace: 'bad name'\nservices:\n  web: {command: x}\n", "namespace",
         "must be a DNS name", 2),
        ("app: shop\nservices:\n  Web: {command: x}\n", "services.Web",
         "a service's name must be lower-case", 3),
        ("app: shop\nservices:\n  web: {replicas: 2}\n", "services.web.command",
         "missing; say how to run the service", 3),
        (WEB + "    replica: 2\n", "services.web.replica",
         "unknown field (did you mean 'replicas'?)", 5),
        (WEB + "    replicas: -1\n",
         "services.web.replicas", "must be a whole number >= 0, got -1", 5),
        ("app: shop\nservices:\n  web:\n    command: ''\n", "services.web.command",
         "is empty", 4),
        ("app: shop\nservices:\n  web:\n    command: \"a 'b\"\n", "services.web.command",
         "cannot be split", 4),
        (WEB + "    calls: [dbb]\n  db: {command: y}\n",
         "services.web.calls[0]", "'dbb' is not a service in this file (did you mean 'db'?)", 5),
        (WEB + "    env: {PORT: 80}\n",
         "services.web.env.PORT", "is set by the runner", 5),
        (WEB + "    env: {1A: b}\n",
         "services.web.env.1A", "not a valid environment variable name", 5),
        (WEB + "    health: {interval: 5}\n", "", "", None),
        (WEB + "    health: {interval: soon}\n",
         "services.web.health.interval", "expected a duration", 5),
        (WEB + "    health: {interval: 1s, timeout: 2s}\n",
         "services.web.health.timeout", "must not be longer than the interval (1s)", 5),
        (WEB + "    health: {tcp: true, path: /h}\n",
         "services.web.health.path", "a TCP check has no path", 5),
        (WEB + "    health: {path: health}\n",
         "services.web.health.path", "must start with '/'", 5),
        (WEB + "    retries: {perRetryTimeout: 1s}\n",
         "services.web.retries.maxRetries", "missing", 5),
        (WEB + "    retries: {maxRetries: 1, events: [5xx]}\n",
         "services.web.retries.events[0]", "unknown event '5xx'", 5),
        (WEB + "    connectionPool: {maxPendingRequests: 1}\n",
         "services.web.connectionPool.maxConnections", "missing", 5),
        (WEB + "    outlierDetection: {maxServerErrors: 1}\n",
         "services.web.outlierDetection.interval", "missing", 5),
        ("app: shop\nservices:\n  web:\n    versions:\n      v1: {weight: 50}\n",
         "services.web.versions.v1.command", "missing; give the version a command", 5),
        (WEB + "    versions:\n      v1: {weight: 50}\n"
         "      v2: {}\n", "services.web.versions.v2", "weight: missing", 7),
        (WEB + "    versions:\n      v1: {weight: 90}\n"
         "      v2: {weight: 20}\n", "services.web.versions", "add up to 110", 5),
        (WEB + "    versions:\n      v1: {weight: 0}\n",
         "services.web.versions", "every weight is 0", 5),
        ("app: shop\nservices:\n  web-v1: {command: x}\n  web:\n    command: x\n"
         "    versions: {v1: {}}\n", "services.web", "would be named 'web-v1'", 4),
        ("app: shop\ngateway: {routes: []}" + SVC, "gateway.routes",
         "needs a list of routes", 2),
        ("app: shop\ngateway: {routes: [{prefix: /, service: wbe}]}" + SVC,
         "gateway.routes[0].service", "'wbe' is not a service in this file (did you mean", 2),
        ("app: shop\ngateway: {routes: [{prefix: api, service: web}]}" + SVC,
         "gateway.routes[0].prefix", "must start with '/'", 2),
        ("app: shop\ngateway: {port: 70000, routes: [{prefix: /, service: web}]}\n"
         "services:\n  web: {command: x}\n", "gateway.port", "must be at most 65535", 2),
        ("app: shop\nservices:\n  web: {command: x\n", "", "not valid YAML", 4),
        ("app: shop\negressFilter: allow" + SVC, "egressFilter", "must be DROP_ALL or", 2),
    ],
)  # fmt: skip
def test_errors_name_the_field_and_line(
    text: str, field: str, message: str, line: int | None
) -> None:
    if not message:  # a valid variant of the cases around it
        parse(text)
        return
    with pytest.raises(AppFileError) as caught:
        parse(text, "app.yaml")
    error = caught.value
    assert (error.field, error.line) == (field, line), str(error)
    assert message in error.message
    where = f"app.yaml:{line}" if line else "app.yaml"
    assert str(error).startswith(f"{where}: {field + ': ' if field else ''}")


def test_the_base_file_is_valid() -> None:
    assert [s.name for s in parse(BASE).services] == ["web", "db"]


def test_a_gateway_route_can_keep_or_replace_the_prefix() -> None:
    text = textwrap.dedent("""\
        app: shop
        gateway:
          routes:
            - {prefix: /api/, service: web, rewrite: false}
            - {prefix: /v1/, service: web, rewrite: /v2/}
        services:
          web: {command: x}
    """)
    gateway = parse(text).gateway
    assert gateway is not None
    assert [r.rewrite for r in gateway.routes] == [None, "/v2/"]
