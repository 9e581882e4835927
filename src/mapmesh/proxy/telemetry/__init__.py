"""The data plane's signals beyond counters: traffic edges, traces, events, and their export.

In the order a request meets them:

* :mod:`.tracing` — the trace context of a request (W3C ``traceparent``, X-Ray's
  ``X-Amzn-Trace-Id``), the sampling decision, and the :class:`~.tracing.Trace` of a sampled
  request (its server span and one client span per upstream attempt);
* :mod:`.recorder` — :class:`~.recorder.ListenerTelemetry`, what a listener records when a
  response ends: its traffic edge, latency histograms, response flags, spans;
* :mod:`.edges` — traffic edges (listener, destination, cluster): cumulative counts that
  ``/stats`` sums per listener and the reporter turns into windows;
* :mod:`.spans` — finished spans, the bounded buffers that hold them for an exporter, and the
  control plane's span document;
* :mod:`.events` — ejections, returns, health transitions and config versions, bounded;
* :mod:`.reporter` — ``POST /v1/telemetry`` to the control plane every interval;
* :mod:`.otlp` — spans as OTLP/HTTP JSON to any collector;
* :mod:`.runtime` — :class:`~.runtime.ProxyTelemetry`, which wires the above in a process.

Only :mod:`.tracing` and :mod:`.recorder` run per request; the rest runs per report. Nothing
here is imported by this package's ``__init__``, so :mod:`mapmesh.proxy.stats` may use
:mod:`.events` without an import cycle.
"""
