"""DiscoverInstances requests/s against ``mapmesh server``, next to the HTTP stack's floor.

What it does, in order:

1. starts ``mapmesh server`` (every thread pinned to ``--server-cpu``) in a temporary data
   dir and registers, with boto3, private DNS namespace ``corp``, service ``worker``
   (MULTIVALUE A+SRV, TTL 10) and ``--instances`` instances, three in four with
   ``env=prod`` and the rest ``env=staging``;
2. checks one DiscoverInstances call returns exactly the ``env=prod`` instances;
3. runs ``wrk`` (pinned to ``--client-cpu``, a Lua script generated into the temp dir) in
   ``--rounds`` rounds, each measuring in turn (alternating who goes first):
   * ``discover`` — JSON 1.1 ``POST /`` with
     ``X-Amz-Target: Route53AutoNaming_v20170314.DiscoverInstances`` and body
     ``{"NamespaceName":"corp","ServiceName":"worker","QueryParameters":{"env":"prod"}}``;
   * ``healthz`` — ``GET /healthz``, the cheapest request the same server answers: the
     floor of its HTTP stack, so the ratio discover/healthz shows what the API itself costs;
4. as a second figure, times ``--boto-calls`` sequential ``discover_instances`` calls from
   one boto3 client (this process, pinned to the client core): what one SDK user sees;
5. prints a table, the per-round ratio discover/healthz and its median, and writes
   ``bench/results/discover-<time>.json``.

Run from the repository root: ``.venv/bin/python -m bench.discover --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import (
    CpuSample,
    Processes,
    Spawned,
    cloudmap_client,
    machine_info,
    median,
    pin_self,
    raise_on_sigterm,
    require_tools,
    start_mapmesh,
    temp_dir,
    wait_for_quiet,
    wait_operation,
    write_result,
)
from bench.damon import add_flag, damon_paused

TARGET = "Route53AutoNaming_v20170314.DiscoverInstances"
CONTENT_TYPE = "application/x-amz-json-1.1"
BODY = {"NamespaceName": "corp", "ServiceName": "worker", "QueryParameters": {"env": "prod"}}

# wrk's done() hook prints one machine-readable line; latencies are in microseconds.
_DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"bytes\\":%d,"
    .. "\\"connect_errors\\":%d,\\"read_errors\\":%d,\\"write_errors\\":%d,"
    .. "\\"status_errors\\":%d,\\"timeouts\\":%d,\\"mean_us\\":%.1f,"
    .. "\\"p50_us\\":%d,\\"p90_us\\":%d,\\"p99_us\\":%d,\\"p999_us\\":%d,\\"max_us\\":%d}\\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def discover_script() -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {_lua_string(json.dumps(BODY, separators=(',', ':')))}\n"
        f'wrk.headers["Content-Type"] = "{CONTENT_TYPE}"\n'
        f'wrk.headers["X-Amz-Target"] = "{TARGET}"\n' + _DONE_HOOK
    )


def healthz_script() -> str:
    return 'wrk.method = "GET"\n' + _DONE_HOOK


# -- setup ----------------------------------------------------------------------------------


def seed(api_url: str, instances: int) -> set[str]:
    """Registers the namespace, service and instances; returns the ids ``env=prod`` selects."""
    sd = cloudmap_client(api_url)
    op = sd.create_private_dns_namespace(Name="corp", Vpc="vpc-bench")["OperationId"]
    namespace_id = wait_operation(sd, op)["Targets"]["NAMESPACE"]
    service_id = sd.create_service(
        Name="worker",
        NamespaceId=namespace_id,
        DnsConfig={
            "RoutingPolicy": "MULTIVALUE",
            "DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}],
        },
    )["Service"]["Id"]
    prod: set[str] = set()
    for i in range(instances):
        env = "staging" if i % 4 == 3 else "prod"
        instance_id = f"worker-{i}"
        op = sd.register_instance(
            ServiceId=service_id,
            InstanceId=instance_id,
            Attributes={
                "AWS_INSTANCE_IPV4": f"10.0.0.{i + 1}",
                "AWS_INSTANCE_PORT": str(8080 + i),
                "env": env,
                "zone": f"az-{i % 3}",
            },
        )["OperationId"]
        wait_operation(sd, op)
        if env == "prod":
            prod.add(instance_id)
    return prod


def discover_once(api_url: str) -> dict[str, Any]:
    request = urllib.request.Request(
        api_url + "/",
        data=json.dumps(BODY).encode(),
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def check_discover(api_url: str, expected: set[str]) -> int:
    """Fails unless DiscoverInstances returns exactly ``expected``; returns the body size."""
    deadline = time.monotonic() + 10
    while True:
        found = {i["InstanceId"] for i in discover_once(api_url)["Instances"]}
        if found == expected:
            return len(json.dumps(discover_once(api_url)))
        if time.monotonic() > deadline:
            raise RuntimeError(f"DiscoverInstances returned {sorted(found)}, not {expected}")
        time.sleep(0.1)


# -- load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSettings:
    duration: float
    connections: int
    threads: int
    server_cpu: int
    client_cpu: int
    wait_quiet: float = 0.0  # seconds to wait for idle cores before a run

    def argv(self, url: str, script: Path, duration: float) -> list[str]:
        return [
            "taskset", "-c", str(self.client_cpu),
            "wrk", "-t", str(self.threads), "-c", str(self.connections),
            "-d", f"{max(1, round(duration))}s", "--timeout", "5s", "-s", str(script), url,
        ]  # fmt: skip


@dataclass
class Run:
    round: int
    target: str
    rps: float = 0.0
    requests: int = 0
    errors: int = 0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    server_cpu: float = 0.0  # fraction of one core the server used during the run
    client_cpu: float = 0.0  # same for wrk
    server_other: float = 0.0  # anything else on the server's core (noise)
    client_other: float = 0.0  # anything else on the load generator's core

    @property
    def rps_per_cpu(self) -> float:
        return self.rps / self.server_cpu if self.server_cpu else 0.0


def parse_wrk(text: str, run: Run) -> Run:
    line = next((x for x in text.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"no summary in wrk output:\n{text}")
    data = json.loads(line.removeprefix("WRKJSON "))
    run.requests = int(data["requests"])
    run.rps = run.requests / (data["duration_us"] / 1e6)
    run.errors = sum(
        int(data[k])
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    run.mean_ms = data["mean_us"] / 1000
    for key in ("p50", "p90", "p99", "max"):
        setattr(run, f"{key}_ms", data[f"{key}_us"] / 1000)
    return run


def measure(
    server: Spawned, url: str, script: Path, load: LoadSettings, duration: float, run: Run
) -> Run:
    if load.wait_quiet > 0:
        wait_for_quiet((load.server_cpu, load.client_cpu), load.wait_quiet)
    server.check_alive()
    before = CpuSample.take(server.pid, load.server_cpu, load.client_cpu)
    done = subprocess.run(
        load.argv(url, script, duration),
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    shares = before.shares_until(CpuSample.take(server.pid, load.server_cpu, load.client_cpu))
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    parse_wrk(done.stdout, run)
    run.server_cpu, run.client_cpu = shares.server, shares.client
    run.server_other, run.client_other = shares.server_other, shares.client_other
    return run


def boto3_sequential(api_url: str, calls: int, max_seconds: float) -> dict[str, Any]:
    """One SDK client, one call at a time: requests/s and latency as the caller sees them."""
    sd = cloudmap_client(api_url)
    kwargs = {"NamespaceName": "corp", "ServiceName": "worker", "QueryParameters": {"env": "prod"}}
    for _ in range(20):  # warm: connection, botocore's model loading
        sd.discover_instances(**kwargs)
    samples: list[float] = []
    started = time.perf_counter()
    deadline = started + max_seconds
    while len(samples) < calls and time.perf_counter() < deadline:
        before = time.perf_counter()
        sd.discover_instances(**kwargs)
        samples.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    samples.sort()

    def pct(p: float) -> float:
        return round(1000 * samples[min(len(samples) - 1, int(p / 100 * len(samples)))], 3)

    return {
        "calls": len(samples),
        "seconds": round(elapsed, 3),
        "rps": round(len(samples) / elapsed, 1),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


# -- orchestration ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.discover",
        description="DiscoverInstances requests/s vs the same server's GET /healthz.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3, help="rounds, alternating who goes first")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load each")
    p.add_argument("--instances", type=int, default=8, help="instances (3 in 4 are env=prod)")
    p.add_argument("--connections", type=int, default=32, help="wrk -c")
    p.add_argument("--threads", type=int, default=1, help="wrk -t")
    p.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to")
    p.add_argument("--client-cpu", type=int, default=1, help="core wrk and boto3 run on")
    p.add_argument("--boto-calls", type=int, default=2000, help="sequential boto3 calls")
    p.add_argument("--boto-seconds", type=float, default=30.0, help="upper bound on those")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each run wait up to this many seconds for both cores to be idle",
    )
    p.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, scripts)")
    add_flag(p)
    return p.parse_args(argv)


def print_table(runs: Sequence[Run]) -> None:
    """One line per run; ``other`` columns show what else ran on each pinned core."""
    header = (
        f"{'round':>5} {'request':<9} {'req/s':>8} {'per cpu-s':>9} {'srv cpu':>7} "
        f"{'other':>5} {'wrk cpu':>7} {'other':>5} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        print(
            f"{r.round:>5} {r.target:<9} {r.rps:>8,.0f} {r.rps_per_cpu:>9,.0f} "
            f"{r.server_cpu:>7.0%} {r.server_other:>5.0%} {r.client_cpu:>7.0%} "
            f"{r.client_other:>5.0%} {r.p50_ms:>7.2f} {r.p90_ms:>7.2f} {r.p99_ms:>7.2f} "
            f"{r.max_ms:>7.1f} {r.errors:>6}"
        )


def report(args: argparse.Namespace, runs: Sequence[Run], boto: dict[str, Any]) -> dict[str, Any]:
    """Prints the table, per-round and median ratios; returns the summary for the JSON."""
    per_round = []
    for n in range(1, args.rounds + 1):
        by = {r.target: r for r in runs if r.round == n}
        discover, healthz = by["discover"], by["healthz"]
        per_cpu = discover.rps_per_cpu / healthz.rps_per_cpu if healthz.rps_per_cpu else 0.0
        per_round.append(
            {"round": n, "ratio": discover.rps / healthz.rps, "ratio_per_cpu": per_cpu}
        )
    targets = ("discover", "healthz")
    summary: dict[str, Any] = {
        "ratios": per_round,
        "median_rps": {t: median([r.rps for r in runs if r.target == t]) for t in targets},
        "median_rps_per_cpu": {
            t: median([r.rps_per_cpu for r in runs if r.target == t]) for t in targets
        },
        "median_ratio": median([r["ratio"] for r in per_round]),
        "median_ratio_per_cpu": median([r["ratio_per_cpu"] for r in per_round]),
    }
    med = summary["median_rps"]
    print()
    print_table(runs)
    print()
    for r in per_round:
        print(
            f"round {r['round']}: discover/healthz = {r['ratio']:.3f}x req/s, "
            f"{r['ratio_per_cpu']:.3f}x per server CPU-second"
        )
    print(
        f"median: DiscoverInstances {med['discover']:,.0f} req/s, /healthz {med['healthz']:,.0f}"
        f" req/s; ratio {summary['median_ratio']:.3f}x"
        f" ({summary['median_ratio_per_cpu']:.3f}x per server CPU-second);"
        f" wrk -t {args.threads} -c {args.connections}"
    )
    print(
        f"boto3, one sequential client: {boto['rps']:,.0f} req/s over {boto['calls']} calls, "
        f"p50 {boto['p50_ms']:.2f} ms, p99 {boto['p99_ms']:.2f} ms"
    )
    noisy = [r for r in runs if max(r.server_other, r.client_other) > 0.1 or r.errors]
    if noisy:
        print(
            f"warning: {len(noisy)} run(s) had errors or >10% other load on a pinned core;"
            " rerun with --wait-quiet 120 on a shared machine"
        )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_tools("wrk", "taskset")
    raise_on_sigterm()
    pin_self(args.client_cpu)
    load = LoadSettings(
        duration=args.duration,
        connections=args.connections,
        threads=args.threads,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        wait_quiet=args.wait_quiet,
    )
    runs: list[Run] = []
    with (
        damon_paused(args.keep_damon) as damon,
        temp_dir("discover", args.keep_temp) as workdir,
        Processes() as processes,
    ):
        scripts = {"discover": workdir / "discover.lua", "healthz": workdir / "healthz.lua"}
        scripts["discover"].write_text(discover_script())
        scripts["healthz"].write_text(healthz_script())
        print(f"starting mapmesh (pinned to CPU {args.server_cpu}) in {workdir}")
        server, api_port, _ = start_mapmesh(processes, workdir / "data", cpu=args.server_cpu)
        api_url = f"http://127.0.0.1:{api_port}"
        expected = seed(api_url, args.instances)
        body_bytes = check_discover(api_url, expected)
        print(f"DiscoverInstances returns the {len(expected)} env=prod instances")
        urls = {"discover": api_url + "/", "healthz": api_url + "/healthz"}
        warm = dataclasses.replace(load, wait_quiet=0.0)
        for target in ("discover", "healthz"):
            if args.warmup > 0:
                measure(server, urls[target], scripts[target], warm, args.warmup, Run(0, target))
        for n in range(1, args.rounds + 1):
            for target in ("discover", "healthz") if n % 2 else ("healthz", "discover"):
                run = measure(server, urls[target], scripts[target], load, args.duration,
                              Run(n, target))  # fmt: skip
                runs.append(run)
                print(f"  round {n} {target:<8} {run.rps:>8,.0f} req/s")
        boto = boto3_sequential(api_url, args.boto_calls, args.boto_seconds)
    summary = report(args, runs, boto)
    path = write_result(
        "discover",
        {
            "benchmark": "discover",
            "settings": {**vars(args), "wrk_argv": load.argv("URL", Path("script.lua"), 0)},
            "request_body": BODY,
            "response_bytes": body_bytes,
            "machine": machine_info({"wrk": ["wrk", "-v"]}, damon),
            "runs": [{**asdict(r), "rps_per_cpu": r.rps_per_cpu} for r in runs],
            **summary,
            "boto3_sequential": boto,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except RuntimeError as exc:
        sys.exit(f"error: {exc}")
