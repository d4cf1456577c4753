"""Fixtures that run real servers on loopback ports.

Servers (``brace mock``, the gateway, small recording upstreams) run on their own
event loop in a background thread, so that tests can use both the sync and the
async ``openai`` SDK against them over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from brace.config import BraceConfig, parse_config
from brace.gateway import Gateway

from ._services import (
    PG_URL,
    REDIS_PASSWORD,
    SHARED_REDIS_URL,
    PrivateRedis,
    free_port,
    pg_up,
    shared_redis_up,
)

T = TypeVar("T")


class ServerThread:
    """An event loop in a thread that hosts servers for one test module."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._cleanups: list[Callable[[], Awaitable[None]]] = []
        self.tmp = tempfile.mkdtemp(prefix="brace-test-")

    def call(self, coro: Awaitable[T], timeout: float = 30) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return fut.result(timeout)

    async def _serve_app(self, app: web.Application) -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return runner, port

    def serve_app(self, app: web.Application) -> str:
        """Serve an aiohttp app; returns its base URL (no trailing slash)."""
        runner, port = self.call(self._serve_app(app))
        self._cleanups.append(runner.cleanup)
        return f"http://127.0.0.1:{port}"

    def mock(self, **config: Any) -> str:
        """Serve ``brace mock`` with a MockConfig built from ``config``; returns its base URL."""
        from brace.mock import MockConfig, create_app

        async def build() -> web.Application:
            return create_app(MockConfig(**config))

        return self.serve_app(self.call(build()))

    def gateway(self, config: BraceConfig | dict[str, Any]) -> tuple[Gateway, str]:
        if isinstance(config, dict):
            # each gateway gets its own request-log database, in a temporary folder
            telemetry = dict(config.get("telemetry") or {})
            telemetry.setdefault(
                "database", str(Path(self.tmp) / f"brace-{len(self._cleanups)}.db")
            )
            config = {**config, "telemetry": telemetry}
        cfg = config if isinstance(config, BraceConfig) else parse_config(config, env={})

        async def start() -> tuple[Gateway, int]:
            gw = Gateway(cfg)
            return gw, await gw.start(host="127.0.0.1", port=0)

        gw, port = self.call(start())
        self._cleanups.append(gw.stop)
        return gw, f"http://127.0.0.1:{port}"

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):  # best effort at teardown
                self.call(cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


class ServerProcess:
    """Mocks and a gateway in a child process (``_serve.py``): the load generator in
    the test process then does not share an interpreter lock with the servers."""

    def __init__(self, spec: dict[str, Any]) -> None:
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration._serve", json.dumps(spec)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the server process did not start")
        info = json.loads(line)
        self.gateway: str = info["gateway"]
        self.mocks: dict[str, str] = info["mocks"]

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def server_process() -> Iterator[Callable[[dict[str, Any]], ServerProcess]]:
    started: list[ServerProcess] = []

    def start(spec: dict[str, Any]) -> ServerProcess:
        sp = ServerProcess(spec)
        started.append(sp)
        return sp

    try:
        yield start
    finally:
        for sp in started:
            sp.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[ServerThread]:
    st = ServerThread()
    try:
        yield st
    finally:
        st.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.skipif(not pg_up(), reason="no PostgreSQL")),
    ]
)
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A key database that two gateways (or stores) share: a SQLite file, or a fresh
    PostgreSQL schema, dropped afterwards."""
    if request.param == "sqlite":
        yield str(tmp_path / "shared-keys.db")
        return
    import asyncpg  # type: ignore[import-untyped]

    schema = f"brace_keys_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?search_path={schema}"
    asyncio.run(run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    """A fresh key namespace on the machine's shared Redis, emptied afterwards."""
    if not shared_redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379")
    ns = f"brace-test-{uuid.uuid4().hex}"
    yield ns
    client = aioredis.Redis.from_url(SHARED_REDIS_URL)
    keys = [k async for k in client.scan_iter(match=f"{ns}:*", count=100)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def private_redis(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[PrivateRedis]:
    """A redis-server of the test's own on a free port, always stopped afterwards.

    Password-protected (``REDIS_PASSWORD``) and already started, unless the test
    parametrizes it indirectly with other options::

        @pytest.mark.parametrize(
            "private_redis", [{"password": None, "started": False}], indirect=True
        )
    """
    options: dict[str, Any] = getattr(request, "param", {})
    unknown = set(options) - {"password", "started"}
    assert not unknown, f"private_redis: unknown options {unknown}"
    password = options.get("password", REDIS_PASSWORD)
    server = PrivateRedis(free_port(), tmp_path, password=password)
    try:
        if options.get("started", True):
            await server.start()
        yield server
    finally:
        await server.stop()
