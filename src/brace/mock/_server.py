"""A minimal HTTP/1.1 server for the :class:`Engine`, used by ``brace mock``.

aiohttp's server costs ~150 µs per request on a small machine; this transport costs a
fraction of that, so the mock never limits a benchmark. It speaks just what clients of an
LLM API send: keep-alive, ``Content-Length`` request bodies (chunked request bodies get 411),
``Expect: 100-continue``, and chunked or fixed-length responses with flow control.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import cast

from brace.mock._config import MockConfig
from brace.mock._core import MockRequest
from brace.mock._engine import Engine
from brace.mock._wire import Reply, Streamer

__all__ = ["MockServer", "start_server"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus} | {529: b"Site Overloaded"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _head(status: int, headers: Mapping[str, str], length: int | None, close: bool) -> bytes:
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    for name, value in headers.items():
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    if length is None:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    else:
        parts.append(b"Content-Length: %d\r\n" % length)
    parts.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
    return b"".join(parts)


class _Sink:
    """Streams a response over the connection's transport.

    The status line and headers wait for the first body write so that a response costs
    one ``send`` when it is written in one go.
    """

    __slots__ = ("_chunked", "_conn", "_pending")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._chunked = False
        self._pending = b""

    @property
    def closed(self) -> bool:
        return self._conn.closed

    async def start(
        self, status: int, headers: Mapping[str, str], content_length: int | None
    ) -> None:
        self._chunked = content_length is None
        self._pending = _head(status, headers, content_length, not self._conn.keep_alive)

    def _frame(self, data: bytes) -> bytes:
        if self._chunked and data:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if self._pending:
            data, self._pending = self._pending + data, b""
        return data

    async def write(self, data: bytes) -> None:
        data = self._frame(data)
        if data:
            await self._conn.send(data)

    async def end(self) -> None:
        await self.finish(b"")

    async def finish(self, data: bytes) -> None:
        data = self._frame(data)
        if self._chunked:
            data += b"0\r\n\r\n"
        if data:
            await self._conn.send(data)

    def abort(self) -> None:
        self._conn.abort()


class _Connection(asyncio.Protocol):
    """One client connection: parse requests in order, answer each through the engine."""

    def __init__(self, engine: Engine, connections: set[_Connection]) -> None:
        self._engine = engine
        self._connections = connections
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._connections.discard(self)
        if not self._lost.done():
            self._lost.set_result(None)
        if self._task is not None:
            self._task.cancel()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._task is None:
            self._next()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    @property
    def lost(self) -> asyncio.Future[None]:
        """Resolved when the connection is gone."""
        return self._lost

    def close_idle(self) -> None:
        """Close now if no request is in flight (used at shutdown)."""
        self.keep_alive = False
        if self._task is None and self._transport is not None:
            self._transport.close()

    async def send(self, data: bytes) -> None:
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise ConnectionResetError("client disconnected")
        transport.write(data)
        drain = self._drain
        if drain is not None and not drain.done():
            await drain

    def _fail(self, status: int) -> None:
        if self._transport is not None:
            self._transport.write(_head(status, {}, 0, True))
            self._transport.close()

    def _next(self) -> None:
        """Start the next complete request in the buffer, if there is one."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                self._fail(431)
            return
        try:
            lines = buffer[:end].decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400)
            return
        if "transfer-encoding" in headers:
            self._fail(411)
            return
        if length > _MAX_BODY or length < 0:
            self._fail(413)
            return
        start = end + 4
        if len(buffer) < start + length:
            if headers.get("expect", "").lower() == "100-continue" and self._transport:
                headers.pop("expect")
                buffer[:end] = (
                    "\r\n".join([lines[0], *(f"{k}: {v}" for k, v in headers.items())])
                ).encode("latin-1")
                self._transport.write(_CONTINUE)
            return
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        connection = headers.get("connection", "").lower()
        self.keep_alive = (
            connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        )
        path, _, query = target.partition("?")
        request = MockRequest(method, path, query, headers, body)
        task = asyncio.get_running_loop().create_task(self._serve(request))
        self._task = task
        task.add_done_callback(self._served)

    def _served(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if self.closed or self._transport is None:
            return
        if not self.keep_alive:
            self._transport.close()
        elif self._buffer:
            self._next()

    async def _serve(self, request: MockRequest) -> None:
        engine = self._engine
        route = engine.routes.get((request.method, request.path))
        try:
            if route is None:
                outcome: Reply | Streamer = engine.not_found(request)
            else:
                outcome = await engine.handle(route, request)
            if isinstance(outcome, Reply):
                await self.send(
                    _head(outcome.status, outcome.headers, len(outcome.body), not self.keep_alive)
                    + outcome.body
                )
            else:
                await outcome.run(_Sink(self))
        except ConnectionError:
            self.abort()
        except Exception:
            logging.getLogger(__name__).exception("brace mock failed on %s", request.path)
            self.keep_alive = False
            self._fail(500)


class MockServer:
    """A running fast-transport mock; ``stop()`` closes it."""

    def __init__(
        self, engine: Engine, server: asyncio.Server, connections: set[_Connection]
    ) -> None:
        self.engine = engine
        self._server = server
        self._connections = connections

    @property
    def port(self) -> int:
        """The bound TCP port (useful with port 0)."""
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, wake hung requests, close connections within ``grace`` seconds."""
        self.engine.stop()
        self._server.close()
        for conn in list(self._connections):
            conn.close_idle()
        if self._connections:
            await asyncio.wait([conn.lost for conn in self._connections], timeout=grace)
        for conn in list(self._connections):
            conn.abort()


async def start_server(
    config: MockConfig,
    host: str = "127.0.0.1",
    port: int = 4010,
    *,
    clock: Callable[[], float] | None = None,
    rng: random.Random | None = None,
    backlog: int = 2048,
) -> MockServer:
    """Serve the mock with the fast transport; same defaults as :func:`create_app`."""
    engine = Engine(
        config,
        clock if clock is not None else time.monotonic,
        rng if rng is not None else random.Random(config.seed),
    )
    connections: set[_Connection] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(engine, connections), host, port, backlog=backlog
    )
    return MockServer(engine, server, connections)
