"""CachePolicy with a ScriptedProvider counting upstream calls and a fake wall clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from brace.cache import (
    CacheConfig,
    CachedAnswer,
    CacheOverride,
    CachePolicy,
    MemoryCache,
    assemble,
    cache_hints,
    make_backend,
)
from brace.errors import BadRequest, ConfigError, Overloaded, ServerError
from brace.stack import Request, Response, StreamResponse, build_stack, collect_stream
from brace.store.cache import SQLiteCache
from brace.testing import FakeClock, ScriptedProvider, ok_response, ok_stream

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
MESSAGES = [{"role": "user", "content": "hi"}]


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": MESSAGES, **extra}


def answer(text: str) -> Callable[[Request], Response]:
    def make(req: Request) -> Response:
        req.state.deployment = "dep-a"
        return ok_response(text, model="gpt-x", usage=USAGE)

    return make


def stream(
    *pieces: str, usage: dict[str, int] | None = USAGE
) -> Callable[[Request], StreamResponse]:
    def make(req: Request) -> StreamResponse:
        req.state.deployment = "dep-a"
        if usage is not None:
            req.state.usage = usage  # as providers note usage they stripped from the stream
        return ok_stream(pieces, model="gpt-x")

    return make


class Cache:
    def __init__(self, script: list[Any], *, price: Any = None, **config: Any) -> None:
        self.clock = FakeClock(start=1_700_000_000.0)
        self.backend = MemoryCache(wall=self.clock.now)
        self.provider = ScriptedProvider(script)
        self.policy = CachePolicy(
            CacheConfig(enabled=True, **config), self.backend, wall=self.clock.now, price=price
        )
        self.handler = build_stack(self.provider, [self.policy])

    @property
    def upstream_calls(self) -> int:
        return len(self.provider.calls)

    async def call(
        self,
        *,
        stream: bool = False,
        tenant: str = "t1",
        op: str = "chat",
        b: dict[str, Any] | None = None,
        **fields: Any,
    ) -> tuple[Request, Any]:
        req = Request(op, "chat", b if b is not None else body(stream=stream), stream)  # type: ignore[arg-type]
        req.state.tenant = tenant
        for name, value in fields.items():
            setattr(req.state, name, value)
        result = await self.handler(req)
        if isinstance(result, StreamResponse):
            out: Any = (result.headers, await collect_stream(result))
        else:
            out = result
        await self.policy.flush()
        return req, out


def text_of(out: Any) -> str:
    if isinstance(out, Response):
        return str(out.json()["choices"][0]["message"]["content"])
    doc = assemble(out[1])
    assert doc is not None
    return str(doc["choices"][0]["message"]["content"])


async def test_miss_then_hit_without_upstream() -> None:
    c = Cache([answer("first"), answer("second")])
    req, out = await c.call()
    assert req.state.cache == "miss" and out.headers["x-brace-cache"] == "miss"
    c.clock.advance(5)
    req, hit = await c.call()
    assert c.upstream_calls == 1
    assert req.state.cache == "hit" and req.state.cache_age == 5
    assert hit.body == out.body and hit.headers == {"x-brace-cache": "hit", "age": "5"}
    assert c.policy.stats["hit"] == 1 and c.policy.stats["miss"] == 1


async def test_stream_miss_serves_a_later_json_hit_and_stream_hit() -> None:
    c = Cache([stream("Hel", "lo!"), answer("never")])
    req, (headers, chunks) = await c.call(stream=True)
    assert req.state.cache == "miss" and headers["x-brace-cache"] == "miss"
    assert "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks) == "Hello!"

    req, hit = await c.call(stream=False)
    assert req.state.cache == "hit" and text_of(hit) == "Hello!"
    assert hit.json()["usage"] == USAGE  # the usage the provider noted in the state
    req, (headers, replayed) = await c.call(stream=True)
    assert req.state.cache == "hit" and headers["x-brace-cache"] == "hit"
    assert text_of((headers, replayed)) == "Hello!"
    assert not any("usage" in ch for ch in replayed)  # not asked for
    assert req.state.usage == USAGE and req.state.finish_reasons == ["stop"]
    assert c.upstream_calls == 1


async def test_json_miss_replays_as_stream_with_usage_when_asked() -> None:
    c = Cache([answer("The answer is 42."), stream("never")])
    _, original = await c.call()
    b = body(stream=True, stream_options={"include_usage": True})
    req, (_, chunks) = await c.call(stream=True, b=b)
    assert req.state.cache == "hit" and c.upstream_calls == 1
    assert chunks[-1]["usage"] == USAGE and chunks[-1]["choices"] == []
    doc = assemble(chunks)
    assert doc is not None
    assert doc["choices"][0]["message"] == original.json()["choices"][0]["message"]


async def test_stream_stored_only_when_it_completes() -> None:
    c = Cache([stream("a", "b", "c")])
    req = Request("chat", "chat", body(stream=True), True)
    result = await c.handler(req)
    assert isinstance(result, StreamResponse)
    await anext(result.chunks)  # the client reads one frame and goes away
    await result.aclose()
    await c.policy.flush()
    assert len(c.backend) == 0
    _, _ = await c.call(stream=True)
    assert c.upstream_calls == 2 and len(c.backend) == 1


async def test_stream_error_midway_is_not_stored() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'
        raise ServerError("upstream died")

    c = Cache([lambda req: StreamResponse(chunks()), answer("ok")])
    with pytest.raises(ServerError):
        await c.call(stream=True)
    assert len(c.backend) == 0
    req, _ = await c.call()
    assert req.state.cache == "miss"


async def test_errors_and_non_200_are_not_stored() -> None:
    c = Cache(
        [Overloaded("busy"), Response(b'{"error":{"message":"x"}}', status=500), answer("ok")]
    )
    with pytest.raises(Overloaded):
        await c.call()
    await c.call()
    assert len(c.backend) == 0
    await c.call()
    assert len(c.backend) == 1


async def test_no_cache_skips_lookup_but_stores() -> None:
    c = Cache([answer("old"), answer("new"), answer("never")])
    await c.call()
    req, out = await c.call(cache_control=("no-cache",))
    assert req.state.cache == "bypass" and text_of(out) == "new"
    req, out = await c.call()
    assert req.state.cache == "hit" and text_of(out) == "new"
    assert c.upstream_calls == 2


async def test_no_store_keeps_lookup_but_does_not_store() -> None:
    c = Cache([answer("a"), answer("b"), answer("c")])
    req, _ = await c.call(cache_control="no-store")
    assert req.state.cache == "miss" and len(c.backend) == 0
    await c.call()
    req, out = await c.call(cache_control=("no-store",))
    assert req.state.cache == "hit" and text_of(out) == "b"
    assert c.upstream_calls == 2


async def test_max_age_accepts_only_younger_entries() -> None:
    c = Cache([answer("a"), answer("b")])
    await c.call()
    c.clock.advance(100)
    req, out = await c.call(cache_max_age=200.0)
    assert req.state.cache == "hit" and text_of(out) == "a"
    req, out = await c.call(cache_max_age=50.0)
    assert req.state.cache == "miss" and text_of(out) == "b"
    req, out = await c.call(cache_max_age=0.0)  # the fresh entry, age 0
    assert req.state.cache == "hit" and text_of(out) == "b"
    assert c.upstream_calls == 2


async def test_ttl_expiry() -> None:
    c = Cache([answer("a"), answer("b")], ttl=60)
    await c.call()
    c.clock.advance(59)
    req, _ = await c.call()
    assert req.state.cache == "hit"
    c.clock.advance(2)
    req, out = await c.call()
    assert req.state.cache == "miss" and text_of(out) == "b"


async def test_opt_in_mode() -> None:
    c = Cache([answer("a"), answer("b"), answer("c")], mode="opt_in")
    req, out = await c.call()
    assert req.state.cache == "bypass" and out.headers["x-brace-cache"] == "bypass"
    assert len(c.backend) == 0
    req, _ = await c.call(cache_control=("use",))
    assert req.state.cache == "miss"
    req, out = await c.call(cache_control=("use",))
    assert req.state.cache == "hit" and text_of(out) == "b"
    req, _ = await c.call()  # not opted in: no lookup
    assert req.state.cache == "bypass" and c.upstream_calls == 3


async def test_tenants_are_isolated_unless_shared() -> None:
    c = Cache([answer("a"), answer("b")])
    await c.call(tenant="alice")
    req, out = await c.call(tenant="bob")
    assert req.state.cache == "miss" and text_of(out) == "b"
    s = Cache([answer("a"), answer("b")], shared=True)
    await s.call(tenant="alice")
    req, out = await s.call(tenant="bob")
    assert req.state.cache == "hit" and text_of(out) == "a"


async def test_fallback_answers_are_not_stored() -> None:
    def via_fallback(req: Request) -> Response:
        req.state.fallback = ["chat", "backup"]
        return ok_response("degraded")

    c = Cache([via_fallback, answer("real")])
    await c.call()
    assert len(c.backend) == 0
    req, out = await c.call()
    assert req.state.cache == "miss" and text_of(out) == "real"


async def test_oversized_answers_are_not_stored() -> None:
    big = "x" * 3000
    c = Cache([answer(big), stream(*([big] * 30)), answer("small")], max_entry_kb=2)
    await c.call()
    await c.call(stream=True)  # 90 KB of text: folded, then abandoned
    assert len(c.backend) == 0
    await c.call()
    assert len(c.backend) == 1


async def test_uncacheable_request_bypasses() -> None:
    c = Cache([answer("a"), answer("b")])
    req, _ = await c.call(b=body(logprobs=True))
    assert req.state.cache == "bypass"
    req, out = await c.call(b=body(logprobs=True))
    assert text_of(out) == "b" and len(c.backend) == 0


async def test_embeddings_are_cached() -> None:
    emb = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "model": "e",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    c = Cache([Response(orjson.dumps(emb)), Response(b"{}")])
    b = {"model": "emb", "input": "hello"}
    await c.call(op="embeddings", b=b)
    req, out = await c.call(op="embeddings", b=dict(b))
    assert req.state.cache == "hit" and orjson.loads(out.body) == emb


async def test_saved_cost_on_hit() -> None:
    seen: list[tuple[str | None, str | None]] = []

    def price(deployment: str | None, model: str | None) -> tuple[float, float] | None:
        seen.append((deployment, model))
        return (2.0, 8.0)

    c = Cache([answer("a")], price=price)
    req, _ = await c.call()
    assert req.state.cache_saved_usd is None
    req, _ = await c.call()
    assert req.state.cache_saved_usd == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    assert seen == [("dep-a", "gpt-x")]
    unpriced = Cache([answer("a")], price=lambda d, m: None)
    await unpriced.call()
    req, _ = await unpriced.call()
    assert req.state.cache == "hit" and req.state.cache_saved_usd is None


class Broken:
    async def start(self) -> None: ...

    async def get(self, key: str) -> CachedAnswer | None:
        raise RuntimeError("disk on fire")

    async def set(self, key: str, answer: CachedAnswer, ttl: float) -> None:
        raise RuntimeError("disk on fire")

    async def aclose(self) -> None: ...


async def test_a_failing_backend_is_a_miss() -> None:
    provider = ScriptedProvider([answer("a")])
    policy = CachePolicy(CacheConfig(enabled=True), Broken())
    handler = build_stack(provider, [policy])
    for _ in range(2):
        req = Request("chat", "chat", body())
        out = await handler(req)
        await policy.flush()
        assert isinstance(out, Response) and req.state.cache == "miss"
    assert len(provider.calls) == 2 and policy.stats["stored"] == 0


async def test_pending_stores_are_bounded() -> None:
    c = Cache([answer("a")])
    c.policy._max_pending = 0
    await c.call()
    assert c.policy.stats["store_dropped"] == 1 and len(c.backend) == 0


def test_cache_hints() -> None:
    assert cache_hints({}) == (None, None)
    assert cache_hints({"x-brace-cache": "No-Cache, no-store", "x-brace-cache-max-age": "30"}) == (
        ("no-cache", "no-store"),
        30.0,
    )
    for headers in (
        {"x-brace-cache": "sometimes"},
        {"x-brace-cache": " , "},
        {"x-brace-cache-max-age": "-1"},
        {"x-brace-cache-max-age": "soon"},
        {"x-brace-cache-max-age": "inf"},
    ):
        with pytest.raises(BadRequest):
            cache_hints(headers)


def test_config_defaults_overrides_and_backend_choice(tmp_path: Any) -> None:
    cfg = CacheConfig()
    assert (
        cfg.enabled,
        cfg.mode,
        cfg.ttl,
        cfg.max_entry_kb,
        cfg.shared,
        cfg.backend,
        cfg.path,
    ) == (
        False,
        "opt_out",
        3600.0,
        256,
        False,
        "sqlite",
        "brace-cache.db",
    )
    merged = CacheConfig(enabled=True, ttl=10).merged(CacheOverride(mode="opt_in"))
    assert (merged.enabled, merged.mode, merged.ttl) == (True, "opt_in", 10)
    assert cfg.merged(None) is cfg
    with pytest.raises(ConfigError):
        make_backend(CacheConfig(backend="redis"))
    assert isinstance(make_backend(CacheConfig(path=str(tmp_path / "c.db"))), SQLiteCache)
    with pytest.raises(ValueError):
        CacheConfig(ttl=0)
    with pytest.raises(ValueError):
        CacheConfig(modes="opt_in")  # type: ignore[call-arg]
