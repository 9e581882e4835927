"""The proxy's metrics: histograms, status classes, flags, and what a response records.

``/stats`` is Prometheus text; every series is declared in ``METRICS``. A listener's
``downstream_rq_xx`` and ``downstream_rq_time`` are summed from its traffic edges, which the
recorder updates once per response — looking the edge up only when the connection's
destination or cluster changes.
"""

from __future__ import annotations

import bisect
import random
import re

import pytest

from mapmesh.model import snapshot
from mapmesh.proxy.cluster import ClusterRuntime
from mapmesh.proxy.stats import BOUNDS_S, LATENCY_BOUNDS_MS, METRICS, Histogram, Stats
from mapmesh.proxy.telemetry.edges import EdgeSet
from mapmesh.proxy.telemetry.otlp import OtlpExporter
from mapmesh.proxy.telemetry.recorder import ListenerTelemetry
from mapmesh.proxy.telemetry.reporter import Reporter
from mapmesh.proxy.telemetry.spans import Identity, SpanBuffer
from mapmesh.proxy.telemetry.tracing import Trace

CLUSTER = snapshot.Cluster(
    name="demo/worker:8080", virtual_node="worker", port=8080, protocol="http",
    lb_policy="round_robin",
    connection_pool=snapshot.ConnectionPool(max_connections=4, max_pending_requests=4,
                                            max_requests=4),
    outlier_detection=None, health_check=None,
    discovery=snapshot.Discovery(kind="none", ip_preference="IPv4_PREFERRED"),
    endpoints=(snapshot.Endpoint(address="127.0.0.1", port=9, health="HEALTHY"),),
)  # fmt: skip


def test_a_histogram_renders_cumulative_buckets_in_milliseconds() -> None:
    stats = Stats()
    histogram = stats.histogram("upstream_rq_time", (("cluster", "c"),))
    for seconds in (0.0001, 0.0004, 0.003, 0.003, 42.0):
        histogram.observe(seconds)
    lines = stats.render().splitlines()
    assert "# TYPE mapmesh_upstream_rq_time histogram" in lines
    buckets = [line for line in lines if line.startswith("mapmesh_upstream_rq_time_bucket")]
    assert len(buckets) == len(LATENCY_BOUNDS_MS) + 1
    assert buckets[0] == 'mapmesh_upstream_rq_time_bucket{cluster="c",le="0.25"} 1'
    assert buckets[1] == 'mapmesh_upstream_rq_time_bucket{cluster="c",le="0.5"} 2'
    assert 'mapmesh_upstream_rq_time_bucket{cluster="c",le="5"} 4' in buckets
    assert buckets[-2] == 'mapmesh_upstream_rq_time_bucket{cluster="c",le="30000"} 4'
    assert buckets[-1] == 'mapmesh_upstream_rq_time_bucket{cluster="c",le="+Inf"} 5'
    assert 'mapmesh_upstream_rq_time_count{cluster="c"} 5' in lines
    (total,) = [line for line in lines if line.startswith("mapmesh_upstream_rq_time_sum")]
    assert float(total.rsplit(" ", 1)[1]) == pytest.approx(42006.5)


