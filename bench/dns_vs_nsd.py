"""DNS queries/s of mapmesh vs NSD serving the same records, per server core, in one run.

What it does, in order:

1. starts ``mapmesh server`` (every thread pinned to ``--server-cpu``) in a temporary data
   dir and registers the records through the Cloud Map API with boto3: private DNS
   namespace ``corp``; services ``svc00``…``svcNN`` (MULTIVALUE, A+SRV, TTL 10) with
   ``--instances`` instances each; and ``api`` (A only, one instance) — the headline query;
2. writes an NSD zone file with the same names, records and TTLs (SOA, NS, the A and SRV
   records, and the A records of the SRV targets ``<instance>.<service>.corp``) and an
   ``nsd.conf`` (one server process, response rate limiting off, its own pid/xfrd/zone-list
   files, no database) and starts ``nsd -d`` pinned to the same core;
3. asks both servers every name of the query file (dnspython) and stops unless their
   answer sections are equal (authority/additional differences are reported);
4. runs ``dnsperf`` pinned to ``--client-cpu`` against each server in turn, ``--rounds``
   times, alternating which goes first, and measures the CPU time each server used
   during its run (scheduler run time of every thread of its process tree);
5. prints a table, the ratio mapmesh/NSD per round and its median, and writes
   ``bench/results/dns_vs_nsd-<time>.json``.

Per server core. Each server owns one core, so with a saturated server queries/s *is*
queries/s per core. On a 2-core box one dnsperf core cannot saturate NSD (nor quite
mapmesh), so the headline figure is queries per second of server CPU time — queries/s
divided by the share of its core the server used — and the ratio of those; the raw
queries/s ratio is printed too, with a warning when a server was not saturated.
``--server-quota 0.5`` cross-checks this by capping each server at half a core (cgroup CFS
quota) so that the server, not dnsperf, is the bottleneck; note that mapmesh's threads
got only ~0.42 of a 0.5 quota in our runs (see docs/benchmarks.md).

Run from the repository root: ``.venv/bin/python -m bench.dns_vs_nsd --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from bench import (
    CpuQuota,
    CpuSample,
    Processes,
    Spawned,
    cloudmap_client,
    free_port,
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

ZONE = "corp"
HEADLINE = "api"
SERVERS = ("mapmesh", "nsd")
TTL = 10
SOA_TTL = 60
SRV_PRIORITY = 1
SRV_WEIGHT = 1


# -- the records both servers serve -----------------------------------------------------


@dataclass(frozen=True)
class InstanceSpec:
    id: str
    ipv4: str
    port: int


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    instances: tuple[InstanceSpec, ...]
    srv: bool

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{ZONE}"


def build_services(services: int, instances: int) -> list[ServiceSpec]:
    result = [ServiceSpec(HEADLINE, (InstanceSpec("api-0", "10.1.0.1", 8080),), srv=False)]
    for s in range(services):
        members = tuple(
            InstanceSpec(f"i{i}", f"10.{2 + s // 250}.{s % 250}.{i + 1}", 8080 + i)
            for i in range(instances)
        )
        result.append(ServiceSpec(f"svc{s:02d}", members, srv=True))
    return result


def query_mix(services: Sequence[ServiceSpec], mix: str, seed: int = 1) -> list[tuple[str, str]]:
    """The dnsperf input: (name, type) lines, shuffled reproducibly.

    ``mixed``: per SRV service 3 A + 2 SRV queries, plus as many queries for the headline
    A record as all of those together — 50% headline A, 30% other A, 20% SRV.
    ``headline``: only ``api.corp A``.
    """
    if mix == "headline":
        return [(f"{HEADLINE}.{ZONE}", "A")]
    lines: list[tuple[str, str]] = []
    others = [s for s in services if s.srv]
    for service in others:
        lines += [(service.fqdn, "A")] * 3 + [(service.fqdn, "SRV")] * 2
    lines += [(f"{HEADLINE}.{ZONE}", "A")] * (5 * len(others) or 1)
    random.Random(seed).shuffle(lines)
    return lines


def nsd_zone(services: Sequence[ServiceSpec]) -> str:
    lines = [
        f"$ORIGIN {ZONE}.",
        f"@ {SOA_TTL} IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 7200 900 1209600 86400",
        f"@ {SOA_TTL} IN NS ns.{ZONE}.",
        f"ns {SOA_TTL} IN A 127.0.0.1",
    ]
    for service in services:
        for i in service.instances:
            lines.append(f"{service.name} {TTL} IN A {i.ipv4}")
        if service.srv:
            for i in service.instances:
                target = f"{i.id}.{service.name}.{ZONE}."
                lines.append(
                    f"{service.name} {TTL} IN SRV {SRV_PRIORITY} {SRV_WEIGHT} {i.port} {target}"
                )
                lines.append(f"{i.id}.{service.name} {TTL} IN A {i.ipv4}")
    return "\n".join(lines) + "\n"


def nsd_conf(workdir: Path, port: int, minimal_responses: bool) -> str:
    return f"""\
