"""The control plane's telemetry store: reports in, windows, percentiles, traces and events out.

Time is a number the test moves (the store's injected clock); nothing sleeps.
"""

from __future__ import annotations

from typing import Any

import pytest

from mapmesh.model.registry import HealthStatus
from mapmesh.telemetry import (
    Dropped,
    RegistryEvents,
    ReportError,
    TelemetryStore,
    parse_report,
    percentile,
    read_mesh,
    topology_document,
)
from mapmesh.telemetry.edges import BUCKET_SECONDS, KEEP_SECONDS
from mapmesh.telemetry.report import MAX_EDGES_PER_REPORT
from mapmesh.telemetry.topology import Connected, services_document
from tests.unit.test_compiler import (
    FakeMesh,
    instance,
    walkthrough_mesh,
    walkthrough_registry,
)

BOUNDS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
T0 = 1_764_000_000.0
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def edge(
    destination: str = "worker.corp",
    cluster: str | None = "demo/worker-v1:8080",
    requests: int = 100,
    direction: str = "outbound",
    status: dict[str, int] | None = None,
    counts: list[int] | None = None,
    flags: dict[str, int] | None = None,
) -> dict[str, Any]:
    histogram = counts if counts is not None else [0, 0, requests] + [0] * 11
    return {
        "direction": direction,
        "destination": destination,
        "cluster": cluster,
        "requests": requests,
        "status": status if status is not None else {"2xx": requests},
        "flags": flags or {},
        "latencyMs": {"bounds": BOUNDS, "counts": histogram},
    }


def span(
    span_id: str, parent: str | None, name: str, start: float, end: float, **attributes: Any
) -> dict[str, Any]:
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": "server" if name.startswith("inbound") else "client",
        "start": start,
        "end": end,
        "attributes": attributes,
        "status": "ok",
    }


def body(
    name: str = "frontend",
    instance_id: str = "frontend-1",
    *,
    kind: str = "virtualNode",
    edges: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
    spans: list[dict[str, Any]] | None = None,
    mesh: str = "demo",
) -> dict[str, Any]:
    return {
        "mesh": mesh,
        "kind": kind,
        "name": name,
        "instance": instance_id,
        "configVersion": 42,
        "window": {"start": T0 - 2, "end": T0},
        "edges": edges if edges is not None else [],
        "events": events or [],
        "spans": spans or [],
    }


def ingest(store: TelemetryStore, report: dict[str, Any]) -> None:
    store.ingest(*parse_report(report))


def one_edge(store: TelemetryStore, window: float = 60.0) -> Any:
    found = store.edge_windows("demo", window, lambda key: key)
    assert len(found) <= 1, found
    return next(iter(found.values()), None)


# -- percentiles ---------------------------------------------------------------------------------


def test_percentiles_interpolate_linearly_inside_a_bucket() -> None:
    bounds = (10.0, 20.0, 40.0)
    # 10 requests in (0,10], 10 in (10,20]: the median is the edge between them, and the
    # 75th percentile sits half-way through (10,20].
    assert percentile({bounds: [10, 10, 0, 0]}, 0.5) == pytest.approx(10.0)
    assert percentile({bounds: [10, 10, 0, 0]}, 0.75) == pytest.approx(15.0)
    assert percentile({bounds: [0, 0, 4, 0]}, 0.25) == pytest.approx(25.0)
    assert percentile({bounds: [0, 0, 0, 0]}, 0.5) is None


def test_percentile_past_the_last_bound_reads_as_the_last_bound() -> None:
    assert percentile({(10.0, 20.0): [1, 0, 99]}, 0.99) == pytest.approx(20.0)


def test_histograms_with_other_bounds_merge_as_uniform_intervals() -> None:
    # (0,10] holds 10 from one proxy, (0,20] holds 10 from another: F(10) = 10 + 5 = 15 of 20.
    merged = {(10.0,): [10, 0], (20.0,): [10, 0]}
    assert percentile(merged, 0.75) == pytest.approx(10.0)
    assert percentile(merged, 1.0) == pytest.approx(20.0)


