"""The response cache policy: an exact-match hit answers at once, a miss is stored after success.

It sits after ``observe`` and ``deadline`` and before ``admission``: a hit never
queues, never reserves budget and never reaches a deployment.

Per request (``request.state``, filled by the gateway from headers with
:func:`cache_hints`, or set directly by in-process callers):

- ``cache_control``: tokens of ``x-brace-cache`` — ``no-cache`` (skip the lookup,
  still store the answer), ``no-store`` (do not store it), ``use`` (opt in, for a
  group whose cache ``mode`` is ``opt_in``; a no-op in ``opt_out`` mode);
- ``cache_max_age``: ``x-brace-cache-max-age`` in seconds: only an entry younger
  than this is a hit.

What it leaves in ``request.state``: ``cache`` = ``"hit"`` | ``"miss"`` | ``"bypass"``
(no lookup: not cacheable, not opted in, or ``no-cache``), and on a hit
``cache_age`` (seconds) and ``cache_saved_usd`` (when a price is known); for a
replayed stream also ``usage``, ``finish_reasons``, ``response_model`` and
``response_id``, as a provider would.  Every answer carries an ``x-brace-cache``
header with the same value; a hit also carries ``age``.

Stores happen in background tasks (the answer is never delayed by them):
:meth:`CachePolicy.flush` waits for them.  Not stored: errors, answers over
``max_entry_kb``, answers served by a *fallback* group (a degraded answer must not
outlive the outage), streams that did not end cleanly (error, client disconnect),
and answers that cannot be replayed faithfully (see :mod:`brace.cache.replay`).

Errors: :func:`cache_hints` raises :class:`~brace.errors.BadRequest` for an invalid
header; nothing else here raises: a failing backend is a miss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from ..config import CacheConfig, CacheOverride
from ..errors import BadRequest, ConfigError
from ..stack import CacheOutcome, Handler, Request, RequestState, Response, StreamResponse
from ..store.cache import CachedAnswer, SQLiteCache
from .backends import CacheBackend
from .key import cache_key
from .replay import Assembler, replay

__all__ = [
    "CONTROL_TOKENS",
    "CacheConfig",
    "CacheOverride",
    "CachePolicy",
    "PriceFn",
    "cache_hints",
    "make_backend",
]

log = logging.getLogger("brace.cache")

PriceFn = Callable[[str | None, str | None], tuple[float, float] | None]
"""``price(deployment, model) -> (input, output)`` USD per million tokens, or ``None``."""

CONTROL_TOKENS = frozenset({"use", "no-cache", "no-store"})

_FOLD_BYTES = 64 * 1024
"""A stream's frames are parsed into the assembler every this many bytes (and at its end)."""


def make_backend(
    config: CacheConfig, *, redis_url: str | None = None, namespace: str = "brace"
) -> CacheBackend:
    """The configured backend; :class:`ConfigError` if ``redis`` has no URL."""
    if config.backend == "redis":
        if not redis_url:
            raise ConfigError(
                "cache.backend: 'redis' needs server.redis_url (e.g. ${REDIS_URL}); "
                "set it, or use backend: sqlite"
            )
        from ._redis import RedisCache

        return RedisCache(redis_url, namespace)
    return SQLiteCache(config.path, max_bytes=config.max_size_mb * 2**20)


def cache_hints(headers: Mapping[str, str]) -> tuple[tuple[str, ...] | None, float | None]:
    """``(cache_control, cache_max_age)`` for ``request.state``, from the
    ``x-brace-cache*`` headers (gateway side); ``None`` where a header is absent."""
    control: tuple[str, ...] | None = None
    max_age: float | None = None
    raw = headers.get("x-brace-cache")
    if raw is not None:
        tokens = tuple(t.strip().lower() for t in raw.split(",") if t.strip())
        bad = [t for t in tokens if t not in CONTROL_TOKENS]
        if bad or not tokens:
            raise BadRequest(
                f"x-brace-cache must be one or more of use, no-cache, no-store "
                f"(comma-separated); got {raw[:40]!r}",
                param="x-brace-cache",
            )
        control = tokens
    raw = headers.get("x-brace-cache-max-age")
    if raw is not None:
        try:
            age = float(raw)
        except ValueError:
            age = -1.0
        if not 0 <= age < float("inf"):
            raise BadRequest(
                f"x-brace-cache-max-age must be a number of seconds >= 0; got {raw[:40]!r}",
                param="x-brace-cache-max-age",
            )
        max_age = age
    return control, max_age