server:
    ip-address: 127.0.0.1@{port}
    do-ip4: yes
    do-ip6: no
    server-count: 1
    reuseport: no
    username: ""
    chroot: ""
    zonesdir: "{workdir}"
    database: ""
    zonelistfile: "{workdir}/zone.list"
    pidfile: "{workdir}/nsd.pid"
    xfrdfile: "{workdir}/xfrd.state"
    xfrdir: "{workdir}"
    logfile: "{workdir}/nsd.log"
    verbosity: 0
    hide-version: yes
    minimal-responses: {"yes" if minimal_responses else "no"}
    # response rate limiting off (nsd 4.6 is built with --enable-ratelimit)
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    rrl-slip: 0
remote-control:
    control-enable: no
zone:
    name: {ZONE}
    zonefile: "{workdir}/{ZONE}.zone"
"""


def seed_mapmesh(api_url: str, services: Sequence[ServiceSpec]) -> None:
    sd = cloudmap_client(api_url)
    op = sd.create_private_dns_namespace(
        Name=ZONE, Vpc="vpc-bench", Properties={"DnsProperties": {"SOA": {"TTL": SOA_TTL}}}
    )["OperationId"]
    namespace_id = wait_operation(sd, op)["Targets"]["NAMESPACE"]
    pending: list[str] = []
    for service in services:
        records = [{"Type": "A", "TTL": TTL}] + ([{"Type": "SRV", "TTL": TTL}] * service.srv)
        service_id = sd.create_service(
            Name=service.name,
            NamespaceId=namespace_id,
            DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": records},
        )["Service"]["Id"]
        for i in service.instances:
            pending.append(
                sd.register_instance(
                    ServiceId=service_id,
                    InstanceId=i.id,
                    Attributes={"AWS_INSTANCE_IPV4": i.ipv4, "AWS_INSTANCE_PORT": str(i.port)},
                )["OperationId"]
            )
    for op_id in pending:
        wait_operation(sd, op_id)


# -- checking that both serve the same answers ------------------------------------------


def _rrset_lines(section: Sequence[Any]) -> list[str]:
    return sorted(
        f"{rrset.name} {rrset.ttl} {rd.to_text()}".lower()
        + f" {dns.rdatatype.to_text(rrset.rdtype)}"
        for rrset in section
        for rd in rrset
    )


@dataclass
class Reply:
    rcode: str
    aa: bool
    answer: list[str]
    authority: list[str]
    additional: list[str]
    size: int


def ask(port: int, name: str, rdtype: str, timeout: float = 1.0) -> Reply:
    query = dns.message.make_query(name, rdtype)
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)
    return Reply(
        rcode=dns.rcode.to_text(response.rcode()),
        aa=bool(response.flags & dns.flags.AA),
        answer=_rrset_lines(response.answer),
        authority=_rrset_lines(response.authority),
        additional=_rrset_lines(response.additional),
        size=len(response.to_wire()),
    )


def wait_answering(port: int, name: str, server: Spawned, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        server.check_alive()
        with contextlib.suppress(Exception):
            if ask(port, name, "A", timeout=0.3).answer:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} does not answer {name} A:\n{server.log_tail()}")
        time.sleep(0.1)


def compare(
    queries: Sequence[tuple[str, str]], mapmesh_port: int, nsd_port: int, settle: float = 10.0
) -> list[dict[str, Any]]:
    """Per distinct query: both replies; raises if the answer sections differ."""
    report: list[dict[str, Any]] = []
    for name, rdtype in sorted(set(queries)):
        deadline = time.monotonic() + settle
        while True:  # the DNS table is rebuilt asynchronously after registration
            ours, theirs = ask(mapmesh_port, name, rdtype), ask(nsd_port, name, rdtype)
            same = (ours.rcode, ours.answer) == (theirs.rcode, theirs.answer)
            if same or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        report.append(
            {
                "query": f"{name} {rdtype}",
                "same_answer": same,
                "same_authority": ours.authority == theirs.authority,
                "same_additional": ours.additional == theirs.additional,
                "mapmesh": asdict(ours),
                "nsd": asdict(theirs),
            }
        )
        if not same:
            raise RuntimeError(
                f"answers differ for {name} {rdtype}:\n  mapmesh {ours}\n  nsd     {theirs}"
            )
    return report


# -- load ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSettings:
    duration: float
    clients: int
    outstanding: int
    max_qps: int
    threads: int
    timeout: float
    server_cpu: int
    client_cpu: int
    wait_quiet: float = 0.0  # seconds to wait for idle cores before a run

    def argv(self, port: int, query_file: Path, duration: float) -> list[str]:
        return [
            "taskset", "-c", str(self.client_cpu),
            "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(query_file),
            "-l", f"{duration:g}", "-c", str(self.clients), "-T", str(self.threads),
            "-q", str(self.outstanding), "-Q", str(self.max_qps), "-t", f"{self.timeout:g}",
        ]  # fmt: skip


@dataclass
class Run:
    round: int
    server: str
    qps: float = 0.0
    sent: int = 0
    completed: int = 0
    lost: int = 0
    avg_latency_ms: float = 0.0
    max_latency_ms: float = 0.0
    stddev_latency_ms: float = 0.0
    response_bytes: float = 0.0
    run_seconds: float = 0.0
    server_cpu: float = 0.0  # fraction of one core the server used during the run
    client_cpu: float = 0.0  # same for dnsperf
    server_other: float = 0.0  # anything else on the server's core (noise)
    client_other: float = 0.0  # anything else on the load generator's core
    throttled: float = 0.0  # share of CFS periods in which the server hit its CPU quota
    rcvbuf_drops: int = 0  # UDP datagrams the kernel dropped for a full receive buffer
    rcodes: str = ""

    @property
    def qps_per_cpu(self) -> float:
        return self.qps / self.server_cpu if self.server_cpu else 0.0


_NUMBER = r"([0-9.]+)"


def parse_dnsperf(text: str, run: Run) -> Run:
    def grab(pattern: str) -> str | None:
        found = re.search(pattern, text)
        return found.group(1) if found else None

    run.sent = int(grab(r"Queries sent:\s+(\d+)") or 0)
    run.completed = int(grab(r"Queries completed:\s+(\d+)") or 0)
    run.lost = int(grab(r"Queries lost:\s+(\d+)") or 0)
    run.qps = float(grab(r"Queries per second:\s+" + _NUMBER) or 0)
    run.run_seconds = float(grab(r"Run time \(s\):\s+" + _NUMBER) or 0)
    run.avg_latency_ms = 1000 * float(grab(r"Average Latency \(s\):\s+" + _NUMBER) or 0)
    run.max_latency_ms = 1000 * float(grab(r"Average Latency.*max " + _NUMBER) or 0)
    run.stddev_latency_ms = 1000 * float(grab(r"Latency StdDev \(s\):\s+" + _NUMBER) or 0)
    run.response_bytes = float(grab(r"response " + _NUMBER) or 0)
    run.rcodes = (grab(r"Response codes:\s+(.*)") or "").strip()
    if not run.qps:
        raise RuntimeError(f"could not parse dnsperf output:\n{text}")
    return run


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full socket receive buffer."""
    lines = [
        x.split() for x in Path("/proc/net/snmp").read_text().splitlines() if x.startswith("Udp:")
    ]
    return int(dict(zip(lines[0], lines[1], strict=True)).get("RcvbufErrors", 0))