def test_percentiles_of_a_window_merge_every_bucket_and_instance() -> None:
    clock = Clock()
    store = TelemetryStore(clock=clock)
    fast = [0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # (2,5] ms
    slow = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]  # (100,250] ms
    ingest(store, body(edges=[edge(requests=99, counts=fast)]))
    clock.now += BUCKET_SECONDS
    ingest(store, body(instance_id="frontend-2", edges=[edge(requests=1, counts=slow)]))
    window = one_edge(store)
    assert window.requests == 100
    assert 2 < window.p50_ms < 5
    assert window.p99_ms == pytest.approx(5.0)  # the 99th of 100 is the last fast one
    assert one_edge(store).p99_ms < 250


# -- windows, rates and error rates ---------------------------------------------------------------


def test_instances_sum_into_one_edge_and_rates_use_the_requested_window() -> None:
    clock = Clock()
    store = TelemetryStore(clock=clock)
    ingest(store, body(edges=[edge(requests=60)]))
    ingest(store, body(instance_id="frontend-2", edges=[edge(requests=60)]))
    window = one_edge(store, 60)
    assert (window.requests, window.rps) == (120, 2.0)
    assert one_edge(store, 10).rps == 12.0

    # A minute later the 60 s window is empty; the 15 min window still has it.
    clock.now += 61
    assert one_edge(store, 60) is None
    assert one_edge(store, 900).requests == 120
    assert [r.instance for r in store.reporters("demo", "virtualNode", "frontend")] == [
        "frontend-1",
        "frontend-2",
    ]


def test_error_rate_counts_5xx_and_cut_connections_not_4xx() -> None:
    store = TelemetryStore(clock=Clock())
    status = {"2xx": 90, "4xx": 4, "5xx": 4, "0xx": 2}
    ingest(store, body(edges=[edge(requests=100, status=status, flags={"UO": 3})]))
    window = one_edge(store)
    assert window.error_rate == pytest.approx(0.06)
    assert window.status == status | {}
    assert window.flags == {"UO": 3}


def test_fifteen_minutes_are_kept_and_then_forgotten() -> None:
    clock = Clock()
    store = TelemetryStore(clock=clock)
    for _ in range(int(20 * 60 / BUCKET_SECONDS)):  # 20 minutes of reports
        ingest(store, body(edges=[edge(requests=1)]))
        clock.now += BUCKET_SECONDS
    assert store.statistics()["buckets"] <= KEEP_SECONDS / BUCKET_SECONDS
    assert one_edge(store, 900).requests == pytest.approx(450, abs=1)
    clock.now += KEEP_SECONDS + 1
    store.sweep()
    assert store.statistics()["edges"] == 0
    assert store.reporters("demo", "virtualNode", "frontend") == []


def test_new_edges_past_the_limit_are_dropped_and_counted() -> None:
    store = TelemetryStore(clock=Clock(), max_edges=2)
    ingest(store, body(edges=[edge(destination=f"s{i}.corp", cluster=None) for i in range(3)]))
    stats = store.statistics()
    assert (stats["edges"], stats["edges_over_limit"]) == (2, 1)


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "sidecar"}, "kind"),
        ({"mesh": ""}, "mesh"),
        ({"window": {"start": 2, "end": 1}}, "window.end"),
        ({"edges": [edge() | {"requests": -1}]}, "edges[0].requests"),
        ({"edges": [edge() | {"status": {"6xx": 1}}]}, "edges[0].status.6xx"),
        ({"edges": [edge(counts=[1, 2])]}, "edges[0].latencyMs.counts"),
        (
            {"edges": [edge() | {"latencyMs": {"bounds": [2, 1], "counts": [0, 0, 0]}}]},
            "edges[0].latencyMs.bounds",
        ),
        ({"spans": [span("00f067aa0ba902b7", None, "x", 1, 0)]}, "spans[0].end"),
        ({"spans": [span("short", None, "x", 0, 1)]}, "spans[0].spanId"),
        ({"events": [{"time": 1, "type": "Bad Type"}]}, "events[0].type"),
        ({"events": [{"time": 1, "type": "x", "detail": {"k": [1]}}]}, "events[0].detail.k"),
    ],
)
def test_bad_reports_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ReportError) as raised:
        parse_report(body(edges=[edge()]) | change)
    assert raised.value.field == field, str(raised.value)


