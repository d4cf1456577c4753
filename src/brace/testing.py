"""A testing kit that ships with the library: a fake clock and a scriptable provider.

Use them to test code built on Brace without sleeping and without a network::

    clock = FakeClock()
    provider = ScriptedProvider([Overloaded("busy"), ok_response("hi")])
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from .stack import Request, Response, StreamResponse

__all__ = ["FakeClock", "ScriptedProvider", "ok_response", "ok_stream"]


class FakeClock:
    """Virtual monotonic time. ``sleep`` parks the caller until :meth:`advance`
    moves time past its wake-up point; ``autoadvance=True`` makes every sleep
    return at once after moving time forward (handy for sequential code)."""

    def __init__(self, start: float = 1000.0, *, autoadvance: bool = False) -> None:
        self._now = start
        self.autoadvance = autoadvance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.slept.append(seconds)
        if self.autoadvance:
            self._now += seconds
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        if seconds == 0:
            self._wake()
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper that is due."""
        self._now += seconds
        self._wake()

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def call_at(self, when: float, callback: Callable[[], None]) -> asyncio.Future[None]:
        """Run ``callback`` once virtual time reaches ``when``; cancel the returned
        future to unschedule it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: None if f.cancelled() else callback())
        heapq.heappush(self._sleepers, (when, next(self._seq), fut))
        self._wake()
        return fut

    def timeout(self, delay: float | None) -> _FakeTimeout:
        return _FakeTimeout(self, delay)


class _FakeTimeout:
    """``asyncio.timeout`` on virtual time: cancels the task when the clock passes
    the limit and turns that cancellation into :class:`TimeoutError`."""

    def __init__(self, clock: FakeClock, delay: float | None) -> None:
        self._clock = clock
        self._delay = delay
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.Future[None] | None = None
        self._expired = False

    async def __aenter__(self) -> _FakeTimeout:
        self._task = asyncio.current_task()
        self.reset(self._delay)
        return self

    async def __aexit__(self, et: object, e: object, tb: object) -> bool | None:
        if self._timer is not None:
            self._timer.cancel()
        if self._expired and et is asyncio.CancelledError:
            assert self._task is not None
            self._task.uncancel()
            raise TimeoutError from None
        return None

    def _fire(self) -> None:
        if self._task is not None and not self._task.done():
            self._expired = True
            self._task.cancel()

    def reset(self, delay: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None:
            self._timer = self._clock.call_at(self._clock.now() + max(0.0, delay), self._fire)

    def expired(self) -> bool:
        return self._expired


def ok_response(
    content: str = "ok", *, model: str = "fake", usage: dict[str, int] | None = None
) -> Response:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": usage or {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return Response(orjson.dumps(body), _parsed=body)


def ok_stream(pieces: Sequence[str] = ("o", "k"), *, model: str = "fake") -> StreamResponse:
    async def chunks() -> Any:
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield (
                b"data: "
                + orjson.dumps(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"content": piece},
                                "finish_reason": "stop" if last else None,
                            }
                        ],
                    }
                )
                + b"\n\n"
            )

    return StreamResponse(chunks())


class ScriptedProvider:
    """A provider that answers from a script: each item is a Response,
    StreamResponse, an exception to raise, or a callable taking the request."""

    def __init__(
        self, script: Iterable[Any], *, id: str = "fake", repeat_last: bool = True
    ) -> None:
        self.id = id
        self._script = list(script)
        self._repeat_last = repeat_last
        self.calls: list[Request] = []

    async def __call__(self, req: Request) -> Response | StreamResponse:
        self.calls.append(req)
        if not self._script:
            raise AssertionError(f"ScriptedProvider {self.id}: script exhausted")
        item = (
            self._script[0]
            if (self._repeat_last and len(self._script) == 1)
            else self._script.pop(0)
        )
        if callable(item) and not isinstance(item, Response | StreamResponse):
            item = item(req)
            if asyncio.iscoroutine(item):
                item = await item
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Response | StreamResponse)
        return item