@dataclass
class Target:
    """One server under test: its process (tree), DNS port and optional CPU quota."""

    name: str
    process: Spawned
    port: int
    quota: CpuQuota | None


def measure(target: Target, query_file: Path, load: LoadSettings, run: Run) -> Run:
    if load.wait_quiet > 0:
        wait_for_quiet((load.server_cpu, load.client_cpu), load.wait_quiet)
    target.process.check_alive()
    pid = target.process.pid
    before = CpuSample.take(pid, load.server_cpu, load.client_cpu)
    periods = target.quota.throttled() if target.quota else (0, 0)
    drops = udp_rcvbuf_errors()
    done = subprocess.run(
        load.argv(target.port, query_file, load.duration),
        capture_output=True,
        text=True,
        timeout=load.duration + load.timeout + 30,
        check=False,
    )
    shares = before.shares_until(CpuSample.take(pid, load.server_cpu, load.client_cpu))
    run.rcvbuf_drops = udp_rcvbuf_errors() - drops
    if target.quota:
        after = target.quota.throttled()
        run.throttled = (after[1] - periods[1]) / max(1, after[0] - periods[0])
    if done.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    parse_dnsperf(done.stdout, run)
    run.server_cpu, run.client_cpu = shares.server, shares.client
    run.server_other, run.client_other = shares.server_other, shares.client_other
    return run