def test_lists_past_the_caps_are_cut_and_counted() -> None:
    store = TelemetryStore(clock=Clock())
    extra = 5
    edges = [edge(destination=f"s{i}.corp") for i in range(MAX_EDGES_PER_REPORT + extra)]
    report, dropped = parse_report(body(edges=edges))
    assert (len(report.edges), dropped) == (MAX_EDGES_PER_REPORT, Dropped(edges=extra))
    store.ingest(report, dropped)
    assert store.statistics()["dropped_edges"] == extra


# -- traces ---------------------------------------------------------------------------------------


def test_spans_from_two_proxies_assemble_into_one_trace_parent_first() -> None:
    store = TelemetryStore(clock=Clock())
    # The worker's proxy reports first; the frontend's spans arrive later.
    ingest(
        store,
        body(
            "worker-v1",
            "worker-1",
            spans=[
                span(
                    "cccccccccccccccc",
                    "bbbbbbbbbbbbbbbb",
                    "inbound worker",
                    T0 + 0.002,
                    T0 + 0.008,
                    **{"http.status_code": 200},
                )
            ],
        ),
    )
    ingest(
        store,
        body(
            spans=[
                span(
                    "bbbbbbbbbbbbbbbb",
                    "aaaaaaaaaaaaaaaa",
                    "outbound worker.corp",
                    T0 + 0.001,
                    T0 + 0.009,
                ),
                span("aaaaaaaaaaaaaaaa", None, "inbound frontend", T0, T0 + 0.010),
            ]
        ),
    )
    trace = store.traces.get(TRACE.upper())
    assert trace is not None
    summary = trace.summary()
    assert summary["root"] == "inbound frontend"
    assert summary["spans"] == 3
    assert summary["durationMs"] == pytest.approx(10.0)
    assert summary["services"] == ["frontend", "worker-v1"]
    assert summary["error"] is False
    ordered = [(s["name"], s["depth"], s["node"]) for s in trace.wire()["spans"]]
    assert ordered == [
        ("inbound frontend", 0, "frontend"),
        ("outbound worker.corp", 1, "frontend"),
        ("inbound worker", 2, "worker-v1"),
    ]


def test_traces_are_bounded_oldest_evicted_and_spans_capped() -> None:
    store = TelemetryStore(clock=Clock(), max_traces=3, max_spans_per_trace=2)
    for number in range(1, 5):
        trace_id = f"{number:032x}"
        spans = [
            span(f"{number:04x}{s:012x}", None, f"t{number}", T0 + number, T0 + number + 1)
            | {"traceId": trace_id}
            for s in range(1, 4)
        ]
        ingest(store, body(spans=spans))
    assert [t.summary()["root"] for t in store.traces.recent("demo", 10)] == ["t4", "t3", "t2"]
    assert store.traces.get(f"{1:032x}") is None
    assert all(len(t.spans) == 2 for t in store.traces)
    stats = store.statistics()
    assert (stats["traces_evicted"], stats["spans_over_limit"]) == (1, 4)
    assert store.traces.recent("other-mesh", 10) == []


# -- events --------------------------------------------------------------------------------------


