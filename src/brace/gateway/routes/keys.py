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
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from ...errors import BadRequest, BraceError, RequestError
from ...keys import KeyCreate, KeyUpdate, Scope, TeamUpdate, VirtualKey
from .._http import error_response, json_response, read_json, request_id
from .admin import admin_guard

if TYPE_CHECKING:
    from ..app import Gateway

__all__ = ["setup"]

_STATES = ("active", "expired", "revoked")


class _KeyNotFound(RequestError):
    status = 404
    code = "key_not_found"
    error_class = "not_found"


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        raise BadRequest(f"{where}: {msg}" if where else msg, param=where) from None


def setup(app: web.Application, gateway: Gateway) -> None:
    check = admin_guard(gateway)
    keys = gateway.keys
    ring = keys.ring
    limit = gateway.config.server.max_body_bytes
    models = sorted(gateway.config.models)

    def check_models(spec: KeyCreate | KeyUpdate) -> None:
        unknown = sorted(set(spec.models or ()) - set(models))
        if unknown:
            raise BadRequest(
                f"models: {', '.join(map(repr, unknown))} is not a model group of this gateway; "
                f"expected some of: {', '.join(models)}",
                param="models",
            )

    async def render_key(key: VirtualKey) -> dict[str, Any]:
        out = key.public(time.time())
        scope = ring.scopes(key)[0]
        out["usage"] = await keys.ledger.usage(scope)
        return out

    def find(request: web.Request) -> VirtualKey:
        key_id = request.match_info["key_id"]
        key = ring.get(key_id)
        if key is None:
            raise _KeyNotFound(f"no key with id {key_id!r}", param="key_id")
        return key

    def guarded(
        fn: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            denied = check(request)
            if denied is not None:
                return denied
            try:
                return await fn(request)
            except BraceError as exc:
                return error_response(exc, request_id(request))
            except ValueError as exc:
                return error_response(BadRequest(str(exc)), request_id(request))

        return handler

    async def create(request: web.Request) -> web.StreamResponse:
        spec: KeyCreate = _parse(KeyCreate, await read_json(request, limit))
        check_models(spec)
        key, plaintext = await ring.create(spec)
        out = await render_key(key)
        out["key"] = plaintext
        out["propagation"] = await ring.propagate()
        return json_response(orjson.dumps(out), status=201)

    async def list_keys(request: web.Request) -> web.StreamResponse:
        team = request.query.get("team")
        state = request.query.get("state")
        if state is not None and state not in _STATES:
            raise BadRequest(f"state must be one of {', '.join(_STATES)}", param="state")
        now = time.time()
        data = [
            await render_key(k)
            for k in ring.all()
            if (team is None or k.team == team) and (state is None or k.state(now) == state)
        ]
        return json_response(orjson.dumps({"object": "list", "data": data}))

    async def get_key(request: web.Request) -> web.StreamResponse:
        return json_response(orjson.dumps(await render_key(find(request))))

    async def update_key(request: web.Request) -> web.StreamResponse:
        key = find(request)
        spec: KeyUpdate = _parse(KeyUpdate, await read_json(request, limit))
        check_models(spec)
        out = await render_key(await ring.update(key, spec))
        out["propagation"] = await ring.propagate()
        return json_response(orjson.dumps(out))

    async def revoke_key(request: web.Request) -> web.StreamResponse:
        key = await ring.revoke(find(request))
        out = await render_key(key)
        out["propagation"] = await ring.propagate()
        return json_response(orjson.dumps(out))

    async def team_usage(team: str, budgets: Any) -> dict[str, Any]:
        scope = Scope(f"team:{team}", f"team {team!r}", budgets)
        return {
            "team": team,
            "object": "brace.team",
            "budgets": [b.to_dict() for b in budgets],
            "keys": sum(1 for k in ring.all() if k.team == team),
            "usage": await keys.ledger.usage(scope),
        }

    async def list_teams(request: web.Request) -> web.StreamResponse:
        data = [await team_usage(t, b) for t, b in ring.teams().items()]
        return json_response(orjson.dumps({"object": "list", "data": data}))

    async def put_team(request: web.Request) -> web.StreamResponse:
        team = request.match_info["team"]
        if not 0 < len(team) <= 128:
            raise BadRequest("a team name has 1 to 128 characters", param="team")
        spec: TeamUpdate = _parse(TeamUpdate, await read_json(request, limit))
        budgets = tuple(b.build() for b in spec.budgets)
        await ring.set_team(team, budgets)
        out = await team_usage(team, budgets)
        out["propagation"] = await ring.propagate()
        return json_response(orjson.dumps(out))

    app.router.add_post("/admin/keys", guarded(create))
    app.router.add_get("/admin/keys", guarded(list_keys))
    app.router.add_get("/admin/keys/{key_id}", guarded(get_key))
    app.router.add_patch("/admin/keys/{key_id}", guarded(update_key))
    app.router.add_delete("/admin/keys/{key_id}", guarded(revoke_key))
    app.router.add_post("/admin/keys/{key_id}/revoke", guarded(revoke_key))
    app.router.add_get("/admin/teams", guarded(list_teams))
    app.router.add_put("/admin/teams/{team}", guarded(put_team))
