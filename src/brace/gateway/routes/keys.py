"""Admin API for virtual keys and team budgets (master key: ``server.admin_key``).

::

    POST   /admin/keys              create; the answer holds the key, shown this once
    GET    /admin/keys              every key (``?team=``, ``?state=active|expired|revoked``)
                                    with its spend and budget use per period
    GET    /admin/keys/{id}         one key, same shape
    PATCH  /admin/keys/{id}         change fields (``null`` clears one)
    DELETE /admin/keys/{id}         revoke (also ``POST /admin/keys/{id}/revoke``)
    GET    /admin/teams             every team (of a key, or with budgets), spend and budgets
    PUT    /admin/teams/{team}      set a team's budgets: ``{"budgets": [...]}``

A change answers once every live gateway sharing the key database has loaded it
(``propagation``: how many of how many), so a revoked key is refused everywhere by
then.  No answer ever holds a key's hash; only ``POST /admin/keys`` holds the key.
Every route is an admin route (:mod:`brace.gateway._access`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from ...errors import BadRequest, BraceError, KeyNotFound
from ...keys import KeyCreate, KeyUpdate, Scope, TeamUpdate, VirtualKey
from .._access import Route, mount
from .._http import GATEWAY, GatewayView, error_response, json_response, read_json, request_id

__all__ = [
    "ROUTES",
    "create",
    "get_key",
    "list_keys",
    "list_teams",
    "put_team",
    "revoke_key",
    "setup",
    "update_key",
]

_STATES = ("active", "expired", "revoked")

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        raise BadRequest(f"{where}: {msg}" if where else msg, param=where) from None


def _answers(fn: RouteHandler) -> RouteHandler:
    """A handler whose errors (and a store's ``ValueError``) answer OpenAI-shaped."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except BraceError as exc:
            return error_response(exc, request_id(request))
        except ValueError as exc:
            return error_response(BadRequest(str(exc)), request_id(request))

    return handler


def _check_models(gateway: GatewayView, spec: KeyCreate | KeyUpdate) -> None:
    models = sorted(gateway.config.models)
    unknown = sorted(set(spec.models or ()) - set(models))
    if unknown:
        raise BadRequest(
            f"models: {', '.join(map(repr, unknown))} is not a model group of this gateway; "
            f"expected some of: {', '.join(models)}",
            param="models",
        )


async def _render_key(gateway: GatewayView, key: VirtualKey) -> dict[str, Any]:
    out = key.public(time.time())
    scope = gateway.keys.ring.scopes(key)[0]
    out["usage"] = await gateway.keys.ledger.usage(scope)
    return out


def _find(gateway: GatewayView, request: web.Request) -> VirtualKey:
    key_id = request.match_info["key_id"]
    key = gateway.keys.ring.get(key_id)
    if key is None:
        raise KeyNotFound(f"no key with id {key_id!r}", param="key_id")
    return key


async def _body(gateway: GatewayView, request: web.Request) -> dict[str, Any]:
    return await read_json(request, gateway.config.server.max_body_bytes)


@_answers
async def create(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    spec: KeyCreate = _parse(KeyCreate, await _body(gateway, request))
    _check_models(gateway, spec)
    key, plaintext = await gateway.keys.ring.create(spec)
    out = await _render_key(gateway, key)
    out["key"] = plaintext
    out["propagation"] = await gateway.keys.ring.propagate()
    return json_response(orjson.dumps(out), status=201)


@_answers
async def list_keys(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    team = request.query.get("team")
    state = request.query.get("state")
    if state is not None and state not in _STATES:
        raise BadRequest(f"state must be one of {', '.join(_STATES)}", param="state")
    now = time.time()
    data = [
        await _render_key(gateway, k)
        for k in gateway.keys.ring.all()
        if (team is None or k.team == team) and (state is None or k.state(now) == state)
    ]
    return json_response(orjson.dumps({"object": "list", "data": data}))


@_answers
async def get_key(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    return json_response(orjson.dumps(await _render_key(gateway, _find(gateway, request))))


@_answers
async def update_key(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    ring = gateway.keys.ring
    key = _find(gateway, request)
    spec: KeyUpdate = _parse(KeyUpdate, await _body(gateway, request))
    _check_models(gateway, spec)
    out = await _render_key(gateway, await ring.update(key, spec))
    out["propagation"] = await ring.propagate()
    return json_response(orjson.dumps(out))


@_answers
async def revoke_key(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    ring = gateway.keys.ring
    key = await ring.revoke(_find(gateway, request))
    out = await _render_key(gateway, key)
    out["propagation"] = await ring.propagate()
    return json_response(orjson.dumps(out))


async def _team_usage(gateway: GatewayView, team: str, budgets: Any) -> dict[str, Any]:
    scope = Scope(f"team:{team}", f"team {team!r}", budgets)
    return {
        "team": team,
        "object": "brace.team",
        "budgets": [b.to_dict() for b in budgets],
        "keys": sum(1 for k in gateway.keys.ring.all() if k.team == team),
        "usage": await gateway.keys.ledger.usage(scope),
    }


@_answers
async def list_teams(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    data = [await _team_usage(gateway, t, b) for t, b in gateway.keys.ring.teams().items()]
    return json_response(orjson.dumps({"object": "list", "data": data}))


@_answers
async def put_team(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    team = request.match_info["team"]
    if not 0 < len(team) <= 128:
        raise BadRequest("a team name has 1 to 128 characters", param="team")
    spec: TeamUpdate = _parse(TeamUpdate, await _body(gateway, request))
    budgets = tuple(b.build() for b in spec.budgets)
    await gateway.keys.ring.set_team(team, budgets)
    out = await _team_usage(gateway, team, budgets)
    out["propagation"] = await gateway.keys.ring.propagate()
    return json_response(orjson.dumps(out))


ROUTES = (
    Route("POST", "/admin/keys", create),
    Route("GET", "/admin/keys", list_keys),
    Route("GET", "/admin/keys/{key_id}", get_key),
    Route("PATCH", "/admin/keys/{key_id}", update_key),
    Route("DELETE", "/admin/keys/{key_id}", revoke_key),
    Route("POST", "/admin/keys/{key_id}/revoke", revoke_key),
    Route("GET", "/admin/teams", list_teams),
    Route("PUT", "/admin/teams/{team}", put_team),
)


def setup(app: web.Application, gateway: GatewayView) -> None:
    mount(app, ROUTES, gateway=gateway)
