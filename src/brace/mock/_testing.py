"""``serve_mock``: run the mock on a free loopback port for the length of a block."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from brace.mock._app import ENGINE_KEY, create_app
from brace.mock._config import MockConfig
from brace.mock._engine import Engine
from brace.mock._server import start_server

__all__ = ["RunningMock", "serve_mock"]


@dataclass(frozen=True, slots=True)
class RunningMock:
    """A mock being served: ``url`` is the base URL (OpenAI SDK: ``url + "/v1"``)."""

    url: str
    engine: Engine


@asynccontextmanager
async def serve_mock(
    config: MockConfig,
    *,
    clock: Callable[[], float] | None = None,
    rng: random.Random | None = None,
    transport: Literal["fast", "aiohttp"] = "fast",
    host: str = "127.0.0.1",
) -> AsyncIterator[RunningMock]:
    """Serve ``config`` on ``host`` and a free port with the chosen transport."""
    if transport == "aiohttp":
        app = create_app(config, clock=clock, rng=rng)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield RunningMock(f"http://{host}:{port}", app[ENGINE_KEY])
        finally:
            await runner.cleanup()
    else:
        server = await start_server(config, host, 0, clock=clock, rng=rng)
        try:
            yield RunningMock(f"http://{host}:{server.port}", server.engine)
        finally:
            await server.stop(grace=1.0)
