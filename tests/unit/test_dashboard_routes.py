"""The dashboard's HTTP routes: the page, its assets, caching, and nothing outside the bundle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mapmesh.dashboard import StaticBundle, dashboard_routes
from mapmesh.dashboard.routes import IMMUTABLE, REVALIDATE, content_type

BUNDLE = StaticBundle.from_package()


async def _post_root(_: Request) -> Response:
    return PlainTextResponse("cloud map")


# The control plane's POST / (Cloud Map) comes first, as in create_app.
APP = Starlette(routes=[Route("/", _post_root, methods=["POST"]), *dashboard_routes(BUNDLE)])


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def _raw_get(raw_path: str) -> int:
    """The status for a path exactly as sent, without any client normalising it."""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": raw_path, "raw_path": raw_path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"test")], "server": ("test", 80),
        "client": ("127.0.0.1", 1),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await APP(scope, receive, send)
    return int(sent[0]["status"])


def _asset_url(path: str, version: str = BUNDLE.version) -> str:
    return f"/ui/assets/{version}/{path}"


async def test_the_page_names_its_assets_by_version_and_is_revalidated(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == REVALIDATE
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "{{assets}}" not in page.text
    assert f'src="/ui/assets/{BUNDLE.version}/js/app.js"' in page.text
    assert f'href="/ui/assets/{BUNDLE.version}/css/app.css"' in page.text
    # Same page with a trailing slash; a conditional request with its ETag gets 304.
    assert (await client.get("/ui/")).text == page.text
    again = await client.get("/ui", headers={"if-none-match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert (await client.get("/ui", headers={"if-none-match": '"other"'})).status_code == 200


async def test_the_root_redirects_to_the_page_and_cloud_map_keeps_post(
    client: httpx.AsyncClient,
) -> None:
    home = await client.get("/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (307, "/ui")
    assert (await client.post("/")).text == "cloud map"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("js/app.js", "text/javascript; charset=utf-8"),
        ("js/graph/layout.js", "text/javascript; charset=utf-8"),
        ("css/app.css", "text/css; charset=utf-8"),
        ("img/icon.svg", "image/svg+xml"),
    ],
)
async def test_assets_have_their_content_type_and_are_immutable(
    client: httpx.AsyncClient, path: str, expected: str
) -> None:
    answer = await client.get(_asset_url(path))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == expected
    assert answer.headers["cache-control"] == IMMUTABLE
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.content == BUNDLE.assets[path].body
    etag = answer.headers["etag"]
    assert (await client.get(_asset_url(path), headers={"if-none-match": etag})).status_code == 304
    # HEAD answers the same headers without a body.
    head = await client.head(_asset_url(path))
    assert head.status_code == 200 and head.content == b""


async def test_an_old_version_still_gets_the_file_but_not_cached_for_long(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get(_asset_url("js/app.js", version="000000000000"))
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == REVALIDATE


@pytest.mark.parametrize(
    "path",
    [
        "js/nope.js",
        "index.html",  # only served as the page, with the version filled in
        "../routes.py",
        "..%2froutes.py",
        "%2e%2e/%2e%2e/routes.py",
        "js/../../routes.py",
        "%2fetc%2fpasswd",
        "css",
        "",
    ],
)
async def test_unknown_assets_and_traversal_get_404(client: httpx.AsyncClient, path: str) -> None:
    # (A client removes dot segments itself; what is left may be redirected to add a
    # slash, and then ends at 404 too.)
    answer = await client.get(f"/ui/assets/{BUNDLE.version}/{path}", follow_redirects=True)
    assert answer.status_code == 404
    assert "import" not in answer.text  # never a Python file's source
    # The same path sent raw, dot segments and all, straight to the application.
    assert await _raw_get(f"/ui/assets/{BUNDLE.version}/{path}") == 404


def test_only_bundled_files_can_be_looked_up() -> None:
    assert BUNDLE.asset("../routes.py") is None
    assert BUNDLE.asset("/etc/passwd") is None
    assert all(".." not in path and not path.startswith("/") for path in BUNDLE.assets)


def test_content_types_by_suffix() -> None:
    assert content_type("vendor/lib/LICENSE") == "text/plain; charset=utf-8"
    assert content_type("a/b.MJS") == "text/javascript; charset=utf-8"
    assert content_type("blob.bin") == "application/octet-stream"
    assert content_type("noextension") == "application/octet-stream"


def test_the_version_changes_with_any_file() -> None:
    files = {"index.html": b"<p>{{assets}}</p>", "js/app.js": b"1"}
    first = StaticBundle(files)
    second = StaticBundle({**files, "js/app.js": b"2"})
    assert first.version != second.version
    assert first.index.body == f"<p>/ui/assets/{first.version}</p>".encode()
    with pytest.raises(ValueError, match=r"index\.html"):
        StaticBundle({"js/app.js": b""})
