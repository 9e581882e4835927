"""user: profiles by user id, from a small in-memory directory (read-only, so replicas agree)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

from common import App, HttpError, Identity, JsonObject, Request, Response, route, serve

PROFILES: Mapping[str, JsonObject] = MappingProxyType(
    {
        "alice": {"name": "Alice Liddell", "bio": "Curiouser and curiouser.", "follows": 2},
        "bob": {"name": "Bob Tables", "bio": "Sanitizes his inputs.", "follows": 1},
        "carol": {"name": "Carol Danvers", "bio": "Higher, further, faster.", "follows": 2},
    }
)


class Directory:
    """Looks profiles up; a missing user is a 404 that names the user."""

    def __init__(self, profiles: Mapping[str, JsonObject]) -> None:
        self._profiles = profiles

    def get(self, request: Request) -> Response:
        user_id = request.params["user_id"]
        profile = self._profiles.get(user_id)
        if profile is None:
            raise HttpError(404, f"no profile for user {user_id!r}")
        return Response(200, {"user": {"id": user_id, **profile}})

    def list(self, _request: Request) -> Response:
        return Response(200, {"users": sorted(self._profiles)})


def make_app(env: Mapping[str, str]) -> App:
    directory = Directory(PROFILES)
    routes = [
        route("GET", "/users", directory.list),
        route("GET", "/users/{user_id}", directory.get),
    ]
    return App(Identity.from_env(env, service="user"), routes)


if __name__ == "__main__":
    serve(make_app(os.environ), os.environ)
