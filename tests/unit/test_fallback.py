from typing import Any

import pytest

from brace.config import FallbackRule
from brace.errors import (
    AttemptsExhausted,
    CircuitOpen,
    ContentFiltered,
    ContextWindowExceeded,
    Overloaded,
    RateLimited,
    ServerError,
    UpstreamFailure,
)
from brace.events import Event, EventBus, FellBack
from brace.policies.fallback import FallbackPolicy
from brace.stack import Handler, Request, build_stack
from brace.testing import FakeClock, ScriptedProvider, ok_response

from .conftest import body_of


class Chain:
    """Group ``a``'s core wrapped in its fallback policy; other groups' cores as targets."""

    def __init__(
        self,
        scripts: dict[str, list[Any]],
        rules: list[FallbackRule],
        *,
        max_hops: int = 2,
    ) -> None:
        self.clock = FakeClock()
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.cores = {g: ScriptedProvider(s, id=g) for g, s in scripts.items()}
        targets: dict[str, Handler] = dict(self.cores)
        policy = FallbackPolicy(
            "a", rules, targets, max_hops=max_hops, clock=self.clock, events=bus
        )
        self.handler: Handler = build_stack(self.cores["a"], [policy])

    def calls(self, group: str) -> int:
        return len(self.cores[group].calls)

    def fell_back(self) -> list[FellBack]:
        return [e for e in self.events if isinstance(e, FellBack)]


async def test_context_window_goes_to_the_larger_group() -> None:
    c = Chain(
        {
            "a": [ContextWindowExceeded("too long", deployment="a1", upstream_status=400)],
            "big": [ok_response("from big")],
        },
        [FallbackRule(to="big", on=["context_window_exceeded"])],
    )
    req = Request("chat", "a", {}, request_id="r1")
    res = await c.handler(req)
    assert body_of(res) == "from big"
    assert req.state.fallback == ["a", "big"]
    assert (c.calls("a"), c.calls("big")) == (1, 1)
    assert c.fell_back() == [FellBack("r1", "a", "big", "context_window_exceeded")]


async def test_success_has_no_fallback() -> None:
    c = Chain({"a": [ok_response("from a")], "b": [ok_response()]}, [FallbackRule(to="b")])
    req = Request("chat", "a", {})
    assert body_of(await c.handler(req)) == "from a"
    assert req.state.fallback is None
    assert c.calls("b") == 0
    assert c.fell_back() == []


async def test_class_not_in_rule_raises_original_error() -> None:
    err = ServerError("boom", deployment="a1", upstream_status=500)
    c = Chain(
        {"a": [err], "big": [ok_response()]},
        [FallbackRule(to="big", on=["context_window_exceeded"])],
    )
    req = Request("chat", "a", {})
    with pytest.raises(ServerError) as info:
        await c.handler(req)
    assert info.value is err
    assert c.calls("big") == 0
    assert req.state.fallback is None
    assert c.fell_back() == []


@pytest.mark.parametrize(
    "error",
    [
        Overloaded("busy", deployment="a1"),
        RateLimited("slow down", deployment="a1", retry_after=1.0),
        CircuitOpen("open", deployment="a1"),
        ServerError("boom", deployment="a1"),
    ],
    ids=lambda e: e.error_class,
)
async def test_unavailable_alias_matches(error: UpstreamFailure) -> None:
    c = Chain({"a": [error], "b": [ok_response("from b")]}, [FallbackRule(to="b")])
    req = Request("chat", "a", {}, request_id="r1")
    assert body_of(await c.handler(req)) == "from b"
    assert req.state.fallback == ["a", "b"]
    assert c.fell_back() == [FellBack("r1", "a", "b", error.error_class)]


@pytest.mark.parametrize(
    "error",
    [
        ContentFiltered("nope", deployment="a1"),
        ContextWindowExceeded("too long", deployment="a1"),
    ],
    ids=lambda e: e.error_class,
)
async def test_unavailable_alias_does_not_match_caller_errors(error: UpstreamFailure) -> None:
    c = Chain({"a": [error], "b": [ok_response()]}, [FallbackRule(to="b")])
    with pytest.raises(type(error)):
        await c.handler(Request("chat", "a", {}))
    assert c.calls("b") == 0


async def test_rules_are_tried_in_order_by_class() -> None:
    c = Chain(
        {
            "a": [ContentFiltered("nope", deployment="a1")],
            "big": [ok_response("from big")],
            "other": [ok_response("from other")],
        },
        [
            FallbackRule(to="big", on=["context_window_exceeded"]),
            FallbackRule(to="other", on=["content_filtered"]),
        ],
    )
    req = Request("chat", "a", {})
    assert body_of(await c.handler(req)) == "from other"
    assert req.state.fallback == ["a", "other"]
    assert c.calls("big") == 0


