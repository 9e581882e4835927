"""A proxy process's telemetry, wired: edges, span buffers, reporter, OTLP exporter.

:class:`ProxyTelemetry` is made once per process. Listeners ask it for their
:class:`~.recorder.ListenerTelemetry`; :meth:`ProxyTelemetry.start` runs the reporter (every
``report_interval``) and the OTLP exporter (every second) as tasks; :meth:`ProxyTelemetry.stop`
cancels them and sends one last report and batch — the process calls it after requests
drained, so the last requests are in it.

Spans are only recorded when something exports them: one buffer per exporter (the control
plane's reporter, and the OTLP exporter when ``--otlp-endpoint`` is set).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from mapmesh.proxy.stats import Stats
from mapmesh.proxy.telemetry.edges import EdgeSet
from mapmesh.proxy.telemetry.otlp import OtlpExporter
from mapmesh.proxy.telemetry.recorder import ListenerTelemetry
from mapmesh.proxy.telemetry.reporter import REPORT_INTERVAL, Reporter
from mapmesh.proxy.telemetry.spans import Identity, SpanBuffer
from mapmesh.proxy.telemetry.tracing import DEFAULT_RATE_LIMIT, Sampler

__all__ = [
    "DEFAULT_SAMPLING",
    "OTLP_BUFFER",
    "REPORT_BUFFER",
    "ProxyTelemetry",
    "TelemetryOptions",
]

DEFAULT_SAMPLING = 0.05  # a few percent: full tracing costs CPU and p99 (docs/proxy.md)
REPORT_BUFFER = 500  # traced requests per report interval (about the control plane's cap)
OTLP_BUFFER = 8192  # traced requests waiting for the collector


@dataclass(frozen=True, slots=True)
class TelemetryOptions:
    """``control_plane``: where reports go (None: no reports, no spans for it)."""

    control_plane: str | None = None
    sampling: float = DEFAULT_SAMPLING
    rate_limit: float | None = DEFAULT_RATE_LIMIT  # traces started per second at most
    otlp_endpoint: str | None = None
    report_interval: float = REPORT_INTERVAL


class ProxyTelemetry:
    def __init__(
        self,
        stats: Stats,
        identity: Identity,
        options: TelemetryOptions,
        config_version: Callable[[], int | None],
    ) -> None:
        self.sampler = Sampler(options.sampling, options.rate_limit)
        self.stats = stats
        self.identity = identity
        self.options = options
        self.edges = EdgeSet(stats)
        sinks: list[SpanBuffer] = []
        self.reporter: Reporter | None = None
        if options.control_plane:
            buffer = SpanBuffer(REPORT_BUFFER)
            sinks.append(buffer)
            self.reporter = Reporter(
                options.control_plane, identity, self.edges, stats.events, buffer, stats,
                config_version, interval=options.report_interval,
            )  # fmt: skip
        self.otlp: OtlpExporter | None = None
        if options.otlp_endpoint:
            buffer = SpanBuffer(OTLP_BUFFER)
            sinks.append(buffer)
            self.otlp = OtlpExporter(options.otlp_endpoint, identity, buffer, stats)
        self.sinks = tuple(sinks)
        self._tasks: list[asyncio.Task[None]] = []

    def listener(self, name: str, kind: str, destination: str | None = None) -> ListenerTelemetry:
        """The telemetry of listener ``name`` (kind outbound, inbound or gateway)."""
        return ListenerTelemetry(
            name, kind, self.edges, self.stats,
            sampler=self.sampler, sinks=self.sinks, destination=destination,
        )  # fmt: skip

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.reporter is not None:
            self._tasks.append(loop.create_task(self.reporter.run()))
        if self.otlp is not None:
            self._tasks.append(loop.create_task(self.otlp.run()))

    async def stop(self, *, flush: bool = True, timeout: float = 2.0) -> None:
        """Stop the periodic tasks; with ``flush``, send what is left, each within
        ``timeout`` seconds (a control plane that is down does not hold shutdown up)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded, as the process's own tasks: a lost cancellation must not
            await asyncio.wait(self._tasks, timeout=timeout)  # keep the process alive
            for task in self._tasks:
                if task.done() and not task.cancelled():
                    task.exception()
        self._tasks = []
        if not flush:
            return
        if self.reporter is not None:
            await self.reporter.report(timeout=timeout)
        if self.otlp is not None:
            await self.otlp.export(timeout=timeout)
