"""``/ui`` and ``/ui/{asset}`` over HTTP (no browser): content types, cache headers,
the redirect to ``/ui/``, unknown files, and the admin guard."""

from __future__ import annotations

from importlib import resources
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from brace.config import parse_config
from brace.gateway.routes import ui
from tests.integration.conftest import ServerThread


def _app(**server: Any) -> web.Application:
    env = {"BRACE_ADMIN_KEY": server.pop("key")} if "key" in server else {}
    if env:
        server["admin_key"] = "${BRACE_ADMIN_KEY}"
    config = parse_config(
        {"server": server, "models": {"m": {"deployments": [{"provider": "mock", "model": "m"}]}}},
        env=env,
    )
    app = web.Application()
    ui.setup(app, SimpleNamespace(config=config))  # type: ignore[arg-type]
    return app


def test_assets_ship_in_the_package() -> None:
    names = {p.name for p in resources.files("brace.gateway.ui").iterdir()}
    assert {"index.html", "app.js", "style.css"} <= names


# These run on the module's server thread: the browser tests' Playwright (sync API)
# keeps an event loop of its own in the main thread for the whole session.


def test_assets_content_types_and_revalidation(servers: ServerThread) -> None:
    servers.call(_assets_content_types_and_revalidation())


def test_guard_off_without_key_on_a_public_address(servers: ServerThread) -> None:
    servers.call(_guard_off_without_key_on_a_public_address())


def test_with_a_key_the_page_loads_to_ask_for_it(servers: ServerThread) -> None:
    servers.call(_with_a_key_the_page_loads_to_ask_for_it())


async def _assets_content_types_and_revalidation() -> None:
    async with TestClient(TestServer(_app(host="127.0.0.1"))) as client:
        resp = await client.get("/ui", allow_redirects=False)
        assert resp.status == 308
        assert resp.headers["Location"] == "ui/"
        for path, ctype in [
            ("/ui/", "text/html"),
            ("/ui/index.html", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ]:
            resp = await client.get(path)
            assert resp.status == 200, path
            assert resp.headers["Content-Type"].startswith(ctype), path
            assert resp.headers["Cache-Control"] == "no-cache"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            etag = resp.headers["ETag"]
            again = await client.get(path, headers={"If-None-Match": etag})
            assert again.status == 304
            assert await again.read() == b""
        html = await (await client.get("/ui/")).text()
        assert "http" not in html.replace("http-equiv", "")  # no CDN, no external font
        missing = await client.get("/ui/nope.js")
        assert missing.status == 404
        assert (await missing.json())["error"]["code"] == "not_found"
        assert (await client.get("/ui/__init__.py")).status == 404


async def _guard_off_without_key_on_a_public_address() -> None:
    async with TestClient(TestServer(_app(host="0.0.0.0"))) as client:
        resp = await client.get("/ui/")
        assert resp.status == 403
        assert (await client.get("/ui", allow_redirects=False)).status == 403


async def _with_a_key_the_page_loads_to_ask_for_it() -> None:
    async with TestClient(TestServer(_app(host="0.0.0.0", key="k"))) as client:
        assert (await client.get("/ui/")).status == 200
        assert (await client.get("/ui/app.js")).status == 200