def test_events_newest_first_filtered_and_bounded() -> None:
    clock = Clock()
    store = TelemetryStore(clock=clock, max_events=4)
    ejected = {"cluster": "demo/worker-v1:8080", "endpoint": "10.0.0.1:8080", "durationMs": 30000}
    ingest(
        store,
        body(
            events=[
                {"time": T0 - 1, "type": "config", "detail": {"version": 42, "accepted": True}},
                {"time": T0 - 0.5, "type": "ejection", "detail": ejected},
                {"time": 5.0, "type": "health", "detail": {"healthy": False}},  # a wrong clock
            ]
        ),
    )
    store.record_event("registration", "demo", {"instanceId": "i-9"}, at=T0 - 0.5)
    newest = store.events.query(limit=10)
    assert [e.type for e in newest] == ["health", "registration", "ejection", "config"]
    assert newest[0].time == T0  # the wrong clock was replaced by the arrival time
    assert newest[1].wire()["source"] == "control-plane"
    assert newest[2].wire()["source"] == {
        "kind": "virtualNode", "name": "frontend", "instance": "frontend-1",
    }  # fmt: skip
    assert [e.type for e in store.events.query(types=frozenset({"ejection"}))] == ["ejection"]
    assert [e.type for e in store.events.query(since=T0 - 0.6)] == [
        "health", "registration", "ejection",
    ]  # fmt: skip
    assert store.events.query(mesh="other") == []

    # The ring keeps the newest four.
    store.record_event("registration", None, {"instanceId": "i-10"})
    assert len(store.events) == 4
    assert store.statistics()["events_evicted"] == 1
    assert "config" not in {e.type for e in store.events}


def test_ejections_last_until_return_or_their_duration() -> None:
    clock = Clock()
    store = TelemetryStore(clock=clock)
    where = {"cluster": "demo/worker-v1:8080", "endpoint": "10.0.0.1:8080"}
    ingest(store, body(events=[{"time": T0, "type": "ejection", "detail": where}]))
    ingest(
        store,
        body(
            instance_id="frontend-2",
            events=[{"time": T0, "type": "ejection", "detail": where | {"durationMs": 1000}}],
        ),
    )
    assert [e.source.instance for e in store.ejections("demo")] == ["frontend-1", "frontend-2"]
    clock.now += 2  # frontend-2's ejection ran out
    assert [e.source.instance for e in store.ejections("demo")] == ["frontend-1"]
    ingest(store, body(events=[{"time": clock.now, "type": "return", "detail": where}]))
    assert store.ejections("demo") == []


# -- the control plane's own events ----------------------------------------------------------------


def test_registry_changes_become_events_of_the_meshes_that_discover_them() -> None:
    clock = Clock()
    store = TelemetryStore(clock=clock)
    registry = walkthrough_registry()
    watcher = RegistryEvents(registry, FakeMesh(walkthrough_mesh()), store)

    class Change:
        def __init__(self, *services: str, reset: bool = False) -> None:
            self.services = set(services)
            self.reset = reset

    new = instance("i-9", "srv-worker", version="v2", AWS_INSTANCE_IPV4="10.0.0.9",
                   AWS_INSTANCE_PORT="8080")  # fmt: skip
    registry.instances["srv-worker"]["i-9"] = new
    watcher.on_registry_change(Change("srv-worker"))
    registry.instances["srv-worker"]["i-9"] = new.model_copy(
        update={"health_status": HealthStatus.UNHEALTHY, "health_reason": "HTTP 500"}
    )
    watcher.on_registry_change(Change("srv-worker"))
    del registry.instances["srv-worker"]["i-9"]
    watcher.on_registry_change(Change("srv-worker"))
    events = store.events.query(mesh="demo")
    assert [e.type for e in events] == ["deregistration", "health", "registration"]
    registered = events[2].detail
    assert (registered["service"], registered["instanceId"], registered["nodes"]) == (
        "worker", "i-9", ["worker-v2"],
    )  # fmt: skip
    assert registered["address"] == "10.0.0.9"
    assert events[1].detail["reason"] == "HTTP 500"
    assert (events[1].detail["from"], events[1].detail["to"]) == ("HEALTHY", "UNHEALTHY")

    # A reset re-reads without recording anything.
    watcher.on_registry_change(Change(reset=True))
    assert len(store.events) == 3


# -- the read documents --------------------------------------------------------------------------


