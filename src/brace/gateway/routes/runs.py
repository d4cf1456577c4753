"""Agent runs, read from the store (``telemetry.store``): the admin API and the
caller's own runs.

::

    GET /admin/runs             the most recently active first; filters status, agent,
                                key (the tenant: a key id, master, local), since, until
                                (last activity), q (run id prefix or part of the agent);
                                limit (1-1000, default 50), before (next_cursor)
    GET /admin/runs/{run_id}    one run with its steps (?key= when several tenants have
                                that run id: 400 otherwise); 404 if unknown
    GET /v1/runs/{run_id}       the caller's own run (a caller route): the run of the
                                caller's tenant only, 404 for any other

A run is keyed by ``(tenant, run_id)``: another key's run answers exactly as a missing
one.  With ``telemetry.store: off`` every route answers 503; a bad parameter is a 400
that names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...errors import NotFound
from .._access import Access, Route, mount
from .._http import GatewayView, caller, owner_of
from .logs import int_param, reads_log, text_param, time_param

if TYPE_CHECKING:
    from ...store.requests import Store

__all__ = ["ROUTES", "get_run", "list_runs", "my_run", "setup"]


@reads_log
async def list_runs(request: web.Request, store: Store) -> Any:
    rows, cursor = await store.list_runs(
        status=text_param(request, "status"),
        agent=text_param(request, "agent"),
        tenant=text_param(request, "key"),
        since=time_param(request, "since"),
        until=time_param(request, "until"),
        q=text_param(request, "q"),
        limit=int_param(request, "limit", 50, 1, 1000),
        before=text_param(request, "before"),
    )
    return {"object": "list", "data": rows, "next_cursor": cursor}


def _not_found(run_id: str) -> NotFound:
    return NotFound(f"no run {run_id[:80]!r}", param="run_id")


@reads_log
async def get_run(request: web.Request, store: Store) -> Any:
    run_id = request.match_info["run_id"]
    found = await store.get_run(text_param(request, "key"), run_id)
    if found is None:
        raise _not_found(run_id)
    return found


@reads_log
async def my_run(request: web.Request, store: Store) -> Any:
    run_id = request.match_info["run_id"]
    found = await store.get_run(owner_of(caller(request)), run_id)
    if found is None:  # another tenant's run reads as a missing one
        raise _not_found(run_id)
    return found


ROUTES = (
    Route("GET", "/admin/runs", list_runs),
    Route("GET", "/admin/runs/{run_id}", get_run),
    Route("GET", "/v1/runs/{run_id}", my_run, Access.CALLER),
)


def setup(app: web.Application, gateway: GatewayView) -> None:
    mount(app, ROUTES, gateway=gateway)
