"""Send a bounded burst of requests to the demo's gateway and summarise what came back.

    python examples/demo/load.py                  # 300 requests, 32 at a time
    python examples/demo/load.py -n 200 -c 4      # gentle: watch the 90/10 worker split
    python examples/demo/load.py -n 600 -c 64     # heavy: the worker's circuit breaker sheds load

The summary counts answers by status, the 503s that carry ``x-mapmesh-overloaded: true`` (the
circuit breaker shedding load, not a failure), which worker version ranked each home page, and
latency percentiles. Both the count and the run time are capped, so it always ends. It talks to
the gateway directly, whatever ``HTTP_PROXY`` says.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

OVERLOADED_HEADER = "x-mapmesh-overloaded"
MAX_REQUESTS = 10_000
MAX_CONCURRENCY = 128


@dataclass(frozen=True)
class Outcome:
    """One request's result: ``status`` 0 means no HTTP answer at all (see ``error``)."""

    status: int
    seconds: float
    overloaded: bool = False
    worker: str = ""
    error: str = ""


@dataclass(frozen=True)
class Plan:
    url: str
    requests: int
    concurrency: int
    timeout: float
    max_seconds: float
    token: str


def fetch(opener: urllib.request.OpenerDirector, plan: Plan) -> Outcome:
    request = urllib.request.Request(plan.url, headers={"Accept": "application/json"})
    if plan.token:
        request.add_header("Authorization", f"Bearer {plan.token}")
    started = time.monotonic()
    try:
        with opener.open(request, timeout=plan.timeout) as reply:
            status, headers, body = reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        with error:
            status, headers, body = error.code, error.headers, error.read()
    except OSError as error:
        reason = getattr(error, "reason", error)
        return Outcome(0, time.monotonic() - started, error=str(reason))
    seconds = time.monotonic() - started
    overloaded = headers.get(OVERLOADED_HEADER, "").lower() == "true"
    return Outcome(status, seconds, overloaded, _worker_version(body), _error(body))


def _worker_version(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return ""
    worker = answer.get("worker") if isinstance(answer, dict) else None
    return str(worker.get("version", "")) if isinstance(worker, dict) else ""


def _error(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:200]
    return str(answer.get("error", "")) if isinstance(answer, dict) else ""


def run(plan: Plan) -> list[Outcome]:
    """Up to ``plan.requests`` requests, ``plan.concurrency`` at a time, for at most
    ``plan.max_seconds``; requests not started by then are not sent."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + plan.max_seconds
    tickets = itertools.count()
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if next(tickets) >= plan.requests:
                    return
            outcome = fetch(opener, plan)
            with lock:
                outcomes.append(outcome)

    with ThreadPoolExecutor(max_workers=plan.concurrency) as pool:
        for future in [pool.submit(client) for _ in range(plan.concurrency)]:
            future.result()
    return outcomes


def summary(plan: Plan, outcomes: Sequence[Outcome], elapsed: float) -> str:
    rate = len(outcomes) / max(elapsed, 1e-9)
    lines = [
        f"{len(outcomes)} requests in {elapsed:.1f} s ({rate:.0f}/s), "
        f"{plan.concurrency} at a time, to {plan.url}"
    ]
    statuses = Counter(o.status for o in outcomes)
    lines.append("status      " + _counts({_status(s): n for s, n in sorted(statuses.items())}))
    overloaded = [o for o in outcomes if o.overloaded]
    lines.append(
        f"overloaded  {len(overloaded)} answered 503 with {OVERLOADED_HEADER}: true"
        " (a circuit breaker shedding load)"
    )
    versions = Counter(o.worker for o in outcomes if o.worker)
    total = sum(versions.values())
    shares = {v: f"{n} ({100 * n / total:.1f}%)" for v, n in sorted(versions.items())}
    lines.append("worker      " + (_counts(shares) or "no answer named a worker version"))
    if outcomes:
        latencies = sorted(o.seconds for o in outcomes)
        points = {f"p{p}": _percentile(latencies, p) for p in (50, 90, 99)}
        points["max"] = latencies[-1]
        lines.append(
            "latency     " + "  ".join(f"{k} {v * 1000:.0f} ms" for k, v in points.items())
        )
    for label, sample in (
        ("first overloaded answer", overloaded[:1]),
        ("first other failure", [o for o in outcomes if o.status >= 400 and not o.overloaded][:1]),
        ("first connection failure", [o for o in outcomes if o.status == 0][:1]),
    ):
        for outcome in sample:
            lines.append(f"{label}: {_status(outcome.status)} {outcome.error}")
    return "\n".join(lines)


def _status(status: int) -> str:
    return str(status) if status else "no answer"


def _counts(counts: dict[str, str] | dict[str, int]) -> str:
    return "   ".join(f"{key}: {value}" for key, value in counts.items())


def _percentile(ordered: Sequence[float], percent: int) -> float:
    return ordered[min(len(ordered) - 1, len(ordered) * percent // 100)]


def parse(argv: Sequence[str]) -> Plan:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080/", help="default: %(default)s")
    parser.add_argument("-n", "--requests", type=int, default=300, help="default: %(default)s")
    parser.add_argument("-c", "--concurrency", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--timeout", type=float, default=15.0, help="per request, seconds")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="whole run, seconds")
    parser.add_argument("--token", default="", help="bearer token (the frontend has a default)")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests: must be between 1 and {MAX_REQUESTS}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency: must be between 1 and {MAX_CONCURRENCY}")
    if args.timeout <= 0 or args.max_seconds <= 0:
        parser.error("--timeout and --max-seconds: must be positive")
    concurrency = min(args.concurrency, args.requests)
    return Plan(args.url, args.requests, concurrency, args.timeout, args.max_seconds, args.token)


def main(argv: Sequence[str]) -> int:
    plan = parse(argv)
    started = time.monotonic()
    outcomes = run(plan)
    print(summary(plan, outcomes, time.monotonic() - started))
    if outcomes and all(o.status == 0 for o in outcomes):
        print(f"nothing answered at {plan.url}: is the demo running (mapmesh up)?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
