"""feed: accepts new posts and has the worker fan them out to followers' timelines.

The worker is asked first and the post is kept only once it accepted the job, so a client that
retries a failed post does not leave a duplicate behind. Recent posts are kept in memory
(``FEED_KEEP`` of them, default 100) and listed by ``GET /posts``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Mapping

from common import (
    App,
    Backend,
    HttpError,
    Identity,
    JsonObject,
    Request,
    Response,
    answered_by,
    route,
    serve,
)

MAX_TEXT = 280


class Feed:
    """The recent posts of this replica, newest first, behind a lock (requests run in threads)."""

    def __init__(self, worker: Backend, instance: str, keep: int) -> None:
        self._worker = worker
        self._instance = instance
        self._posts: deque[JsonObject] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def publish(self, request: Request) -> Response:
        body = request.json()
        author, text = body.get("author"), body.get("text")
        if not isinstance(author, str) or not author:
            raise HttpError(400, "author: must be a non-empty string")
        if not isinstance(text, str) or not 0 < len(text.strip()) <= MAX_TEXT:
            raise HttpError(400, f"text: must be 1 to {MAX_TEXT} characters")
        with self._lock:
            post_id = f"{self._instance}-{next(self._ids)}"
        job = {"task": "fanout", "postId": post_id, "author": author}
        fanout = self._worker.call("POST", "/work", incoming=request, body=job)
        post = {"id": post_id, "author": author, "text": text.strip(), "createdAt": time.time()}
        with self._lock:
            self._posts.appendleft(post)
        return Response(201, {"post": post, "fanout": answered_by(fanout, "trace")})

    def recent(self, request: Request) -> Response:
        limit = request.int_query("limit", default=20, low=1, high=100)
        with self._lock:
            posts = list(itertools.islice(self._posts, limit))
        return Response(200, {"posts": posts})


def make_app(env: Mapping[str, str]) -> App:
    identity = Identity.from_env(env, service="feed")
    keep = int(env.get("FEED_KEEP") or 100)
    feed = Feed(Backend.from_env(env, "worker"), identity.instance, keep)
    routes = [route("POST", "/posts", feed.publish), route("GET", "/posts", feed.recent)]
    return App(identity, routes)


if __name__ == "__main__":
    serve(make_app(os.environ), os.environ)