def test_status_classes_and_flags() -> None:
    stats = Stats()
    counts = stats.status_classes("upstream_rq_xx", (("cluster", "c"),),
                                  server_errors="upstream_rq_5xx")  # fmt: skip
    for status in (200, 204, 503, 0):
        counts[status // 100] += 1
    flags = stats.by_flag("downstream_rq_flags", (("listener", "outbound"),))
    flags.add(["UF", "URX"])
    flags.add(["UF"])
    text = stats.render()
    assert 'mapmesh_upstream_rq_xx{cluster="c",code_class="2xx"} 2' in text
    assert 'mapmesh_upstream_rq_xx{cluster="c",code_class="0xx"} 1' in text
    assert 'code_class="4xx"' not in text
    assert 'mapmesh_upstream_rq_5xx{cluster="c"} 1' in text
    assert 'mapmesh_downstream_rq_flags{listener="outbound",flag="UF"} 2' in text
    assert 'mapmesh_downstream_rq_flags{listener="outbound",flag="URX"} 1' in text


def test_listener_series_are_sums_of_its_edges() -> None:
    stats = Stats()
    edges = EdgeSet(stats)
    a = edges.edge("outbound", "outbound", "a.corp", "demo/a:80")
    b = edges.edge("outbound", "outbound", "b.corp", None)
    inbound = edges.edge("inbound", "inbound", "worker", None)
    for edge, status, seconds in ((a, 200, 0.001), (a, 200, 0.002), (b, 404, 0.0001),
                                  (inbound, 200, 0.01)):  # fmt: skip
        edge.status[status // 100] += 1
        edge.latency.observe(seconds)
    text = stats.render()
    assert 'mapmesh_downstream_rq_xx{listener="outbound",code_class="2xx"} 2' in text
    assert 'mapmesh_downstream_rq_xx{listener="outbound",code_class="4xx"} 1' in text
    assert 'mapmesh_downstream_rq_time_count{listener="outbound"} 3' in text
    assert 'mapmesh_downstream_rq_time_count{listener="inbound"} 1' in text


def test_a_response_records_edge_cluster_time_and_flags() -> None:
    stats = Stats()
    edges = EdgeSet(stats)
    listener = ListenerTelemetry("outbound", "outbound", edges, stats)
    runtime = ClusterRuntime(CLUSTER, stats, lambda: 0.0, random.Random(1))
    recorder = listener.recorder()
    for _ in range(3):
        recorder.record(runtime, "worker.corp", 200, 0.011, 0.01, [])
    recorder.record(runtime, "other.corp", 503, 0.011, -1.0, ["UO"])  # no upstream answered
    recorder.record(None, "nowhere.corp", 404, 0.011, -1.0, ["NR"])
    recorder.record(runtime, "worker.corp", 200, 0.011, 0.01, [])
    by_destination = {edge.destination: edge for edge in edges}
    assert sorted(by_destination) == ["nowhere.corp", "other.corp", "worker.corp"]
    assert by_destination["worker.corp"].status[2] == 4
    assert by_destination["other.corp"].flags == {"UO": 1}
    assert by_destination["nowhere.corp"].cluster is None
    text = stats.render()
    assert 'mapmesh_upstream_rq_time_count{cluster="demo/worker:8080"} 4' in text
    assert 'mapmesh_downstream_rq_time_count{listener="outbound"} 6' in text
    assert 'mapmesh_downstream_rq_flags{listener="outbound",flag="UO"} 1' in text
    runtime.close()


def test_a_sampled_request_goes_to_every_exporter_and_is_counted() -> None:
    stats = Stats()
    sinks = (SpanBuffer(10), SpanBuffer(10))
    listener = ListenerTelemetry("outbound", "outbound", EdgeSet(stats), stats, sinks=sinks)
    trace = Trace(b"a" * 32, b"1" * 16, None, b"2" * 16)
    request = (trace, 9.99, 10.01, 200, [], "127.0.0.1:9", "demo/worker:8080", "outbound",
               "worker.corp", b"GET", b"/", b"r-1", 10.0)  # fmt: skip
    listener.traced(request)
    assert [sink.take() for sink in sinks] == [[request], [request]]
    assert 'mapmesh_tracing_requests_sampled{listener="outbound"} 1' in stats.render()


def test_inbound_edges_name_the_node_not_the_local_cluster() -> None:
    stats = Stats()
    edges = EdgeSet(stats)
    listener = ListenerTelemetry("inbound", "inbound", edges, stats, destination="worker")
    runtime = ClusterRuntime(CLUSTER, stats, lambda: 0.0, random.Random(1))
    listener.recorder().record(runtime, None, 200, 0.011, 0.01, [])
    (edge,) = edges
    assert (edge.direction, edge.destination, edge.cluster) == ("inbound", "worker", None)
    runtime.close()


def test_every_series_is_declared() -> None:
    stats = Stats()
    edges = EdgeSet(stats)
    identity = Identity("demo", "virtualNode", "n", "n-1")
    runtime = ClusterRuntime(CLUSTER, stats, lambda: 0.0, random.Random(1))
    listener = ListenerTelemetry("outbound", "outbound", edges, stats)
    listener.recorder().record(runtime, "w", 503, 0.011, 0.01, ["UF"])
    Reporter("http://127.0.0.1:1", identity, edges, stats.events, SpanBuffer(1), stats,
             lambda: None)  # fmt: skip
    OtlpExporter("http://127.0.0.1:1", identity, SpanBuffer(1), stats)
    runtime.stats_rq_xx[2] += 1
    text = stats.render()
    names = set(re.findall(r"^# TYPE mapmesh_(\S+) (\S+)$", text, re.MULTILINE))
    assert names and all(kind != "untyped" for _, kind in names), names
    assert {name for name, _ in names} <= set(METRICS)
    runtime.close()


def test_the_event_log_is_bounded() -> None:
    stats = Stats()
    stats.events.limit = 3
    for number in range(5):
        stats.events.add("health", endpoint=f"10.0.0.{number}:80", healthy=False)
    assert (len(stats.events), stats.events.dropped) == (3, 2)
    taken = stats.events.take(2)
    assert [event[2]["endpoint"] for event in taken] == ["10.0.0.0:80", "10.0.0.1:80"]


def test_a_histogram_buckets_as_the_prometheus_le_bounds_say() -> None:
    rng = random.Random(5)
    values = [
        *BOUNDS_S,
        0.0,
        -1.0,
        1e9,
        *(rng.random() * 10 ** rng.randint(-5, 2) for _ in range(2000)),
    ]
    for value in values:
        histogram = Histogram()
        histogram.observe(value)
        assert histogram.counts.index(1) == bisect.bisect_left(BOUNDS_S, value), value