async def test_max_hops_bounds_the_chain() -> None:
    e_a = Overloaded("busy", deployment="a1")
    e_b = Overloaded("busy", deployment="b1")
    e_c = Overloaded("busy", deployment="c1")
    c = Chain(
        {"a": [e_a], "b": [e_b], "c": [e_c], "d": [ok_response()]},
        [FallbackRule(to="b"), FallbackRule(to="c"), FallbackRule(to="d")],
        max_hops=2,
    )
    req = Request("chat", "a", {}, request_id="r1")
    with pytest.raises(AttemptsExhausted) as info:
        await c.handler(req)
    assert (c.calls("b"), c.calls("c"), c.calls("d")) == (1, 1, 0)
    assert info.value.failures == [e_a, e_b, e_c]
    assert req.state.fallback == ["a", "b", "c"]
    assert c.fell_back() == [
        FellBack("r1", "a", "b", "overloaded"),
        FellBack("r1", "b", "c", "overloaded"),
    ]


async def test_max_hops_zero_disables_fallback() -> None:
    err = Overloaded("busy", deployment="a1")
    c = Chain({"a": [err], "b": [ok_response()]}, [FallbackRule(to="b")], max_hops=0)
    with pytest.raises(Overloaded) as info:
        await c.handler(Request("chat", "a", {}))
    assert info.value is err
    assert c.calls("b") == 0


async def test_passed_deadline_stops_before_the_first_hop() -> None:
    clock_box: list[FakeClock] = []
    err = Overloaded("busy", deployment="a1")

    def slow_failure(req: Request) -> UpstreamFailure:
        clock_box[0].advance(10.0)  # the group spent the whole deadline
        return err

    c = Chain({"a": [slow_failure], "b": [ok_response()]}, [FallbackRule(to="b")])
    clock_box.append(c.clock)
    req = Request("chat", "a", {}, deadline=c.clock.now() + 5.0)
    with pytest.raises(Overloaded) as info:
        await c.handler(req)
    assert info.value is err
    assert c.calls("b") == 0
    assert c.fell_back() == []


async def test_passed_deadline_stops_further_hops() -> None:
    clock_box: list[FakeClock] = []
    e_a = Overloaded("busy", deployment="a1")
    e_b = Overloaded("busy", deployment="b1")

    def slow_failure(req: Request) -> UpstreamFailure:
        clock_box[0].advance(10.0)
        return e_b

    c = Chain(
        {"a": [e_a], "b": [slow_failure], "c": [ok_response()]},
        [FallbackRule(to="b"), FallbackRule(to="c")],
    )
    clock_box.append(c.clock)
    req = Request("chat", "a", {}, deadline=c.clock.now() + 5.0)
    with pytest.raises(AttemptsExhausted) as info:
        await c.handler(req)
    assert info.value.failures == [e_a, e_b]
    assert c.calls("c") == 0
    assert req.state.fallback == ["a", "b"]


async def test_every_failure_is_collected_and_flattened() -> None:
    a1 = ServerError("boom", deployment="a1", upstream_status=500)
    a2 = Overloaded("busy", deployment="a2", upstream_status=503)
    b1 = RateLimited("slow down", deployment="b1", upstream_status=429, retry_after=4.0)
    c = Chain(
        {"a": [AttemptsExhausted([a1, a2])], "b": [b1]},
        [FallbackRule(to="b")],
    )
    with pytest.raises(AttemptsExhausted) as info:
        await c.handler(Request("chat", "a", {}))
    exc = info.value
    assert exc.failures == [a1, a2, b1]
    assert "[1] a1: server_error (HTTP 500)" in exc.message
    assert "[2] a2: overloaded (HTTP 503)" in exc.message
    assert "[3] b1: rate_limited (HTTP 429)" in exc.message
    assert exc.http_status == 429
    assert exc.retry_after == 4.0


async def test_exclusions_do_not_leak_into_the_next_group() -> None:
    def fail_and_exclude(req: Request) -> UpstreamFailure:
        req.state.exclude = {"a1"}
        return Overloaded("busy", deployment="a1")

    c = Chain({"a": [fail_and_exclude], "b": [ok_response()]}, [FallbackRule(to="b")])
    req = Request("chat", "a", {})
    await c.handler(req)
    assert c.cores["b"].calls[0].state.exclude is None


async def test_next_rule_matches_the_latest_failure_class() -> None:
    c = Chain(
        {
            "a": [Overloaded("busy", deployment="a1")],
            "b": [ContextWindowExceeded("too long", deployment="b1")],
            "big": [ok_response("from big")],
        },
        [FallbackRule(to="b"), FallbackRule(to="big", on=["context_window_exceeded"])],
    )
    req = Request("chat", "a", {}, request_id="r1")
    assert body_of(await c.handler(req)) == "from big"
    assert req.state.fallback == ["a", "b", "big"]
    assert c.fell_back() == [
        FellBack("r1", "a", "b", "overloaded"),
        FellBack("r1", "b", "big", "context_window_exceeded"),
    ]