def latency_probe(
    port: int, query_file: Path, load: LoadSettings, qps: int, seconds: float
) -> dict[str, Any]:
    """Per-query latency at a fixed, modest rate (dnsperf -v), as percentiles."""
    argv = [
        "taskset", "-c", str(load.client_cpu), "dnsperf", "-s", "127.0.0.1", "-p", str(port),
        "-d", str(query_file), "-l", f"{seconds:g}", "-Q", str(qps), "-v",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    samples = sorted(
        float(m.group(1)) * 1000
        for m in re.finditer(r"^> \S+ \S+ \S+ ([0-9.]+)$", done.stdout, re.M)
    )
    if not samples:
        return {"qps": qps, "samples": 0}

    def pct(p: float) -> float:
        return round(samples[min(len(samples) - 1, int(p / 100 * len(samples)))], 4)

    return {
        "qps": qps,
        "samples": len(samples),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(samples[-1], 4),
    }


# -- orchestration ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.dns_vs_nsd",
        description="DNS queries/s of mapmesh vs NSD on the same records, per server core.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run")
    p.add_argument("--rounds", type=int, default=3, help="rounds, alternating who goes first")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load each")
    p.add_argument("--services", type=int, default=20, help="MULTIVALUE A+SRV services")
    p.add_argument("--instances", type=int, default=4, help="instances per service")
    p.add_argument("--mix", choices=("mixed", "headline"), default="mixed", help="query file")
    p.add_argument("--clients", type=int, default=8, help="dnsperf -c (sockets)")
    p.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    p.add_argument("--max-qps", type=int, default=1_000_000, help="dnsperf -Q")
    p.add_argument("--threads", type=int, default=1, help="dnsperf -T (send/receive pairs)")
    p.add_argument("--timeout", type=float, default=2.0, help="dnsperf -t (query is lost after)")
    p.add_argument("--server-cpu", type=int, default=0, help="core both servers are pinned to")
    p.add_argument("--client-cpu", type=int, default=1, help="core dnsperf is pinned to")
    p.add_argument(
        "--server-quota",
        type=float,
        default=0.0,
        help="cap each server at this fraction of its core (cgroup CFS quota; 0: no cap)",
    )
    p.add_argument(
        "--latency-qps", type=int, default=2000, help="rate of the latency probe (0: skip)"
    )
    p.add_argument("--latency-seconds", type=float, default=3.0, help="length of that probe")
    p.add_argument(
        "--nsd-minimal-responses",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NSD minimal-responses (no NS/glue beyond the answer, as mapmesh)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each run wait up to this many seconds for both cores to be idle",
    )
    p.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, zone)")
    add_flag(p)
    return p.parse_args(argv)


