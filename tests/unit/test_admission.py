"""The admission queue on a fake clock: a capacity gate stands in for the stack below
(it answers :class:`NoCapacity` until the test opens a slot), so the order in which
waiters are let go is exact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from brace.errors import DeadlineExceeded, NoCapacity, Shed
from brace.policies.admission import AdmissionPolicy
from brace.stack import Handler, Request, RequestState, Response
from brace.testing import FakeClock, ok_response

from .conftest import settle


class Capacity:
    """The stack below admission: a request gets through when a slot is open,
    else NoCapacity with ``wait``.  ``hold`` makes the next call hang before it
    knows (a slow reservation)."""

    def __init__(self, wait: float | None = 1.0) -> None:
        self.slots = 0
        self.wait = wait
        self.admitted: list[str] = []
        self.tries = 0
        self.hold: asyncio.Event | None = None

    async def __call__(self, req: Request) -> Response:
        self.tries += 1
        if self.hold is not None:
            hold, self.hold = self.hold, None
            await hold.wait()
        if self.slots <= 0:
            raise NoCapacity("full", wait=self.wait)
        self.slots -= 1
        on_admit = req.state.on_admit
        if on_admit is not None:
            on_admit()
        self.admitted.append(req.request_id)
        return ok_response(req.request_id)


class Queue:
    def __init__(
        self,
        *,
        max_queue: int = 100,
        rate: Callable[[int], float | None] = lambda tokens: None,
        wait: float | None = 1.0,
    ) -> None:
        self.clock = FakeClock()
        self.capacity = Capacity(wait)
        self.policy = AdmissionPolicy("chat", max_queue=max_queue, clock=self.clock, rate=rate)
        self.handler: Handler = self.policy.wrap(self.capacity)

    def submit(
        self,
        rid: str,
        *,
        priority: str | None = None,
        tenant: str | None = None,
        deadline: float | None = None,
    ) -> asyncio.Future[Any]:
        state = RequestState(prompt_tokens_est=10, priority=priority, tenant=tenant)
        req = Request(
            operation="chat",
            model="chat",
            body={},
            request_id=rid,
            deadline=None if deadline is None else self.clock.now() + deadline,
            state=state,
        )
        return asyncio.ensure_future(self.handler(req))

    async def settle(self) -> None:
        await settle()

    async def open_one(self) -> None:
        """One slot of capacity, and the time the dispatcher waits for it."""
        self.capacity.slots += 1
        self.clock.advance(1.0)
        await self.settle()


async def test_the_fast_path_goes_straight_through_when_nothing_waits() -> None:
    q = Queue()
    q.capacity.slots = 3
    results = [await q.submit(f"r{i}") for i in range(3)]
    assert [r.json()["choices"][0]["message"]["content"] for r in results] == ["r0", "r1", "r2"]
    assert q.capacity.tries == 3
    assert q.policy._dispatcher is None  # no task, no queue
    assert q.policy.snapshot() == {
        "queue_depth": 0,
        "by_priority": {"interactive": 0, "batch": 0},
        "shed": 0,
        "admitted_after_wait": 0,
    }


async def test_no_capacity_queues_the_request_until_capacity_comes() -> None:
    q = Queue()
    task = q.submit("r")
    await q.settle()
    assert not task.done()
    assert q.policy.depth == 1
    await q.open_one()
    assert (await task).json()["choices"][0]["message"]["content"] == "r"
    assert q.policy.depth == 0
    assert q.policy.admitted_after_wait == 1


async def test_the_wait_in_the_queue_is_noted_for_the_trace() -> None:
    q = Queue()
    waiting = Request("chat", "chat", {}, request_id="w", state=RequestState(prompt_tokens_est=10))
    task = asyncio.ensure_future(q.handler(waiting))
    await q.settle()
    q.clock.advance(0.5)
    await q.open_one()  # one more second, then a slot
    await task
    assert waiting.state.queue_wait == pytest.approx(1.5)
    q.capacity.slots = 1
    direct = Request("chat", "chat", {}, request_id="d", state=RequestState(prompt_tokens_est=10))
    await q.handler(direct)
    assert direct.state.queue_wait is None  # the fast path waited for nothing


async def test_the_dispatcher_sleeps_for_the_known_wait() -> None:
    q = Queue(wait=0.25)
    task = q.submit("r")
    await q.settle()
    q.capacity.slots = 1
    q.clock.advance(0.2)
    await q.settle()
    assert not task.done()  # still asleep: capacity is due at 0.25
    q.clock.advance(0.05)
    await q.settle()
    assert task.done()


async def test_a_release_wakes_the_dispatcher_before_the_wait_is_over() -> None:
    q = Queue(wait=None)  # at the concurrency limit: no known time
    task = q.submit("r")
    await q.settle()
    q.capacity.slots = 1
    q.policy.released()
    await q.settle()
    assert task.done()


async def test_while_requests_wait_newcomers_queue_behind_them() -> None:
    q = Queue()
    first = q.submit("first")
    await q.settle()
    q.capacity.slots = 1  # a slot opens, but "first" is ahead: no fast path
    second = q.submit("second")
    await q.settle()
    assert q.capacity.admitted == [] or q.capacity.admitted == ["first"]
    await q.open_one()
    await asyncio.gather(first, second)
    assert q.capacity.admitted == ["first", "second"]


async def test_interactive_requests_go_before_batch_ones() -> None:
    q = Queue()
    tasks = [q.submit("b1", priority="batch"), q.submit("b2", priority="batch")]
    tasks += [q.submit("i1"), q.submit("i2", priority="interactive")]
    await q.settle()
    assert q.policy.depth_by_priority() == {"interactive": 2, "batch": 2}
    for _ in range(4):
        await q.open_one()
    await asyncio.gather(*tasks)
    assert q.capacity.admitted == ["i1", "i2", "b1", "b2"]


async def test_tenants_take_turns_within_a_priority() -> None:
    q = Queue()
    tasks = [q.submit(f"a{i}", tenant="A") for i in range(3)]
    tasks += [q.submit(f"b{i}", tenant="B") for i in range(3)]
    tasks += [q.submit("c0", tenant="C")]
    await q.settle()
    for _ in range(7):
        await q.open_one()
    await asyncio.gather(*tasks)
    assert q.capacity.admitted == ["a0", "b0", "c0", "a1", "b1", "a2", "b2"]


async def test_a_full_queue_sheds_at_once() -> None:
    q = Queue(max_queue=2, rate=lambda tokens: 4.0)
    waiting = [q.submit("r0"), q.submit("r1")]
    await q.settle()
    with pytest.raises(Shed) as info:
        await q.submit("r2")
    assert info.value.http_status == 429
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.retry_after == pytest.approx(3 / 4.0)  # two ahead, then this one
    assert "queue is full" in info.value.message
    assert q.policy.shed == 1 and q.policy.depth == 2
    for _ in range(2):
        await q.open_one()
    await asyncio.gather(*waiting)


async def test_no_queue_at_all_sheds_whatever_finds_no_capacity() -> None:
    q = Queue(max_queue=0)
    with pytest.raises(Shed):
        await q.submit("r")
    q.capacity.slots = 1
    await q.submit("r")  # with capacity, the fast path still works


async def test_an_unmeetable_deadline_is_shed_with_the_estimate_as_retry_after() -> None:
    q = Queue(rate=lambda tokens: 10.0)
    waiting = [q.submit(f"r{i}") for i in range(29)]
    await q.settle()
    before = q.capacity.tries
    with pytest.raises(Shed) as info:
        await q.submit("late", deadline=1.0)
    assert info.value.retry_after == pytest.approx(3.0)  # 29 ahead + itself at 10/s
    assert "past its deadline" in info.value.message
    assert q.capacity.tries == before  # refused without trying the stack
    assert info.value.headers()["retry-after"] == "3"
    ok = q.submit("patient", deadline=5.0)  # 3 s away: it may wait
    await q.settle()
    assert not ok.done()
    for t in [*waiting, ok]:
        t.cancel()
    await asyncio.gather(*waiting, ok, return_exceptions=True)


async def test_the_first_wait_counts_when_nobody_is_ahead() -> None:
    q = Queue(rate=lambda tokens: None, wait=2.5)
    with pytest.raises(Shed) as info:
        await q.submit("r", deadline=1.0)
    assert info.value.retry_after == pytest.approx(2.5)


async def test_an_interactive_deadline_only_counts_interactive_requests_ahead() -> None:
    q = Queue(rate=lambda tokens: 10.0)
    batch = [q.submit(f"b{i}", priority="batch") for i in range(50)]
    await q.settle()
    urgent = q.submit("urgent", deadline=2.0)  # 5 s of batch ahead, but it goes first
    await q.settle()
    assert not urgent.done()
    with pytest.raises(Shed):
        await q.submit("batch-late", priority="batch", deadline=2.0)
    await q.open_one()
    assert (await urgent).json()["choices"][0]["message"]["content"] == "urgent"
    for t in batch:
        t.cancel()
    await asyncio.gather(*batch, return_exceptions=True)


async def test_the_deadline_passing_while_waiting_raises_deadline_exceeded() -> None:
    q = Queue(wait=0.5)
    task = q.submit("r", deadline=2.0)
    other = q.submit("other")
    await q.settle()
    q.clock.advance(2.0)
    await q.settle()
    with pytest.raises(DeadlineExceeded):
        await task
    await q.open_one()
    assert (await other).json()["choices"][0]["message"]["content"] == "other"
    assert q.capacity.admitted == ["other"]


async def test_gone_waiters_leave_the_queue_at_once() -> None:
    q = Queue(max_queue=2)
    first = q.submit("first")
    gone = q.submit("gone", deadline=2.0)
    await q.settle()
    q.clock.advance(2.0)  # "gone" times out; "first" is still the one being tried
    await q.settle()
    with pytest.raises(DeadlineExceeded):
        await gone
    assert q.policy.depth == 1
    newcomer = q.submit("newcomer")  # room for it: not shed
    await q.settle()
    for _ in range(2):
        await q.open_one()
    await asyncio.gather(first, newcomer)


async def test_a_cancelled_waiter_does_not_wedge_the_dispatcher() -> None:
    q = Queue()
    slow = q.submit("slow")
    after = q.submit("after")
    await q.settle()
    # the dispatcher lets "slow" go; its try hangs before it knows (a slow Redis call)
    q.capacity.hold = asyncio.Event()
    q.capacity.slots = 1
    q.clock.advance(1.0)
    await q.settle()
    assert q.capacity.hold is None  # "slow" is inside the stack
    slow.cancel()  # the client went away
    await q.settle()
    assert (await after).json()["choices"][0]["message"]["content"] == "after"
    assert q.policy.depth == 0


async def test_a_waiter_cancelled_in_the_queue_is_skipped() -> None:
    q = Queue()
    tasks = {rid: q.submit(rid) for rid in ("a", "b", "c")}
    await q.settle()
    tasks["b"].cancel()
    await q.settle()
    for _ in range(2):
        await q.open_one()
    await asyncio.gather(tasks["a"], tasks["c"])
    assert q.capacity.admitted == ["a", "c"]
    assert q.policy.depth == 0
