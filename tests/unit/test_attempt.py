import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from brace.config import Timeouts
from brace.errors import (
    DeadlineExceeded,
    MalformedResponse,
    ServerError,
    UpstreamTimeout,
)
from brace.events import AttemptEnded, Event, EventBus
from brace.policies.attempt import AttemptPolicy
from brace.stack import (
    Handler,
    Request,
    RequestState,
    Response,
    StreamResponse,
    build_stack,
    collect_stream,
    sse_frame,
)
from brace.testing import FakeClock, ScriptedProvider, ok_response, ok_stream

from .conftest import settle

TIMEOUTS = Timeouts(first_token=10.0, stall=5.0, total=60.0)


class Harness:
    def __init__(self, script: list[Any], *, timeouts: Timeouts = TIMEOUTS) -> None:
        self.clock = FakeClock()
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.provider = ScriptedProvider(script, id="a")
        policy = AttemptPolicy("a", "g", timeouts, clock=self.clock, events=bus)
        self.handler: Handler = build_stack(self.provider, [policy])


async def hang(req: Request) -> Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class TrackedStream:
    """An upstream stream whose chunks are released by the test, one gate per chunk."""

    def __init__(self, chunks: list[bytes], *, gated_from: int = 0) -> None:
        self.chunks = chunks
        self.gated_from = gated_from
        self.gates = [asyncio.Event() for _ in chunks]
        self.gen_closed = False
        self.close_calls = 0

    async def _gen(self) -> AsyncIterator[bytes]:
        try:
            for i, chunk in enumerate(self.chunks):
                if i >= self.gated_from:
                    await self.gates[i].wait()
                yield chunk
            if self.gated_from > len(self.chunks):
                await asyncio.Event().wait()
        finally:
            self.gen_closed = True

    async def _close(self) -> None:
        self.close_calls += 1

    def response(self, req: Request) -> StreamResponse:
        return StreamResponse(self._gen(), close=self._close)


def chunk(text: str) -> bytes:
    """One SSE frame holding one chunk event."""
    return sse_frame([orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})])


# ----------------------------------------------------------------------------- JSON answers


async def test_json_success_is_recorded() -> None:
    h = Harness([ok_response("hi")])
    req = Request("chat", "m", {}, request_id="r1")
    res = await h.handler(req)
    assert isinstance(res, Response) and res.json()["choices"][0]["message"]["content"] == "hi"
    assert [a[:4] for a in req.state.attempts] == [("a", None, 200, 0.0)]
    assert h.events == [AttemptEnded("r1", "g", "a", None, 200, 0.0, hedge=False)]


async def test_json_total_timeout() -> None:
    h = Harness([hang])
    req = Request("chat", "m", {}, request_id="r1")
    task = asyncio.create_task(h.handler(req))
    await settle()
    h.clock.advance(59.9)
    await settle()
    assert not task.done()
    h.clock.advance(0.1)
    with pytest.raises(UpstreamTimeout) as info:
        await task
    assert info.value.phase == "total"
    assert info.value.deployment == "a"
    assert "60s" in info.value.message
    assert [a[:4] for a in req.state.attempts] == [("a", "timeout", None, pytest.approx(60.0))]
    [event] = h.events
    assert isinstance(event, AttemptEnded)
    assert (event.deployment, event.error_class, event.status) == ("a", "timeout", None)


async def test_upstream_failure_is_recorded_and_reraised() -> None:
    err = ServerError("boom", deployment="a", upstream_status=500)
    h = Harness([err])
    req = Request("chat", "m", {}, request_id="r1")
    with pytest.raises(ServerError) as info:
        await h.handler(req)
    assert info.value is err
    assert [a[:4] for a in req.state.attempts] == [("a", "server_error", 500, 0.0)]
    assert h.events == [AttemptEnded("r1", "g", "a", "server_error", 500, 0.0)]


async def test_attempts_accumulate_across_calls() -> None:
    h = Harness([ServerError("boom", deployment="a", upstream_status=502), ok_response()])
    req = Request("chat", "m", {})
    with pytest.raises(ServerError):
        await h.handler(req)
    await h.handler(req)
    assert [a[:4] for a in req.state.attempts] == [
        ("a", "server_error", 502, 0.0),
        ("a", None, 200, 0.0),
    ]


async def test_hedge_flag_is_reported_on_the_event() -> None:
    h = Harness([ok_response()])
    await h.handler(Request("chat", "m", {}, request_id="r1", state=RequestState(hedge=True)))
    assert h.events == [AttemptEnded("r1", "g", "a", None, 200, 0.0, hedge=True)]


# ----------------------------------------------------------------------------- deadline


async def test_deadline_nearer_than_timeout_gives_deadline_exceeded() -> None:
    h = Harness([hang])
    req = Request("chat", "m", {}, deadline=h.clock.now() + 2.0)
    task = asyncio.create_task(h.handler(req))
    await settle()
    h.clock.advance(1.9)
    await settle()
    assert not task.done()
    h.clock.advance(0.1)
    with pytest.raises(DeadlineExceeded) as info:
        await task
    assert info.value.deployment == "a"
    assert [a[:4] for a in req.state.attempts] == [
        ("a", "deadline_exceeded", None, pytest.approx(2.0))
    ]


