from brace.policies.deadline import DeadlinePolicy
from brace.stack import Handler, Request, RequestState, Response, StreamResponse, build_stack
from brace.testing import FakeClock, ok_response


def make(default: float, clock: FakeClock) -> tuple[list[float | None], Handler]:
    seen: list[float | None] = []

    async def inner(req: Request) -> Response | StreamResponse:
        seen.append(req.deadline)
        return ok_response()

    return seen, build_stack(inner, [DeadlinePolicy(default, clock=clock)])


async def test_sets_deadline_to_now_plus_default() -> None:
    clock = FakeClock(start=500.0)
    seen, handler = make(30.0, clock)
    req = Request("chat", "m", {})
    await handler(req)
    assert req.deadline == 530.0
    assert seen == [530.0]  # the inner layers see it


async def test_lower_timeout_from_meta_is_used() -> None:
    clock = FakeClock(start=500.0)
    _, handler = make(30.0, clock)
    req = Request("chat", "m", {}, state=RequestState(timeout=2.5))
    await handler(req)
    assert req.deadline == 502.5


async def test_higher_timeout_from_meta_is_ignored() -> None:
    clock = FakeClock(start=500.0)
    _, handler = make(30.0, clock)
    req = Request("chat", "m", {}, state=RequestState(timeout=600))
    await handler(req)
    assert req.deadline == 530.0


async def test_non_positive_or_invalid_timeout_is_ignored() -> None:
    clock = FakeClock(start=500.0)
    _, handler = make(30.0, clock)
    for asked in (0, -5, "10", None):
        req = Request("chat", "m", {}, state=RequestState(timeout=asked))
        await handler(req)
        assert req.deadline == 530.0, asked


async def test_existing_deadline_is_kept() -> None:
    clock = FakeClock(start=500.0)
    seen, handler = make(30.0, clock)
    req = Request("chat", "m", {}, deadline=777.0, state=RequestState(timeout=1.0))
    await handler(req)
    assert req.deadline == 777.0
    assert seen == [777.0]


async def test_deadline_follows_the_clock() -> None:
    clock = FakeClock(start=500.0)
    _, handler = make(10.0, clock)
    clock.advance(42.0)
    req = Request("chat", "m", {})
    await handler(req)
    assert req.deadline == 552.0