class CachePolicy:
    """Exact-match response cache for one model group (see the module docstring).

    ``wall`` is wall-clock seconds (entry ages; a fake in tests); ``price`` prices a
    hit's usage for ``cache_saved_usd``; at most ``max_pending`` stores run at once
    (beyond, answers are not stored, and counted in ``stats["store_dropped"]``).
    """

    def __init__(
        self,
        config: CacheConfig,
        backend: CacheBackend,
        *,
        wall: Callable[[], float] = time.time,
        price: PriceFn | None = None,
        max_pending: int = 256,
    ) -> None:
        self.config = config
        self.backend = backend
        self._wall = wall
        self._price = price
        self._max_entry = config.max_entry_kb * 1024
        self._max_pending = max_pending
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"hit": 0, "miss": 0, "bypass": 0, "stored": 0, "store_dropped": 0}

    # -- public

    async def flush(self) -> None:
        """Wait until every pending store is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def key(self, req: Request) -> str | None:
        """The request's cache key, or ``None`` if it is not cacheable at all."""
        body = req.body
        if req.operation == "chat":
            if body.get("logprobs") or body.get("top_logprobs") is not None:
                return None  # logprobs are not carried by the cached stream form
        elif req.operation != "embeddings" or req.stream:
            return None
        tenant = None if self.config.shared else req.state.tenant or ""
        try:
            return cache_key(req.operation, req.model, body, tenant)
        except (TypeError, orjson.JSONEncodeError):
            return None

    def wrap(self, inner: Handler) -> Handler:
        async def cache(req: Request) -> Response | StreamResponse:
            state = req.state
            control = _tokens(state.cache_control)
            key = None
            if self.config.mode == "opt_in" and "use" not in control:
                pass
            else:
                key = self.key(req)
            if key is None:
                return _tag(await inner(req), self._outcome(state, "bypass"))
            if "no-cache" in control:
                outcome = self._outcome(state, "bypass")
            else:
                try:
                    answer = await self.backend.get(key)
                except Exception:  # backends should not raise; a lookup failure is a miss
                    log.exception("brace cache: a lookup failed")
                    answer = None
                if answer is not None:
                    hit = self._serve(req, answer, state.cache_max_age)
                    if hit is not None:
                        return hit
                outcome = self._outcome(state, "miss")
            result = await inner(req)
            if "no-store" in control or state.fallback:
                return _tag(result, outcome)
            if isinstance(result, Response):
                self._spawn(self._store_json(key, req, result))
                return _tag(result, outcome)
            return self._tee(key, req, result, outcome)

        return cache

    # -- hits

    def _outcome(self, state: RequestState, outcome: CacheOutcome) -> str:
        state.cache = outcome
        self.stats[outcome] += 1
        return outcome

    def _serve(
        self, req: Request, answer: CachedAnswer, max_age: float | None
    ) -> Response | StreamResponse | None:
        age = max(0.0, self._wall() - answer.created_at)
        if max_age is not None and age > max_age:
            return None
        headers = {"x-brace-cache": "hit", "age": str(int(age))}
        result: Response | StreamResponse
        if req.stream:
            try:
                parsed = orjson.loads(answer.body)
            except orjson.JSONDecodeError:
                return None
            if not isinstance(parsed, dict):
                return None
            options = req.body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            frame = replay(parsed, include_usage=include_usage)
            if frame is None:
                return None
            result = StreamResponse(_one(frame), headers=headers)
            state = req.state
            state.usage = answer.usage
            model, rid = parsed.get("model"), parsed.get("id")
            state.response_model = model if isinstance(model, str) else None
            state.response_id = rid if isinstance(rid, str) else None
            state.finish_reasons = [
                c["finish_reason"]
                for c in parsed.get("choices") or ()
                if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
            ]
        else:
            result = Response(answer.body, headers=headers)
        self._outcome(req.state, "hit")
        req.state.cache_age = age
        saved = self._saved(answer)
        if saved is not None:
            req.state.cache_saved_usd = saved
        return result

    def _saved(self, answer: CachedAnswer) -> float | None:
        if self._price is None or not answer.usage:
            return None
        try:
            price = self._price(answer.deployment, answer.model)
        except Exception:  # a pricing bug must not fail a hit
            return None
        if price is None:
            return None
        tokens_in = answer.usage.get("prompt_tokens")
        tokens_out = answer.usage.get("completion_tokens")
        tokens_in = tokens_in if isinstance(tokens_in, int) else 0
        tokens_out = tokens_out if isinstance(tokens_out, int) else 0
        return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000

    # -- stores

    def _spawn(self, coro: Any) -> None:
        if len(self._tasks) >= self._max_pending:
            coro.close()
            self.stats["store_dropped"] += 1
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _put(self, key: str, body: bytes, doc: dict[str, Any], req: Request) -> None:
        if len(body) > self._max_entry:
            return
        usage = doc.get("usage")
        model = doc.get("model")
        answer = CachedAnswer(
            body=body,
            usage=usage if isinstance(usage, dict) else None,
            created_at=self._wall(),
            deployment=req.state.deployment,
            model=model if isinstance(model, str) else None,
        )
        try:
            await self.backend.set(key, answer, self.config.ttl)
        except Exception:  # backends should not raise; a cache must never break a request
            log.exception("brace cache: storing an answer failed")
            return
        self.stats["stored"] += 1

    async def _store_json(self, key: str, req: Request, result: Response) -> None:
        if result.status != 200 or len(result.body) > self._max_entry:
            return
        try:
            doc = result.json()
        except orjson.JSONDecodeError:
            return
        if not _complete(req.operation, doc):
            return
        await self._put(key, result.body, doc, req)

    def _tee(self, key: str, req: Request, result: StreamResponse, outcome: str) -> StreamResponse:
        limit = self._max_entry

        async def relay() -> AsyncIterator[bytes]:
            acc = Assembler()
            pending: list[bytes] = []
            size = 0
            async for frame in result.chunks:
                if not acc.failed:
                    pending.append(frame)
                    size += len(frame)
                    if size >= _FOLD_BYTES:
                        acc.feed_frames(pending)
                        pending, size = [], 0
                        if acc.size > limit:
                            acc.failed = True
                yield frame
            # the upstream stream ended cleanly: no error, no disconnect
            if not acc.failed and req.state.stream_error is None:
                self._spawn(self._store_stream(key, req, acc, pending))

        return StreamResponse(
            relay(),
            headers={**result.headers, "x-brace-cache": outcome},
            close=result.aclose,
            upstream=result.upstream,
        )

    async def _store_stream(
        self, key: str, req: Request, acc: Assembler, pending: list[bytes]
    ) -> None:
        acc.feed_frames(pending)
        doc = acc.result(req.state.usage)
        if doc is None:
            return
        await self._put(key, orjson.dumps(doc), doc, req)


def _tokens(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(t.strip().lower() for t in value.split(","))
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(str(t).lower() for t in value)
    return frozenset()


def _tag(result: Response | StreamResponse, outcome: str) -> Response | StreamResponse:
    result.headers["x-brace-cache"] = outcome
    return result


def _complete(operation: str, doc: dict[str, Any]) -> bool:
    if "error" in doc:
        return False
    if operation == "embeddings":
        return isinstance(doc.get("data"), list)
    choices = doc.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and c.get("finish_reason") is not None for c in choices)
    )


async def _one(frame: bytes) -> AsyncIterator[bytes]:
    yield frame
