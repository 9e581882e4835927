"""HTTP routes for the dashboard: the page at ``/ui`` and its static assets.

Every file under ``static/`` is read once, when the routes are made, into a
:class:`StaticBundle`: a map from relative path to body, content type and ETag. A request
names an asset by that exact path, so nothing outside the bundle (``..``, absolute paths,
files added after start) can ever be served.

Caching: asset URLs carry the bundle's version (a digest of every file), so
``/ui/assets/<version>/js/app.js`` is immutable and cached for a year; a request with an older
version still gets the current file, but marked ``no-cache``. The page itself (``index.html``
with the version filled in) is ``no-cache`` with an ETag, so a browser revalidates it on every
load and picks up a new bundle after an upgrade. JavaScript modules import each other by
relative URL, so the version propagates to the whole module graph without a build step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

__all__ = ["ASSETS_PREFIX", "UI_PATH", "Asset", "StaticBundle", "dashboard_routes"]

UI_PATH = "/ui"
ASSETS_PREFIX = "/ui/assets"
_INDEX = "index.html"
_PLACEHOLDER = b"{{assets}}"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".map": "application/json",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
# Licence files beside vendored code have no suffix.
_PLAIN_NAMES = ("LICENSE", "LICENCE", "NOTICE", "COPYING")

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# The page loads only its own files and talks only to its own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def content_type(path: str) -> str:
    """The Content-Type for a bundled file, by suffix (licence files are plain text)."""
    name = path.rsplit("/", 1)[-1]
    if name.upper().startswith(_PLAIN_NAMES):
        return "text/plain; charset=utf-8"
    return _CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, path: str, body: bytes) -> Asset:
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(body, content_type(path), f'"{digest}"')


class StaticBundle:
    """The dashboard's files, in memory, keyed by their path relative to ``static/``."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        if _INDEX not in files:
            raise ValueError(f"the dashboard bundle has no {_INDEX}")
        whole = hashlib.sha256()
        for path in sorted(files):
            whole.update(path.encode() + b"\0" + files[path] + b"\0")
        self.version = whole.hexdigest()[:12]
        self.assets = {p: Asset.of(p, body) for p, body in files.items() if p != _INDEX}
        page = files[_INDEX].replace(_PLACEHOLDER, f"{ASSETS_PREFIX}/{self.version}".encode())
        self.index = Asset.of(_INDEX, page)

    @classmethod
    def from_package(cls) -> StaticBundle:
        """The files shipped in ``mapmesh/dashboard/static``."""
        root = resources.files("mapmesh.dashboard") / "static"
        return cls(dict(_walk(root, "")))

    def asset(self, path: str) -> Asset | None:
        return self.assets.get(path)


def _walk(node: Traversable, prefix: str) -> Iterator[tuple[str, bytes]]:
    for child in node.iterdir():
        name = f"{prefix}{child.name}"
        if child.name.startswith(".") or child.name == "__pycache__":
            continue
        if child.is_dir():
            yield from _walk(child, name + "/")
        elif child.is_file():
            yield name, child.read_bytes()


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match")
    if not wanted:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
    return "*" in tags or etag in tags


def _serve(request: Request, asset: Asset, cache_control: str, **extra: str) -> Response:
    headers = {**_COMMON_HEADERS, "etag": asset.etag, "cache-control": cache_control, **extra}
    if _not_modified(request, asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, headers={**headers, "content-type": asset.content_type})


def dashboard_routes(bundle: StaticBundle | None = None) -> list[Route]:
    """``GET /ui`` (the page), ``GET /ui/assets/<version>/<path>`` and ``GET /`` → ``/ui``."""
    files = bundle or StaticBundle.from_package()

    async def index(request: Request) -> Response:
        return _serve(
            request, files.index, REVALIDATE, **{"content-security-policy": CONTENT_SECURITY_POLICY}
        )

    async def asset(request: Request) -> Response:
        path = request.path_params["path"]
        found = files.asset(path)
        if found is None:
            message = {"message": f"no dashboard asset {path!r}"}
            return JSONResponse(message, status_code=404, headers=_COMMON_HEADERS)
        current = request.path_params["version"] == files.version
        return _serve(request, found, IMMUTABLE if current else REVALIDATE)

    async def home(_: Request) -> Response:
        return RedirectResponse(UI_PATH, status_code=307)

    return [
        Route("/", home, methods=["GET"]),
        Route(UI_PATH, index, methods=["GET"]),
        Route(UI_PATH + "/", index, methods=["GET"]),
        Route(ASSETS_PREFIX + "/{version}/{path:path}", asset, methods=["GET"]),
    ]