def test_topology_shows_the_mesh_before_traffic_and_edges_after() -> None:
    clock = Clock()
    store = TelemetryStore(clock=clock)
    model = read_mesh(FakeMesh(walkthrough_mesh()), walkthrough_registry(), "demo")
    quiet = topology_document(model, store, 60, {})
    by_id = {n["id"]: n for n in quiet["nodes"]}
    assert set(by_id) == {
        "virtualNode/frontend", "virtualNode/worker-v1", "virtualNode/worker-v2",
        "virtualGateway/ingress",
    }  # fmt: skip
    # worker-v1: i-1 and i-5 (on the listener's port) healthy, i-2 unhealthy.
    worker = by_id["virtualNode/worker-v1"]
    assert (worker["instances"], worker["healthy"]) == (3, 2)
    assert quiet["edges"] == []

    ingest(
        store,
        body(
            "ingress", "gw-1", kind="virtualGateway",
            edges=[edge(direction="gateway", cluster="demo/worker-v1:8080")],
        ),
    )  # fmt: skip
    ingest(
        store,
        body(
            edges=[
                edge(cluster="demo/worker-v1:8080", requests=30),
                edge(cluster="demo/worker-v1:9090", requests=30),  # another port, same node
                edge(destination="api.example.com:443", cluster=None, requests=5),
                edge(
                    destination="nothing.corp",
                    cluster=None,
                    requests=2,
                    flags={"NR": 2},
                    status={"4xx": 2},
                ),
                edge(direction="inbound", destination="frontend", cluster=None, requests=60),
            ]
        ),
    )
    document = topology_document(model, store, 60, {("virtualGateway", "ingress"): Connected(7, 1)})
    edges = {(e["source"], e["target"]): e for e in document["edges"]}
    assert set(edges) == {
        ("virtualGateway/ingress", "virtualNode/worker-v1"),
        ("virtualNode/frontend", "virtualNode/worker-v1"),
        ("virtualNode/frontend", "external"),
        ("virtualNode/frontend", "virtualService/nothing.corp"),
    }
    assert edges[("virtualNode/frontend", "virtualNode/worker-v1")]["requests"] == 60
    assert edges[("virtualNode/frontend", "virtualNode/worker-v1")]["rps"] == 1.0
    nodes = {n["id"]: n for n in document["nodes"]}
    assert nodes["external"]["kind"] == "external"
    assert nodes["virtualService/nothing.corp"]["kind"] == "virtualService"
    assert nodes["virtualNode/frontend"]["inbound"]["requests"] == 60
    assert nodes["virtualNode/frontend"]["version"] == 42
    gateway = nodes["virtualGateway/ingress"]
    assert (gateway["instances"], gateway["version"]) == (1, 7)


def test_services_list_instances_ejections_routes_and_policies() -> None:
    store = TelemetryStore(clock=Clock())
    model = read_mesh(FakeMesh(walkthrough_mesh()), walkthrough_registry(), "demo")
    where = {"cluster": "demo/worker-v1:8080", "endpoint": "10.0.0.1:8080"}
    ingest(store, body(events=[{"time": T0, "type": "ejection", "detail": where}]))
    document = services_document(model, store, {}, lambda kind, name: {"proxy": name})
    by_id = {s["id"]: s for s in document["services"]}
    worker = by_id["virtualNode/worker-v1"]
    ejected = {i["id"]: i["ejectedBy"] for i in worker["instances"]}
    assert ejected == {
        "i-1": [{"kind": "virtualNode", "name": "frontend", "instance": "frontend-1"}],
        "i-2": [],
        "i-5": [],
    }
    assert worker["routes"] == [
        {
            "kind": "route", "virtualServices": ["worker.corp"], "virtualRouter": "worker-router",
            "route": "worker-route", "weight": 90, "totalWeight": 100, "share": 0.9,
        }
    ]  # fmt: skip
    assert worker["policies"] == {"proxy": "worker-v1"}
    assert by_id["virtualGateway/ingress"]["routes"][0]["virtualServices"] == ["worker.corp"]
    assert by_id["virtualNode/frontend"]["proxies"]["reporting"][0]["configVersion"] == 42
