"""Route handlers one by one: each is a module-level function of the request, finding
its gateway through ``request.app[GATEWAY]`` (no server, no middleware)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from brace.gateway._http import CALLER, GATEWAY, caller
from brace.gateway.routes import admin, models, ui


def _request(method: str, path: str, gateway: Any, **kw: Any) -> web.Request:
    app = web.Application()
    app[GATEWAY] = gateway
    return make_mocked_request(method, path, app=app, **kw)


def _json(resp: web.StreamResponse) -> Any:
    assert isinstance(resp, web.Response) and resp.body is not None
    return orjson.loads(resp.body)  # type: ignore[arg-type]


async def test_healthz() -> None:
    resp = await models.healthz(_request("GET", "/healthz", SimpleNamespace()))
    assert resp.status == 200 and _json(resp) == {"status": "ok"}


@pytest.mark.parametrize(
    ("ready", "stopping", "status", "state"),
    [
        (True, False, 200, "ready"),
        (False, False, 503, "starting"),
        (False, True, 503, "shutting down"),
    ],
)
async def test_readyz(ready: bool, stopping: bool, status: int, state: str) -> None:
    gateway = SimpleNamespace(ready=ready, stopping=stopping)
    resp = await models.readyz(_request("GET", "/readyz", gateway))
    assert resp.status == status and _json(resp) == {"status": state}


async def test_admin_deployments() -> None:
    engine = SimpleNamespace(
        limiter=None,
        deployments=lambda: {"chat": [{"id": "a"}]},
        admission=lambda: {"chat": {"queued": 0}},
    )
    resp = await admin.deployments(
        _request("GET", "/admin/deployments", SimpleNamespace(engine=engine))
    )
    assert _json(resp) == {
        "groups": {"chat": [{"id": "a"}]},
        "admission": {"chat": {"queued": 0}},
        "limiter": None,
    }


async def test_fallback_is_404_or_405_with_allow() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", models.healthz)
    resp = await models.fallback(make_mocked_request("GET", "/v1/chat/completions", app=app))
    assert resp.status == 405 and resp.headers["Allow"] == "POST"
    assert _json(resp)["error"]["code"] == "method_not_allowed"
    resp = await models.fallback(make_mocked_request("GET", "/nowhere", app=app))
    assert resp.status == 404 and _json(resp)["error"]["code"] == "not_found"


async def test_ui_root_redirects_to_the_slash() -> None:
    with pytest.raises(web.HTTPPermanentRedirect) as info:
        await ui.root(_request("GET", "/ui", SimpleNamespace()))
    assert info.value.location == "ui/"


def test_caller_is_never_silently_unauthenticated() -> None:
    request = _request("GET", "/v1/models", SimpleNamespace())
    with pytest.raises(KeyError):
        caller(request)  # the middleware did not run: no caller, not "local mode"
    request[CALLER] = None
    assert caller(request) is None
