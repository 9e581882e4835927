"""worker: the background work of the network — ranking timelines and fanning out posts.

Runs in two versions side by side (``WORKER_VERSION``, v1 and v2) so the mesh can split traffic
between them. Every answer names the version and instance that did the work, and echoes the
trace headers it received, so a caller can check the trace context survived every hop.

Knobs for showing off the mesh's resilience (read once at start):

- ``WORKER_DELAY_MS``: added to every work request (not to ``/health``), to build up
  concurrency — enough of it trips the callers' circuit breakers.
- ``WORKER_FAIL_RATE``: the fraction (0-1) of work requests answered 503, which the callers'
  sidecars retry and outlier detection counts.
- ``WORKER_SEED``: seeds the failure draws, for reproducible runs.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common import App, HttpError, Identity, Request, Response, route, serve


@dataclass(frozen=True)
class Faults:
    """The injected faults: a fixed delay and a failure probability."""

    delay_ms: float = 0.0
    fail_rate: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Faults:
        delay_ms = float(env.get("WORKER_DELAY_MS") or 0)
        fail_rate = float(env.get("WORKER_FAIL_RATE") or 0)
        if delay_ms < 0:
            raise SystemExit(f"WORKER_DELAY_MS must be >= 0, not {delay_ms:g}")
        if not 0 <= fail_rate <= 1:
            raise SystemExit(f"WORKER_FAIL_RATE must be between 0 and 1, not {fail_rate:g}")
        return cls(delay_ms, fail_rate)


class Worker:
    """The work endpoints; faults are applied before the work, as a slow or sick host would."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self._faults = faults
        self._rng = rng

    def work(self, request: Request) -> Response:
        task = request.json().get("task", "work") if request.method == "POST" else "work"
        self._suffer()
        return Response(200, {"task": str(task), "done": True, "trace": request.trace_headers()})

    def rank(self, request: Request) -> Response:
        posts = request.json().get("posts")
        if not isinstance(posts, list) or not all(isinstance(p, dict) for p in posts):
            raise HttpError(400, "posts: must be a list of objects")
        self._suffer()
        ranked = sorted(posts, key=_score, reverse=True)
        return Response(200, {"posts": ranked, "trace": request.trace_headers()})

    def _suffer(self) -> None:
        if self._faults.delay_ms:
            time.sleep(self._faults.delay_ms / 1000)
        if self._faults.fail_rate and self._rng.random() < self._faults.fail_rate:
            rate = self._faults.fail_rate
            raise HttpError(503, f"injected failure (WORKER_FAIL_RATE={rate:g})")


def _score(post: Mapping[str, Any]) -> float:
    """Likes decay with age: a post loses half its weight every two hours."""
    likes = post.get("likes", 0)
    age = post.get("ageMinutes", 0)
    if not isinstance(likes, int | float) or not isinstance(age, int | float):
        return 0.0
    return float(likes) * math.pow(0.5, max(age, 0) / 120)


def make_app(env: Mapping[str, str]) -> App:
    version = env.get("WORKER_VERSION") or env.get("MAPMESH_VERSION") or "v1"
    seed = env.get("WORKER_SEED")
    worker = Worker(Faults.from_env(env), random.Random(seed))
    routes = [
        route("GET", "/work", worker.work),
        route("POST", "/work", worker.work),
        route("POST", "/rank", worker.rank),
    ]
    return App(Identity.from_env(env, service="worker", version=version), routes)


if __name__ == "__main__":
    serve(make_app(os.environ), os.environ)