def start_nsd(
    processes: Processes,
    workdir: Path,
    services: Sequence[ServiceSpec],
    *,
    minimal: bool,
    cpu: int,
    quota: CpuQuota | None,
) -> Target:
    port = free_port()
    (workdir / f"{ZONE}.zone").write_text(nsd_zone(services))
    conf = workdir / "nsd.conf"
    conf.write_text(nsd_conf(workdir, port, minimal))
    for check in (
        ["nsd-checkconf", str(conf)],
        ["nsd-checkzone", ZONE, str(workdir / f"{ZONE}.zone")],
    ):
        done = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(check)} failed:\n{done.stdout}{done.stderr}")
    argv = ["nsd", "-d", "-c", str(conf)]
    nsd = processes.spawn("nsd", argv, workdir / "nsd.out", cpu=cpu, cgroup=quota)
    return Target("nsd", nsd, port, quota)


def print_table(runs: Sequence[Run]) -> None:
    """One line per run.

    ``other``: what else ran on each pinned core; ``drops``: datagrams the kernel dropped
    for a full receive buffer (any socket); ``throttled``: CFS periods that hit the quota.
    """
    header = (
        f"{'round':>5} {'server':<8} {'queries/s':>10} {'per cpu-s':>10} {'srv cpu':>7} "
        f"{'other':>5} {'dnsperf':>7} {'other':>5} {'avg ms':>7} {'max ms':>7} "
        f"{'lost':>5} {'drops':>5} {'resp B':>6} {'throttled':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        print(
            f"{r.round:>5} {r.server:<8} {r.qps:>10,.0f} {r.qps_per_cpu:>10,.0f} "
            f"{r.server_cpu:>7.0%} {r.server_other:>5.0%} {r.client_cpu:>7.0%} "
            f"{r.client_other:>5.0%} {r.avg_latency_ms:>7.3f} {r.max_latency_ms:>7.2f} "
            f"{r.lost:>5} {r.rcvbuf_drops:>5} {r.response_bytes:>6.0f} {r.throttled:>9.0%}"
        )


def ratios(runs: Sequence[Run], rounds: int) -> list[dict[str, float]]:
    result = []
    for n in range(1, rounds + 1):
        ours = next(r for r in runs if r.round == n and r.server == "mapmesh")
        theirs = next(r for r in runs if r.round == n and r.server == "nsd")
        result.append(
            {
                "round": n,
                "qps": ours.qps / theirs.qps,
                "qps_per_cpu": ours.qps_per_cpu / theirs.qps_per_cpu if theirs.qps_per_cpu else 0.0,
            }
        )
    return result


