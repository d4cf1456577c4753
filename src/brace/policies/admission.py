"""Admission: a bounded priority queue per model group, fair between tenants.

When no deployment of the group can take a request now (pacing or concurrency,
signalled by :class:`~brace.errors.NoCapacity`), the request waits here rather than
being sent into a 429.  The queue is

- **prioritised**: ``interactive`` requests always go before ``batch`` ones
  (``x-brace-priority``; default ``interactive``);
- **fair**: within a priority, tenants (API keys, or the caller's bearer token
  hash) take turns, so one tenant's flood cannot starve the others;
- **honest**: a request whose deadline cannot be met given its place in the queue
  and the group's current rate is refused at once with 429 and a truthful
  ``retry-after`` (:class:`~brace.errors.Shed`), never held until it times out; so
  is one arriving at a full queue (``capacity.max_queue``, default 1000).

One dispatcher task per group (alive only while requests wait) lets waiters go one at
a time: a woken request tries the stack; once its pacing reservation is granted
(``request.state.on_admit``) the next one goes; if it still finds no capacity it
returns to the head of its queue and the dispatcher sleeps until capacity is due (on
the injected clock) or an in-flight request finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ..clock import Clock
from ..errors import DeadlineExceeded, NoCapacity, Shed
from ..stack import Handler, Request, RequestState, Response, StreamResponse

__all__ = ["PRIORITIES", "AdmissionPolicy", "CapacityFreed"]

PRIORITIES = ("interactive", "batch")
_MAX_IDLE_POLL = 1.0
"""With no known time of capacity, the dispatcher re-tries at least this often (other
gateway instances release capacity this one cannot see)."""


class _Waiter:
    __slots__ = ("go", "outcome", "priority", "tenant")

    def __init__(self, priority: str, tenant: str) -> None:
        self.priority = priority
        self.tenant = tenant
        self.go: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.outcome: asyncio.Future[float | bool | None] | None = None


class AdmissionPolicy:
    def __init__(
        self,
        group: str,
        *,
        max_queue: int,
        clock: Clock,
        rate: Callable[[int], float | None],
    ) -> None:
        self._group = group
        self._max_queue = max_queue
        self._clock = clock
        self._rate = rate
        self._queues: dict[str, OrderedDict[str, deque[_Waiter]]] = {
            p: OrderedDict() for p in PRIORITIES
        }
        self._size = 0
        self._dispatcher: asyncio.Task[None] | None = None
        self._released: asyncio.Event | None = None
        self.shed = 0
        self.admitted_after_wait = 0

    # ----------------------------------------------------------------- queue

    @property
    def depth(self) -> int:
        return self._size

    def depth_by_priority(self) -> dict[str, int]:
        return {p: sum(len(d) for d in q.values()) for p, q in self._queues.items()}

    def _push(self, w: _Waiter, *, front: bool) -> None:
        tenants = self._queues[w.priority]
        dq = tenants.get(w.tenant)
        if dq is None:
            dq = tenants[w.tenant] = deque()
        if front:
            dq.appendleft(w)
            tenants.move_to_end(w.tenant, last=False)
        else:
            dq.append(w)
        self._size += 1

    def _pop(self) -> _Waiter | None:
        for p in PRIORITIES:
            tenants = self._queues[p]
            while tenants:
                tenant, dq = next(iter(tenants.items()))
                if not dq:
                    del tenants[tenant]
                    continue
                w = dq.popleft()
                self._size -= 1
                if dq:
                    tenants.move_to_end(tenant)  # the next tenant's turn
                else:
                    del tenants[tenant]
                return w
        return None

    def _remove(self, w: _Waiter) -> None:
        dq = self._queues[w.priority].get(w.tenant)
        if dq is not None and w in dq:
            dq.remove(w)
            self._size -= 1
            if not dq:
                del self._queues[w.priority][w.tenant]

    def _ahead(self, priority: str) -> int:
        n = 0
        for p in PRIORITIES:
            n += sum(len(d) for d in self._queues[p].values())
            if p == priority:
                break
        return n

    def released(self) -> None:
        """An in-flight request finished somewhere in the group: capacity may exist."""
        if self._released is not None:
            self._released.set()

    # ----------------------------------------------------------------- policy

    def wrap(self, inner: Handler) -> Handler:
        async def admission(req: Request) -> Response | StreamResponse:
            if self._size == 0:
                try:
                    return await inner(req)
                except NoCapacity as nc:
                    first_wait = nc.wait
            else:
                first_wait = None
            return await self._wait_then_run(req, inner, first_wait)

        return admission

    def _estimate(self, priority: str, first_wait: float | None, tokens: int) -> float:
        ahead = self._ahead(priority) + 1
        rate = self._rate(tokens)
        queued = ahead / rate if rate else 0.0
        return max(first_wait or 0.0, queued)

    async def _wait_then_run(
        self, req: Request, inner: Handler, first_wait: float | None
    ) -> Response | StreamResponse:
        state = req.state
        priority = state.priority or "interactive"
        tenant = state.tenant or ""
        tokens = state.prompt_tokens_est or 1
        now = self._clock.now()
        estimate = self._estimate(priority, first_wait, tokens)
        if self._size >= self._max_queue:
            self.shed += 1
            raise Shed(
                f"model group {self._group!r}: the admission queue is full "
                f"({self._max_queue} waiting); retry in about {estimate:.1f}s",
                retry_after=max(estimate, 0.05),
            )
        if req.deadline is not None and now + estimate > req.deadline:
            self.shed += 1
            raise Shed(
                f"model group {self._group!r}: at the current rate this request would wait "
                f"about {estimate:.1f}s for capacity, past its deadline "
                f"({req.deadline - now:.1f}s left); retry in about {estimate:.1f}s",
                retry_after=max(estimate, 0.05),
            )
        w = _Waiter(priority, tenant)
        self._push(w, front=False)
        self._ensure_dispatcher()
        loop = asyncio.get_running_loop()
        try:
            while True:
                limit = None if req.deadline is None else req.deadline - self._clock.now()
                try:
                    async with self._clock.timeout(limit):
                        await w.go
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"model group {self._group!r}: the deadline passed while waiting for "
                        "capacity",
                    ) from None
                outcome = w.outcome
                assert outcome is not None
                state.on_admit = _admit_callback(outcome, state, self._clock, now)
                try:
                    result = await inner(req)
                except NoCapacity as nc:
                    state.on_admit = None
                    w.go = loop.create_future()
                    self._push(w, front=True)
                    if outcome.done():  # no capacity on a retry after admission
                        self._ensure_dispatcher()
                    else:
                        outcome.set_result(nc.wait)
                    continue
                self.admitted_after_wait += 1
                return result
        finally:
            state.on_admit = None
            if not w.go.done() or w.go.cancelled():  # still queued (or timed out there)
                self._remove(w)
            if w.outcome is not None and not w.outcome.done():
                w.outcome.set_result(True)

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.ensure_future(self._dispatch())

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        if self._released is None:
            self._released = asyncio.Event()
        released_event = self._released
        while self._size:
            w = self._pop()
            if w is None:
                break
            if w.go.done():  # its caller went away or timed out meanwhile
                continue
            outcome: asyncio.Future[float | bool | None] = loop.create_future()
            w.outcome = outcome
            w.go.set_result(None)
            result = await outcome
            if result is True:
                continue  # admitted (or gone): the next one
            released_event.clear()
            sleep_for = _MAX_IDLE_POLL if result is None else min(float(result), _MAX_IDLE_POLL)
            sleeper = asyncio.ensure_future(self._clock.sleep(sleep_for))
            released = asyncio.ensure_future(released_event.wait())
            try:
                await asyncio.wait((sleeper, released), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (sleeper, released):
                    t.cancel()
                    with contextlib.suppress(BaseException):
                        await t

    def snapshot(self) -> dict[str, Any]:
        return {
            "queue_depth": self._size,
            "by_priority": self.depth_by_priority(),
            "shed": self.shed,
            "admitted_after_wait": self.admitted_after_wait,
        }


class CapacityFreed:
    """The signal a pacer gives when one of its slots frees: every admission queue that
    listens may try again.  Made before the pacers and the queues (the pacers call it,
    the queues listen), so that building them has no loop."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def __call__(self) -> None:
        for callback in self._listeners:
            callback()


def _admit_callback(
    outcome: asyncio.Future[float | bool | None],
    state: RequestState,
    clock: Clock,
    queued_at: float,
) -> Callable[[], None]:
    """Called by pacing once the request's reservation is granted and waited for: the
    next waiter may go, and the request notes how long it waited in all
    (``queue_wait``: the queue, then the reservation)."""

    def admitted() -> None:
        state.queue_wait = clock.now() - queued_at
        if not outcome.done():
            outcome.set_result(True)

    return admitted
