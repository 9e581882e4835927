"""auth: turns a bearer token into a user id.

Demo tokens only: ``demo-<user>`` is valid for any user name of lower-case letters, digits and
dashes (``demo-alice`` → ``alice``); anything else is answered 401. Token from
``GET /verify?token=...`` or an ``Authorization: Bearer ...`` header.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from common import App, HttpError, Identity, Request, Response, route, serve

_DEMO_TOKEN = re.compile(r"^demo-(?P<user>[a-z0-9][a-z0-9-]{0,31})$")
_CHALLENGE = (("WWW-Authenticate", 'Bearer realm="social"'),)


def user_for(token: str) -> str:
    """The user a token speaks for, or 401 naming what is wrong with it."""
    if not token:
        raise HttpError(401, "missing token", headers=_CHALLENGE)
    match = _DEMO_TOKEN.match(token)
    if match is None:
        raise HttpError(401, "invalid token (demo tokens look like demo-alice)", headers=_CHALLENGE)
    return match["user"]


def bearer_token(request: Request) -> str:
    """The token from ``?token=`` or, failing that, from ``Authorization: Bearer``."""
    if "token" in request.query:
        return request.query["token"]
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def verify(request: Request) -> Response:
    user = user_for(bearer_token(request))
    return Response(200, {"userId": user, "scopes": ["read", "post"]})


def make_app(env: Mapping[str, str]) -> App:
    return App(Identity.from_env(env, service="auth"), [route("GET", "/verify", verify)])


if __name__ == "__main__":
    serve(make_app(os.environ), os.environ)