def report(
    args: argparse.Namespace, runs: Sequence[Run], latency: dict[str, Any]
) -> dict[str, Any]:
    """Prints the table, per-round and median ratios; returns the summary for the JSON."""
    per_round = ratios(runs, args.rounds)
    summary = {
        "ratios": per_round,
        "median_ratio_qps_per_cpu": median([r["qps_per_cpu"] for r in per_round]),
        "median_ratio_qps": median([r["qps"] for r in per_round]),
        "median_qps": {s: median([r.qps for r in runs if r.server == s]) for s in SERVERS},
        "median_qps_per_cpu": {
            s: median([r.qps_per_cpu for r in runs if r.server == s]) for s in SERVERS
        },
    }
    budget = args.server_quota or 1.0
    print()
    print_table(runs)
    print()
    for r in per_round:
        print(
            f"round {r['round']}: mapmesh/nsd = {r['qps_per_cpu']:.3f}x per server core "
            f"(queries per server CPU-second), {r['qps']:.3f}x raw queries/s"
        )
    print(
        f"median:  mapmesh/nsd = {summary['median_ratio_qps_per_cpu']:.3f}x per server core,"
        f" {summary['median_ratio_qps']:.3f}x raw queries/s (target >= 0.4x, stretch 0.6x)"
    )
    for name, probe in latency.items():
        if probe.get("samples"):
            print(
                f"latency at {probe['qps']} q/s, {name}: p50 {probe['p50_ms']:.3f} ms, "
                f"p99 {probe['p99_ms']:.3f} ms"
            )
    unsaturated = [r for r in runs if r.server_cpu < 0.9 * budget]
    if unsaturated:
        print(
            f"note: {len(unsaturated)} of {len(runs)} runs left the server below 90% of its"
            f" {budget:g} core (dnsperf used {median([r.client_cpu for r in runs]):.0%} of its"
            " core, median): the load generator was the limit there, so raw queries/s"
            " understates that server; per server core (per CPU-second) is the figure to use"
        )
    noisy = [r for r in runs if max(r.server_other, r.client_other) > 0.1]
    if noisy:
        print(
            f"warning: other processes used >10% of a pinned core in {len(noisy)} run(s)"
            " (columns 'other'); rerun with --wait-quiet 120 on a shared machine"
        )
    lost = sum(r.lost for r in runs)
    if lost:
        by_server = {s: sum(r.lost for r in runs if r.server == s) for s in SERVERS}
        print(f"note: lost queries (no reply within {args.timeout:g} s): {by_server}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_tools("nsd", "nsd-checkconf", "nsd-checkzone", "dnsperf", "taskset")
    raise_on_sigterm()
    pin_self(args.client_cpu)
    load = LoadSettings(
        duration=args.duration,
        clients=args.clients,
        outstanding=args.outstanding,
        max_qps=args.max_qps,
        threads=args.threads,
        timeout=args.timeout,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        wait_quiet=args.wait_quiet,
    )
    services = build_services(args.services, args.instances)
    queries = query_mix(services, args.mix)
    runs: list[Run] = []
    latency: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        damon = stack.enter_context(damon_paused(args.keep_damon))
        workdir = stack.enter_context(temp_dir("dns", args.keep_temp))
        quotas = {
            name: stack.enter_context(CpuQuota(f"{workdir.name}-{name}", args.server_quota))
            if args.server_quota
            else None
            for name in SERVERS
        }
        processes = stack.enter_context(Processes())  # stopped before the quotas go
        query_file = workdir / "queries.txt"
        query_file.write_text("".join(f"{name} {rdtype}\n" for name, rdtype in queries))
        print(f"starting mapmesh and nsd (pinned to CPU {args.server_cpu}) in {workdir}")
        process, api_port, dns_port = start_mapmesh(
            processes, workdir / "mapmesh-data", cpu=args.server_cpu, cgroup=quotas["mapmesh"]
        )
        mapmesh = Target("mapmesh", process, dns_port, quotas["mapmesh"])
        seed_mapmesh(f"http://127.0.0.1:{api_port}", services)
        nsd = start_nsd(
            processes,
            workdir,
            services,
            minimal=args.nsd_minimal_responses,
            cpu=args.server_cpu,
            quota=quotas["nsd"],
        )
        for target in (mapmesh, nsd):
            wait_answering(target.port, f"{HEADLINE}.{ZONE}", target.process)
        checked = compare(queries, mapmesh.port, nsd.port)
        extra = [c["query"] for c in checked if not c["same_additional"] or not c["same_authority"]]
        print(
            f"verified {len(checked)} distinct queries: same answer sections"
            + (f"; authority/additional differ for {len(extra)}" if extra else "")
        )
        targets = {"mapmesh": mapmesh, "nsd": nsd}
        if args.warmup > 0:
            warm = dataclasses.replace(load, duration=args.warmup, wait_quiet=0.0)
            for target in targets.values():
                measure(target, query_file, warm, Run(0, target.name))
        for n in range(1, args.rounds + 1):
            for name in SERVERS if n % 2 else reversed(SERVERS):
                runs.append(measure(targets[name], query_file, load, Run(n, name)))
                print(f"  round {n} {name:<8} {runs[-1].qps:>10,.0f} q/s")
        if args.latency_qps > 0:
            for name, target in targets.items():
                latency[name] = latency_probe(
                    target.port, query_file, load, args.latency_qps, args.latency_seconds
                )
    summary = report(args, runs, latency)
    path = write_result(
        "dns_vs_nsd",
        {
            "benchmark": "dns_vs_nsd",
            "settings": {
                **vars(args),
                "dnsperf_argv": load.argv(0, Path("queries.txt"), load.duration),
            },
            "query_mix": {f"{n} {t}": queries.count((n, t)) for n, t in sorted(set(queries))},
            "machine": machine_info({"nsd": ["nsd", "-v"], "dnsperf": ["dnsperf", "-H"]}, damon),
            "verification": checked,
            "runs": [{**asdict(run), "qps_per_cpu": run.qps_per_cpu} for run in runs],
            "latency_probe": latency,
            **summary,
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
