"""``create_app``: the mock upstream as an ``aiohttp.web.Application``.

The aiohttp transport is the reference one (tests use it with ``TestServer``); the CLI serves
the same :class:`Engine` with the lighter transport in ``_server`` for throughput.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from brace.mock._config import MockConfig
from brace.mock._core import MockRequest
from brace.mock._engine import Engine, Route
from brace.mock._wire import Reply

__all__ = ["ENGINE_KEY", "create_app"]

ENGINE_KEY = web.AppKey("brace_mock_engine", Engine)


class _AiohttpSink:
    """Lets a streamer write through an aiohttp ``StreamResponse``."""

    __slots__ = ("_request", "response")

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.response: web.StreamResponse | None = None

    @property
    def closed(self) -> bool:
        transport = self._request.transport
        return transport is None or transport.is_closing()

    async def start(
        self, status: int, headers: Mapping[str, str], content_length: int | None
    ) -> None:
        response = web.StreamResponse(status=status, headers=headers)
        if content_length is not None:
            response.content_length = content_length
        self.response = response
        await response.prepare(self._request)

    async def write(self, data: bytes) -> None:
        assert self.response is not None
        if self.closed:
            raise ConnectionResetError("client disconnected")
        await self.response.write(data)

    async def end(self) -> None:
        assert self.response is not None
        await self.response.write_eof()

    async def finish(self, data: bytes) -> None:
        assert self.response is not None
        if self.closed:
            raise ConnectionResetError("client disconnected")
        await self.response.write_eof(data)

    def abort(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()


def _handler(
    engine: Engine, route: Route
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    handle = engine.handle

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        outcome = await handle(
            route,
            MockRequest(request.method, request.path, request.query_string, request.headers, body),
        )
        if isinstance(outcome, Reply):
            return web.Response(status=outcome.status, body=outcome.body, headers=outcome.headers)
        sink = _AiohttpSink(request)
        await outcome.run(sink)
        return sink.response if sink.response is not None else web.Response(status=499)

    return handler


def create_app(
    config: MockConfig,
    *,
    clock: Callable[[], float] | None = None,
    rng: random.Random | None = None,
) -> web.Application:
    """Build the mock upstream; ``clock`` defaults to ``time.monotonic`` and ``rng`` to
    ``random.Random(config.seed)``. The engine is at ``app[ENGINE_KEY]``."""
    engine = Engine(
        config,
        clock if clock is not None else time.monotonic,
        rng if rng is not None else random.Random(config.seed),
    )
    app = web.Application()
    app[ENGINE_KEY] = engine
    for (method, path), route in engine.routes.items():
        app.router.add_route(method, path, _handler(engine, route))

    async def _on_shutdown(_: web.Application) -> None:
        engine.stop()

    app.on_shutdown.append(_on_shutdown)
    return app
