"""frontend: the web tier behind the gateway; composes pages from the other services.

- ``GET /``: the signed-in user's home page — auth verifies the token, then user gives the
  profile and timeline the ranked posts. The answer lists which instance of every service
  served it, and which worker version ranked the posts, so repeated calls show the split.
- ``POST /posts`` with ``{"text": "..."}``: publishes a post through feed (which has the
  worker fan it out).

The token comes from ``Authorization: Bearer ...`` or ``?token=``; without one the demo user
``FRONTEND_DEMO_TOKEN`` (default ``demo-alice``, empty to require a token) is assumed, so a
bare ``curl`` works. It is passed to auth in a header, never in a URL, so it stays out of
access logs.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from common import (
    App,
    Backend,
    HttpError,
    Identity,
    JsonObject,
    Request,
    Response,
    route,
    serve,
)


@dataclass(frozen=True)
class Backends:
    auth: Backend
    user: Backend
    feed: Backend
    timeline: Backend

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Backends:
        return cls(*(Backend.from_env(env, name) for name in ("auth", "user", "feed", "timeline")))


class Frontend:
    def __init__(self, backends: Backends, demo_token: str) -> None:
        self._backends = backends
        self._demo_token = demo_token

    def home(self, request: Request) -> Response:
        user_id, auth = self._sign_in(request)
        quoted = urllib.parse.quote(user_id, safe="")
        profile = self._backends.user.call("GET", f"/users/{quoted}", incoming=request)
        timeline = self._backends.timeline.call("GET", f"/timeline/{quoted}", incoming=request)
        worker = timeline.get("rankedBy", {})
        return Response(
            200,
            {
                "user": profile.get("user"),
                "timeline": timeline.get("posts", []),
                "worker": worker,
                "servedBy": _served_by(auth=auth, user=profile, timeline=timeline, worker=worker),
            },
        )

    def post(self, request: Request) -> Response:
        text = request.json().get("text")
        if not isinstance(text, str):
            raise HttpError(400, "text: must be a string")
        user_id, auth = self._sign_in(request)
        published = self._backends.feed.call(
            "POST", "/posts", incoming=request, body={"author": user_id, "text": text}
        )
        worker = published.get("fanout", {})
        return Response(
            201,
            {
                "post": published.get("post"),
                "worker": worker,
                "servedBy": _served_by(auth=auth, feed=published, worker=worker),
            },
        )

    def _sign_in(self, request: Request) -> tuple[str, JsonObject]:
        """The user id auth vouches for (auth's 401 passes through), and auth's answer."""
        token = request.query.get("token") or _bearer(request) or self._demo_token
        if not token:
            raise HttpError(401, "sign in: send Authorization: Bearer <token>")
        verified = self._backends.auth.call(
            "GET", "/verify", incoming=request, headers={"Authorization": f"Bearer {token}"}
        )
        user_id = verified.get("userId")
        if not isinstance(user_id, str):
            raise HttpError(502, "auth: answer has no userId")
        return user_id, verified


def _bearer(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _served_by(**answers: JsonObject) -> dict[str, str]:
    """``{"auth": "auth-1", "worker": "worker-v2-1", ...}``: who answered each step."""
    return {step: str(answer.get("instance", "?")) for step, answer in answers.items()}


def make_app(env: Mapping[str, str]) -> App:
    frontend = Frontend(Backends.from_env(env), env.get("FRONTEND_DEMO_TOKEN", "demo-alice"))
    routes = [route("GET", "/", frontend.home), route("POST", "/posts", frontend.post)]
    return App(Identity.from_env(env, service="frontend"), routes)


if __name__ == "__main__":
    serve(make_app(os.environ), os.environ)