async def test_deadline_nearer_than_first_token_timeout_on_a_stream() -> None:
    h = Harness([hang])
    req = Request("chat", "m", {}, stream=True, deadline=h.clock.now() + 3.0)
    task = asyncio.create_task(h.handler(req))
    await settle()
    h.clock.advance(3.0)
    with pytest.raises(DeadlineExceeded):
        await task


@pytest.mark.parametrize("offset", [0.0, -1.0])
async def test_passed_deadline_does_not_call_the_provider(offset: float) -> None:
    h = Harness([ok_response()])
    req = Request("chat", "m", {}, deadline=h.clock.now() + offset)
    with pytest.raises(DeadlineExceeded) as info:
        await h.handler(req)
    assert info.value.deployment == "a"
    assert h.provider.calls == []


async def test_deadline_further_than_timeout_keeps_timeout_phase() -> None:
    h = Harness([hang])
    req = Request("chat", "m", {}, deadline=h.clock.now() + 1000.0)
    task = asyncio.create_task(h.handler(req))
    await settle()
    h.clock.advance(60.0)
    with pytest.raises(UpstreamTimeout) as info:
        await task
    assert info.value.phase == "total"


# ----------------------------------------------------------------------------- streams


async def test_stream_success_yields_every_chunk() -> None:
    h = Harness([ok_stream(["a", "b", "c"])])
    req = Request("chat", "m", {}, stream=True, request_id="r1")
    res = await h.handler(req)
    assert isinstance(res, StreamResponse)
    chunks = await collect_stream(res)
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["a", "b", "c"]
    assert [a[:4] for a in req.state.attempts] == [("a", None, 200, 0.0)]
    assert h.events == [AttemptEnded("r1", "g", "a", None, 200, 0.0)]


async def test_stream_is_returned_only_after_first_chunk() -> None:
    up = TrackedStream([chunk("x"), chunk("y")])
    h = Harness([up.response])
    task = asyncio.create_task(h.handler(Request("chat", "m", {}, stream=True)))
    await settle()
    assert not task.done()  # the provider answered, but no chunk yet
    up.gates[0].set()
    res = await task
    assert isinstance(res, StreamResponse)
    up.gates[1].set()
    assert [c async for c in res] == [chunk("x"), chunk("y")]


async def test_stream_first_token_timeout_closes_upstream() -> None:
    up = TrackedStream([chunk("x")])  # the first chunk never comes
    h = Harness([up.response])
    req = Request("chat", "m", {}, stream=True)
    task = asyncio.create_task(h.handler(req))
    await settle()
    h.clock.advance(9.9)
    await settle()
    assert not task.done()
    h.clock.advance(0.1)
    with pytest.raises(UpstreamTimeout) as info:
        await task
    assert info.value.phase == "first_token"
    assert up.gen_closed and up.close_calls == 1
    assert [a[:4] for a in req.state.attempts] == [("a", "timeout", None, pytest.approx(10.0))]


async def test_stream_first_token_timeout_when_provider_itself_hangs() -> None:
    h = Harness([hang])
    task = asyncio.create_task(h.handler(Request("chat", "m", {}, stream=True)))
    await settle()
    h.clock.advance(10.0)
    with pytest.raises(UpstreamTimeout) as info:
        await task
    assert info.value.phase == "first_token"


async def test_empty_stream_is_malformed_and_closed() -> None:
    up = TrackedStream([])
    h = Harness([up.response])
    req = Request("chat", "m", {}, stream=True)
    with pytest.raises(MalformedResponse) as info:
        await h.handler(req)
    assert info.value.deployment == "a"
    assert up.close_calls == 1
    assert [a[:4] for a in req.state.attempts] == [("a", "malformed_response", None, 0.0)]


async def test_stall_after_first_chunk_raises_while_iterating() -> None:
    up = TrackedStream([chunk("x"), chunk("y"), chunk("z")], gated_from=1)
    h = Harness([up.response])
    res = await h.handler(Request("chat", "m", {}, stream=True))
    assert isinstance(res, StreamResponse)
    it = aiter(res)
    assert await anext(it) == chunk("x")

    async def next_chunk() -> bytes:
        return await anext(it)

    # a chunk within the stall window restarts the timer
    task = asyncio.create_task(next_chunk())
    await settle()
    h.clock.advance(4.0)
    up.gates[1].set()
    assert await task == chunk("y")

    task = asyncio.create_task(next_chunk())
    await settle()
    h.clock.advance(4.9)  # 8.9s since the first chunk, 4.9s since the last
    await settle()
    assert not task.done()
    h.clock.advance(0.1)
    with pytest.raises(UpstreamTimeout) as info:
        await task
    assert info.value.phase == "stall"
    assert info.value.deployment == "a"
    await res.aclose()
    assert up.close_calls == 1


async def test_closing_the_returned_stream_closes_upstream() -> None:
    up = TrackedStream([chunk("x"), chunk("y")], gated_from=1)
    h = Harness([up.response])
    res = await h.handler(Request("chat", "m", {}, stream=True))
    assert isinstance(res, StreamResponse)
    assert await anext(aiter(res)) == chunk("x")
    await res.aclose()
    assert up.gen_closed and up.close_calls == 1
