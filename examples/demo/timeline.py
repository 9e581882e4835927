"""timeline: a user's recent posts, ranked by the worker.

The posts are a fixed in-memory sample (read-only, so replicas agree); the worker decides their
order, and the answer says which worker version and instance ranked them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from common import App, Backend, Identity, JsonObject, Request, Response, answered_by, route, serve


def _post(post_id: str, author: str, text: str, likes: int, age_minutes: int) -> JsonObject:
    return {
        "id": post_id,
        "author": author,
        "text": text,
        "likes": likes,
        "ageMinutes": age_minutes,
    }


_POSTS = {
    "p1": _post("p1", "bob", "DROP TABLE jokes;", likes=3, age_minutes=5),
    "p2": _post("p2", "carol", "Flew past Mars.", likes=40, age_minutes=300),
    "p3": _post("p3", "carol", "Coffee first.", likes=12, age_minutes=30),
    "p4": _post("p4", "alice", "Down the rabbit hole.", likes=8, age_minutes=60),
}
SAMPLE: Mapping[str, Sequence[JsonObject]] = MappingProxyType(
    {
        "alice": (_POSTS["p1"], _POSTS["p2"], _POSTS["p3"]),
        "bob": (_POSTS["p4"],),
        "carol": (_POSTS["p4"], _POSTS["p1"]),
    }
)


class Timelines:
    """Reads a user's posts and has the worker rank them; unknown users have empty timelines."""

    def __init__(self, posts: Mapping[str, Sequence[JsonObject]], worker: Backend) -> None:
        self._posts = posts
        self._worker = worker

    def get(self, request: Request) -> Response:
        user_id = request.params["user_id"]
        limit = request.int_query("limit", default=20, low=1, high=100)
        posts = list(self._posts.get(user_id, ()))
        ranked = self._worker.call("POST", "/rank", incoming=request, body={"posts": posts})
        return Response(
            200,
            {
                "userId": user_id,
                "posts": ranked.get("posts", [])[:limit],
                "rankedBy": answered_by(ranked, "trace"),
            },
        )


def make_app(env: Mapping[str, str]) -> App:
    timelines = Timelines(SAMPLE, Backend.from_env(env, "worker"))
    routes = [route("GET", "/timeline/{user_id}", timelines.get)]
    return App(Identity.from_env(env, service="timeline"), routes)


if __name__ == "__main__":
    serve(make_app(os.environ), os.environ)
