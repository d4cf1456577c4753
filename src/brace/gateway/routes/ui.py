"""The dashboard: ``GET /ui`` and ``GET /ui/{asset}``, a static one-page app.

The assets (``brace/gateway/ui/``: ``index.html``, ``app.js``, ``style.css``) are plain
files read once at start-up through :mod:`importlib.resources`; there is no build step
and nothing is fetched from elsewhere.  The page reads the admin API
(``/admin/deployments``, ``/admin/overview``, ``/admin/requests``, ``/admin/runs``,
``/admin/spend``, ``/admin/keys``, ``/admin/teams``)
with the admin key the user typed, sent as ``Authorization: Bearer``.

Access is ``Access.DASHBOARD`` (:mod:`brace.gateway._access`): where the admin API is
off (a non-loopback gateway without ``server.admin_key``) the dashboard is off too
(403).  With an admin key set, the page itself loads without the key — it holds no
data and no secret — so that it can ask for the key; every request it makes for data
is checked by the admin routes.

Caching: every answer carries a strong ``ETag`` (a hash of the file) and
``Cache-Control: no-cache``, so a browser revalidates (304, no body) and an upgraded
gateway never serves a stale script next to a new page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from ...errors import NotFound
from .._access import Access, Route, mount
from .._http import GatewayView, error_response, request_id

__all__ = ["ROUTES", "asset", "index", "root", "setup"]

_PACKAGE = "brace.gateway.ui"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Only our own files: no inline script, no CDN, no external font.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


def _load_assets() -> dict[str, _Asset]:
    assets: dict[str, _Asset] = {}
    for entry in resources.files(_PACKAGE).iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if suffix not in _TYPES or not entry.is_file():
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        assets[name] = _Asset(body, _TYPES[suffix], etag)
    if "index.html" not in assets:
        raise RuntimeError(f"the dashboard's index.html is missing from {_PACKAGE}")
    return assets


_ASSETS: web.AppKey[dict[str, _Asset]] = web.AppKey("brace.ui.assets")


def _serve(request: web.Request, name: str) -> web.StreamResponse:
    found = request.app[_ASSETS].get(name)
    if found is None:
        return error_response(NotFound(f"no dashboard file named {name!r}"), request_id(request))
    headers = {**_HEADERS, "ETag": found.etag}
    if found.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = found.content_type
    return web.Response(body=found.body, headers=headers)


async def root(request: web.Request) -> web.StreamResponse:
    # The page links its files relatively: it must be served from a URL ending in "/".
    raise web.HTTPPermanentRedirect("ui/")


async def index(request: web.Request) -> web.StreamResponse:
    return _serve(request, "index.html")


async def asset(request: web.Request) -> web.StreamResponse:
    return _serve(request, request.match_info["asset"])


ROUTES = (
    Route("GET", "/ui", root, Access.DASHBOARD),
    Route("GET", "/ui/", index, Access.DASHBOARD),
    Route("GET", "/ui/{asset}", asset, Access.DASHBOARD),
)


def setup(app: web.Application, gateway: GatewayView) -> None:
    app[_ASSETS] = _load_assets()
    mount(app, ROUTES, gateway=gateway)
