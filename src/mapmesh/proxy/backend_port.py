"""A local port per backend: one virtual service's route table, whatever the Host header.

An app that cannot use an HTTP proxy calls ``http://127.0.0.1:9001/path`` instead of
``http://worker.corp/path`` (``mapmesh proxy --backend-port worker.corp=9001``). The listener
on that port runs the ordinary outbound :class:`~mapmesh.proxy.router.Router`; only the
config it is handed differs. :class:`BackendPortConfig` is that listener's config getter: it
returns the config in force with its outbound routes replaced by a :class:`FixedBackend`,
which sends every request to the one table, matching as if the app had called the virtual
service by name. Routing within the table (path, method, headers, query, port) is unchanged.

Cost: the view is rebuilt once per snapshot, when the getter first sees a new config; per
request a :class:`FixedBackend` makes one small match view, nothing else. The HTTP-proxy
listener and its per-request code are untouched.

Semantics:

- ``host`` in the match is the virtual service's name; ``port`` is the provider's listener
  port when it has exactly one (so routes with a port condition match as they would for
  ``http://worker.corp:8080/``), else the port the request addressed, as on the HTTP-proxy
  listener;
- the ``Host`` header is forwarded to the upstream unchanged, as on the HTTP-proxy listener;
- a virtual service that is not a declared backend of the node (now, or after a later
  snapshot) answers 404 naming the reason; the listener still opens, so a snapshot that
  declares the backend later makes the port work without a restart;
- egress passthrough never applies: the port names its backend.

Example::

    getter = BackendPortConfig("worker.corp", 9001, lambda: process.config)
    config = getter()            # the config in force, routed to worker.corp's table
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mapmesh.proxy.config import ProxyConfig
from mapmesh.proxy.route import CompiledRouteTable, NoRoute, OutboundRoutes, RequestHead, RouteHit

__all__ = ["BackendPortConfig", "FixedBackend", "parse_backend_ports"]


class FixedBackend(OutboundRoutes):
    """Outbound routes that ignore the request's host: always ``virtual_service``'s table."""

    __slots__ = ("_fixed", "_missing", "_port", "virtual_service")

    def __init__(
        self, virtual_service: str, table: CompiledRouteTable | None, local_port: int
    ) -> None:
        super().__init__((table,) if table is not None else ())
        self.virtual_service = virtual_service
        self._fixed = table
        ports = table.table.ports if table is not None else ()
        self._port = ports[0] if len(ports) == 1 else None
        self._missing = NoRoute(
            "unknown_host",
            f"{virtual_service} is not a declared backend of this node "
            f"(local port {local_port} is configured for it)",
        )

    def match(self, head: RequestHead) -> RouteHit | NoRoute:
        table = self._fixed
        if table is None:
            return self._missing
        port = self._port if self._port is not None else head.port
        view = RequestHead(
            head.method, head.path, self.virtual_service, port, head.scheme, head.headers
        )
        return table.match(view)

    def __repr__(self) -> str:
        return f"FixedBackend({self.virtual_service!r}, declared={self._fixed is not None})"


class BackendPortConfig:
    """The config getter of one backend port's listener (see the module docstring)."""

    __slots__ = ("_current", "_local_port", "_source", "_view", "virtual_service")

    def __init__(
        self,
        virtual_service: str,
        local_port: int,
        current: Callable[[], ProxyConfig | None],
    ) -> None:
        self.virtual_service = virtual_service.lower()
        self._local_port = local_port
        self._current = current
        self._source: ProxyConfig | None = None
        self._view: ProxyConfig | None = None

    def __call__(self) -> ProxyConfig | None:
        config = self._current()
        if config is not self._source:
            self._source = config
            self._view = None if config is None else self.view(config)
        return self._view

    def view(self, config: ProxyConfig) -> ProxyConfig:
        """``config`` with its outbound routes fixed to this port's virtual service."""
        table = config.outbound.table(self.virtual_service)
        fixed = FixedBackend(self.virtual_service, table, self._local_port)
        return dataclasses.replace(config, outbound=fixed)


def parse_backend_ports(values: list[str]) -> dict[str, int]:
    """``["worker.corp=9001", ...]`` → ``{"worker.corp": 9001}``; errors name the value."""
    ports: dict[str, int] = {}
    for value in values:
        service, sep, raw = value.partition("=")
        service = service.strip().lower()
        raw = raw.strip()
        if not sep or not service or not (raw.isascii() and raw.isdigit()):
            raise ValueError(f"--backend-port expects VIRTUAL_SERVICE=PORT, got {value!r}")
        port = int(raw)
        if not 1 <= port <= 65535:
            raise ValueError(f"--backend-port {value!r}: port must be 1-65535")
        if service in ports:
            raise ValueError(f"--backend-port {value!r}: {service} is given twice")
        if port in ports.values():
            raise ValueError(f"--backend-port {value!r}: port {port} is given twice")
        ports[service] = port
    return ports
