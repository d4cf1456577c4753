"""The gateway's one access middleware: a route that declares nothing is admin-only,
whoever registered it and however; public and caller routes say so in their table."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from brace.config import parse_config
from brace.gateway import Gateway
from brace.gateway._access import ACCESS, Access, Route, mount
from brace.gateway.routes import admin, models

KEY = "sk-admin-test"
MODELS = {"m": {"deployments": [{"provider": "mock", "model": "m"}]}}


def _config(*, key: str | None, host: str = "127.0.0.1") -> Any:
    server: dict[str, Any] = {"host": host}
    if key is not None:
        server["admin_key"] = "${BRACE_ADMIN_KEY}"
    return parse_config(
        {"server": server, "models": MODELS}, env={"BRACE_ADMIN_KEY": key} if key else {}
    )


async def _secret(request: web.Request) -> web.StreamResponse:
    return web.json_response({"secret": True})


def _app_with_a_new_route(*, key: str | None, host: str = "127.0.0.1") -> web.Application:
    app = web.Application()
    admin.setup(app, SimpleNamespace(config=_config(key=key, host=host)))  # type: ignore[arg-type]
    # a new admin route, added with no auth call and no declared access
    app.router.add_get("/admin/brand-new", _secret)
    return app


async def test_a_new_route_without_an_auth_call_needs_the_master_key() -> None:
    async with TestClient(TestServer(_app_with_a_new_route(key=KEY))) as client:
        resp = await client.get("/admin/brand-new")
        assert resp.status == 401
        body = await resp.json()
        assert body["error"]["code"] == "invalid_admin_key"
        assert body["error"]["type"] == "authentication_error"
        assert "x-request-id" in resp.headers
        resp = await client.get("/admin/brand-new", headers={"Authorization": "Bearer wrong"})
        assert resp.status == 401
        resp = await client.get("/admin/brand-new", headers={"Authorization": f"Bearer {KEY}"})
        assert resp.status == 200 and await resp.json() == {"secret": True}


async def test_a_new_route_is_off_on_a_public_address_without_a_master_key() -> None:
    async with TestClient(TestServer(_app_with_a_new_route(key=None, host="0.0.0.0"))) as client:
        resp = await client.get("/admin/brand-new")
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "admin_disabled"


async def test_a_new_route_is_open_on_loopback_without_a_master_key() -> None:
    async with TestClient(TestServer(_app_with_a_new_route(key=None))) as client:
        assert (await client.get("/admin/brand-new")).status == 200


async def test_a_new_route_on_the_real_gateway_is_protected() -> None:
    gw = Gateway(_config(key=KEY))
    gw.app.router.add_get("/admin/brand-new", _secret)
    async with TestClient(TestServer(gw.app)) as client:
        assert (await client.get("/admin/brand-new")).status == 401
        assert (await client.get("/healthz")).status == 200  # public, declared so
        resp = await client.get("/nowhere")  # the public fallback: still a 404, not a 401
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


def test_every_gateway_route_declares_its_access() -> None:
    gw = Gateway(_config(key=KEY))
    table = gw.app[ACCESS]
    for resource in gw.app.router.resources():
        assert resource in table, resource.canonical
        path = resource.canonical
        if path.startswith("/admin"):
            assert table[resource] is Access.ADMIN, path
        elif path.startswith(("/v1/", "/chat/", "/embeddings", "/models")):
            assert table[resource] is Access.CALLER, path
    assert {r.canonical for r, a in table.items() if a is Access.PUBLIC} == {
        "/healthz",
        "/readyz",
        "/{tail}",
    }


async def test_caller_routes_authenticate_in_the_middleware() -> None:
    gw = Gateway(_config(key=KEY))  # a master key: keys mode
    async with TestClient(TestServer(gw.app)) as client:
        resp = await client.post("/v1/chat/completions", data=b"not even json")
        assert resp.status == 401  # authentication comes before the body is read
        assert (await resp.json())["error"]["code"] == "missing_api_key"
        resp = await client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert resp.status == 401


def test_one_path_has_one_access() -> None:
    app = web.Application()
    mount(app, [Route("GET", "/x", _secret, Access.PUBLIC)])
    with pytest.raises(RuntimeError, match="public, not admin"):
        mount(app, [Route("POST", "/x", _secret)])


def test_one_application_serves_one_gateway() -> None:
    app = web.Application()
    models.setup_fallback(app)
    admin.setup(app, SimpleNamespace(config=_config(key=None)))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="one gateway"):
        admin.setup(app, SimpleNamespace(config=_config(key=None)))  # type: ignore[arg-type]
