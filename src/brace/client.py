"""The in-process client: Brace's stack without a proxy.

:class:`AsyncClient` and :class:`Client` are built from the same config and run the
same :class:`~brace.engine.Engine` stack as ``brace serve``, behind an OpenAI-like
surface::

    async with brace.AsyncClient("brace.yaml") as client:
        reply = await client.chat.completions.create(model="chat", messages=[...])
        print(reply.choices[0].message.content)
        async for chunk in await client.chat.completions.create(model="chat", messages=[...], stream=True):
            ...

    with brace.Client("brace.yaml") as client:          # sync, on a private event loop thread
        reply = client.chat.completions.create(model="chat", messages=[...])

Answers are :class:`Obj` views over the plain JSON dicts (attribute and item
access, ``.to_dict()``); no validation model is built per call.  A body is checked
as the gateway checks it (:mod:`brace._validate`): a bad one raises the same
:class:`~brace.errors.BadRequest`, message and ``param``.  Failures raise
Brace's own errors (:mod:`brace.errors`), each with ``http_status`` and an
OpenAI-shaped ``to_dict()``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson

from ._validate import check_body
from .config import BraceConfig, load_config, parse_config
from .engine import Engine
from .runs import RunContext, current_run, run_context
from .stack import Operation, Request, Response, RunRef, StreamResponse, frame_payloads

__all__ = ["AsyncClient", "AsyncStream", "Client", "Obj", "Stream"]


class Obj:
    """Attribute access over a JSON dict (nested dicts and lists wrapped on access)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return _wrap(self._data[name])
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            return None  # like the OpenAI SDK's optional fields

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key])

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        return self._data == (other._data if isinstance(other, Obj) else other)

    def __hash__(self) -> int:  # pragma: no cover - views are not hashable values
        raise TypeError("Obj is not hashable")

    def __repr__(self) -> str:
        return f"Obj({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Obj(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _load(config: BraceConfig | str | os.PathLike[str] | Mapping[str, Any]) -> BraceConfig:
    if isinstance(config, BraceConfig):
        return config
    if isinstance(config, str | os.PathLike):
        return load_config(Path(config))
    return parse_config(dict(config), source="<Client config>")


class AsyncStream:
    """Chunks of a streamed answer as :class:`Obj`; close it (or use ``async with``)
    if you stop early, so that the upstream request is cancelled."""

    def __init__(self, stream: StreamResponse, request: Request) -> None:
        self._stream = stream
        self.request = request

    def __aiter__(self) -> AsyncIterator[Obj]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Obj]:
        try:
            async for frame in self._stream:
                for payload in frame_payloads(frame):
                    yield Obj(orjson.loads(payload))
        finally:
            await self._stream.aclose()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _AsyncCompletions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, **body: Any) -> Any:
        """``chat.completions.create`` with OpenAI's arguments; ``stream=True`` gives an
        :class:`AsyncStream`.  ``timeout=`` (seconds) lowers the request's deadline."""
        return await self._client._call("chat", body)


class _AsyncChat:
    def __init__(self, client: AsyncClient) -> None:
        self.completions = _AsyncCompletions(client)


class _AsyncEmbeddings:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, **body: Any) -> Any:
        return await self._client._call("embeddings", body)


class AsyncClient:
    """Brace in-process, async."""

    def __init__(
        self,
        config: BraceConfig | str | os.PathLike[str] | Mapping[str, Any],
        *,
        engine: Engine | None = None,
    ) -> None:
        cfg = _load(config)
        self.engine = engine if engine is not None else Engine(cfg)
        self.chat = _AsyncChat(self)
        self.embeddings = _AsyncEmbeddings(self)
        self._seq = 0

    def run(
        self, run_id: str, *, agent: str | None = None, label: str | None = None
    ) -> AbstractContextManager[RunContext]:
        """``with client.run("run-id", agent="researcher"):`` puts every call inside
        into that agent run (a context variable: sync and async code alike)."""
        return run_context(run_id, agent=agent, label=label)

    async def _call(
        self, operation: Operation, body: dict[str, Any], run: RunContext | None = None
    ) -> Any:
        timeout = body.pop("timeout", None)
        run = run if run is not None else current_run()
        model, stream = check_body(operation, body)  # the gateway's checks, the same errors
        if not self.engine.started:
            await self.engine.start()
        self._seq += 1
        req = Request(operation, model, body, stream, f"inproc-{os.getpid()}-{self._seq}")
        req.state.owner = "local"
        if run is not None:
            req.state.run = RunRef(run.run_id, "local", "context", run.agent, run.label)
        if isinstance(timeout, int | float):
            req.state.timeout = float(timeout)
        result = await self.engine.handler(model)(req)
        if isinstance(result, StreamResponse):
            return AsyncStream(result, req)
        assert isinstance(result, Response)
        return Obj(result.json())

    async def aclose(self) -> None:
        await self.engine.aclose()

    async def __aenter__(self) -> AsyncClient:
        await self.engine.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ----------------------------------------------------------------------------- sync


class Stream:
    """A sync iterator over a streamed answer; ``close()`` cancels the upstream."""

    def __init__(self, client: Client, stream: AsyncStream) -> None:
        self._client = client
        self._stream = stream
        self._iter = stream.__aiter__()

    def __iter__(self) -> Iterator[Obj]:
        return self

    def __next__(self) -> Obj:
        try:
            chunk: Obj = self._client._run(anext(self._iter))
        except StopAsyncIteration:
            raise StopIteration from None
        return chunk

    def close(self) -> None:
        self._client._run(self._stream.aclose())

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Completions:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, **body: Any) -> Any:
        # the caller's context (client.run) is read here: the call runs on another thread
        result = self._client._run(self._client._async._call("chat", body, current_run()))
        return Stream(self._client, result) if isinstance(result, AsyncStream) else result


class _Chat:
    def __init__(self, client: Client) -> None:
        self.completions = _Completions(client)


class _Embeddings:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, **body: Any) -> Any:
        return self._client._run(self._client._async._call("embeddings", body, current_run()))


class Client:
    """Brace in-process, sync: the async client on a private event loop thread."""

    def __init__(self, config: BraceConfig | str | os.PathLike[str] | Mapping[str, Any]) -> None:
        self._async = AsyncClient(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="brace-client", daemon=True
        )
        self._thread.start()
        self.chat = _Chat(self)
        self.embeddings = _Embeddings(self)
        self.engine = self._async.engine
        self.run = self._async.run

    def _run(self, coro: Any) -> Any:
        if self._loop.is_closed():
            raise RuntimeError("this brace.Client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
