"""LocalLimiter: GCRA reservations on a fake clock (no sleeps)."""

from __future__ import annotations

import pytest

from brace.errors import ConfigError
from brace.state import (
    Learned,
    LimiterBackend,
    Limits,
    LocalLimiter,
    RedisLimiter,
    make_limiter,
    redact_url,
)
from brace.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lim(clock: FakeClock) -> LocalLimiter:
    return LocalLimiter(clock)


async def waits(lim: LocalLimiter, limits: Limits, costs: list[int], key: str = "d") -> list[float]:
    out = []
    for tokens in costs:
        r = await lim.reserve(key, limits, tokens, max_wait=1e9)
        assert r.granted
        out.append(r.wait)
    return out


# -- requests dimension


async def test_burst_then_waits_grow_by_the_emission_interval(lim: LocalLimiter) -> None:
    limits = Limits(rpm=120, tpm=None, burst_seconds=5)  # T = 0.5 s, burst = 10
    got = await waits(lim, limits, [0] * 14)
    assert got[:10] == [0.0] * 10
    assert got[10:] == pytest.approx([0.5, 1.0, 1.5, 2.0])


async def test_refill_over_time(lim: LocalLimiter, clock: FakeClock) -> None:
    limits = Limits(rpm=60, tpm=None, burst_seconds=3)
    assert await waits(lim, limits, [0, 0, 0]) == [0.0, 0.0, 0.0]
    clock.advance(2.0)  # two requests' worth refilled
    assert await waits(lim, limits, [0, 0, 0]) == pytest.approx([0.0, 0.0, 1.0])
    clock.advance(100.0)  # never more than the burst
    assert await waits(lim, limits, [0, 0, 0, 0]) == pytest.approx([0.0, 0.0, 0.0, 1.0])


async def test_burst_shorter_than_one_interval_still_grants_one(lim: LocalLimiter) -> None:
    limits = Limits(rpm=1, tpm=None, burst_seconds=1)  # T = 60 s > burst
    assert await waits(lim, limits, [0, 0, 0]) == pytest.approx([0.0, 60.0, 120.0])


async def test_keys_are_independent(lim: LocalLimiter) -> None:
    limits = Limits(rpm=60, tpm=None, burst_seconds=1)
    assert (await lim.reserve("a", limits, max_wait=0)).granted
    assert not (await lim.reserve("a", limits, max_wait=0)).granted
    assert (await lim.reserve("b", limits, max_wait=0)).granted


async def test_unlimited_never_waits(lim: LocalLimiter) -> None:
    limits = Limits(rpm=None, tpm=None, burst_seconds=1)
    assert await waits(lim, limits, [10**6] * 100) == [0.0] * 100


# -- tokens dimension


async def test_tokens_of_varying_sizes(lim: LocalLimiter) -> None:
    limits = Limits(rpm=None, tpm=6000, burst_seconds=1)  # 0.01 s per token, burst 100
    assert await waits(lim, limits, [60, 40, 30, 10, 0]) == pytest.approx([0.0, 0.0, 0.3, 0.4, 0.0])


async def test_the_binding_dimension_sets_the_wait(lim: LocalLimiter) -> None:
    limits = Limits(rpm=60, tpm=600, burst_seconds=10)  # 10 requests; 100 tokens
    assert await waits(lim, limits, [100, 50]) == pytest.approx([0.0, 5.0])
    # the request bucket still has room; token-free requests go now
    assert await waits(lim, limits, [0]) == [0.0]


async def test_a_cost_larger_than_the_burst_waits_for_a_full_bucket(
    lim: LocalLimiter, clock: FakeClock
) -> None:
    limits = Limits(rpm=None, tpm=600, burst_seconds=2)  # 0.1 s per token, burst 20
    # a full bucket: it goes at once, and the caller behind it pays the debt
    assert await waits(lim, limits, [50, 1]) == pytest.approx([0.0, 5.0 + 0.1 - 2.0])
    clock.advance(100)
    # a partly used bucket: it waits until the bucket is full again, not forever
    assert await waits(lim, limits, [10, 50]) == pytest.approx([0.0, 1.0])


# -- max_wait, peek


async def test_refusal_books_nothing_and_tells_the_true_wait(lim: LocalLimiter) -> None:
    limits = Limits(rpm=60, tpm=None, burst_seconds=2)
    await waits(lim, limits, [0, 0, 0])  # the third waits 1 s
    for _ in range(3):
        r = await lim.reserve("d", limits, max_wait=1.5)
        assert not r.granted
        assert r.wait == pytest.approx(2.0)
        assert r.tokens == 0
    r = await lim.reserve("d", limits, max_wait=2.0)  # exactly the wait: granted
    assert r.granted and r.wait == pytest.approx(2.0)
    assert await lim.peek("d", limits) == pytest.approx(3.0)


async def test_peek_does_not_book(lim: LocalLimiter) -> None:
    limits = Limits(rpm=60, tpm=600, burst_seconds=1)
    assert await lim.peek("d", limits, 10) == 0.0
    assert await waits(lim, limits, [10]) == [0.0]
    for _ in range(5):
        assert await lim.peek("d", limits, 10) == pytest.approx(1.0)
    assert await waits(lim, limits, [10]) == pytest.approx([1.0])
    assert await lim.peek("unknown", limits, 10) == 0.0


# -- adjust


async def test_refund_lets_the_next_reservation_in_earlier(lim: LocalLimiter) -> None:
    limits = Limits(rpm=None, tpm=600, burst_seconds=1)  # 0.1 s per token, burst 10
    await waits(lim, limits, [10, 10])  # reserved worst cases; the second waits 1 s
    assert await lim.peek("d", limits, 10) == pytest.approx(2.0)
    await lim.adjust("d", limits, -4)  # the first used 6 tokens
    assert await lim.peek("d", limits, 10) == pytest.approx(1.6)


async def test_refund_never_goes_below_now(lim: LocalLimiter) -> None:
    limits = Limits(rpm=None, tpm=600, burst_seconds=1)
    await waits(lim, limits, [10])
    await lim.adjust("d", limits, -1000)
    # a full bucket, not more: one burst goes at once, the next token waits
    assert await waits(lim, limits, [10, 1]) == pytest.approx([0.0, 0.1])
    await lim.adjust("never-seen", limits, -10)  # nothing to refund
    assert len(lim) == 1


async def test_charge_pushes_later_reservations(lim: LocalLimiter) -> None:
    limits = Limits(rpm=None, tpm=600, burst_seconds=1)
    await waits(lim, limits, [5])
    await lim.adjust("d", limits, 15)  # it used 20
    assert await lim.peek("d", limits, 1) == pytest.approx(1.1)
    await lim.adjust("d", Limits(rpm=60, tpm=None, burst_seconds=1), 1000)  # no tpm: no-op
    assert await lim.peek("d", limits, 1) == pytest.approx(1.1)


# -- block


async def test_block_holds_every_reservation_until_it_ends(
    lim: LocalLimiter, clock: FakeClock
) -> None:
    limits = Limits(rpm=600, tpm=60_000, burst_seconds=1)
    await lim.block("d", 30)
    assert await lim.peek("d", limits, 100) == pytest.approx(30.0)
    r = await lim.reserve("d", limits, 100, max_wait=10)
    assert not r.granted and r.wait == pytest.approx(30.0)
    r = await lim.reserve("d", limits, 100, max_wait=60)
    assert r.granted and r.wait == pytest.approx(30.0)
    # even without any limit
    assert await lim.peek("d", Limits(None, None, 1)) == pytest.approx(30.0)
    await lim.block("d", 5)  # a shorter block never shortens a longer one
    assert await lim.peek("d", Limits(None, None, 1)) == pytest.approx(30.0)
    clock.advance(30)
    assert await lim.peek("d", Limits(None, None, 1)) == 0.0
    await lim.block("d", 0)
    await lim.block("d", -3)
    assert await lim.peek("d", Limits(None, None, 1)) == 0.0


async def test_reservations_made_during_a_block_queue_behind_it(lim: LocalLimiter) -> None:
    limits = Limits(rpm=60, tpm=None, burst_seconds=2)
    await lim.block("d", 10)
    assert await waits(lim, limits, [0, 0, 0, 0]) == pytest.approx([10.0, 10.0, 11.0, 12.0])


# -- learned limits


async def test_learned_get_set(lim: LocalLimiter) -> None:
    assert await lim.get_learned("d") is None
    await lim.set_learned("d", Learned(rpm=100.0, tpm=None, updated_at=1.5))
    assert await lim.get_learned("d") == Learned(rpm=100.0, tpm=None, updated_at=1.5)
    await lim.set_learned("d", Learned(rpm=50.0, tpm=1e5, updated_at=2.5))
    assert await lim.get_learned("d") == Learned(rpm=50.0, tpm=1e5, updated_at=2.5)


async def test_learned_is_bounded(clock: FakeClock) -> None:
    lim = LocalLimiter(clock, max_keys=3)
    for i in range(5):
        await lim.set_learned(f"k{i}", Learned(rpm=float(i), tpm=None, updated_at=0))
    assert [await lim.get_learned(f"k{i}") is None for i in range(5)] == [
        True,
        True,
        False,
        False,
        False,
    ]


# -- bounds


async def test_the_dict_is_capped(clock: FakeClock) -> None:
    lim = LocalLimiter(clock, max_keys=3)
    limits = Limits(rpm=60, tpm=None, burst_seconds=1)
    for i in range(5):
        await lim.reserve(f"k{i}", limits, max_wait=0)
    assert len(lim) == 3
    assert lim.evicted == 2
    assert lim.describe()["keys"] == 3


async def test_idle_settled_keys_are_dropped_lazily(clock: FakeClock) -> None:
    lim = LocalLimiter(clock, idle_seconds=600)
    limits = Limits(rpm=60, tpm=None, burst_seconds=1)
    for key in ("k0", "k1", "k2"):
        await lim.reserve(key, limits, max_wait=0)
    await lim.block("long", 3600)  # its state outlives the idle time: never dropped early
    await lim.reserve("k3", limits, max_wait=0)
    clock.advance(300)
    await lim.reserve("k4", limits, max_wait=0)
    assert len(lim) == 6  # nothing idle long enough yet
    clock.advance(301)
    await lim.reserve("new", limits, max_wait=0)
    # least recently used first: k0..k2 dropped, the sweep stops at "long"
    assert len(lim) == 4  # long, k3, k4, new
    assert await lim.peek("long", limits) == pytest.approx(3600 - 601)
    assert lim.evicted == 0


async def test_peek_and_refused_reservations_do_not_grow_the_dict(lim: LocalLimiter) -> None:
    limits = Limits(rpm=60, tpm=None, burst_seconds=1)
    for i in range(100):
        await lim.peek(f"k{i}", limits)
    assert len(lim) == 0


# -- values and factory


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        Limits(rpm=0, tpm=None, burst_seconds=1)
    with pytest.raises(ValueError):
        Limits(rpm=None, tpm=-1, burst_seconds=1)
    with pytest.raises(ValueError):
        Limits(rpm=None, tpm=None, burst_seconds=0)
    with pytest.raises(ValueError):
        Limits(rpm=float("nan"), tpm=None, burst_seconds=1)


def test_limits_divided_share_the_rate_not_the_burst_window() -> None:
    limits = Limits(rpm=90, tpm=9000, burst_seconds=4)
    assert limits.divided(3) == Limits(rpm=30, tpm=3000, burst_seconds=4)
    assert limits.divided(1) is limits
    assert Limits(None, 10, 1).divided(2) == Limits(None, 5, 1)


async def test_bad_arguments(lim: LocalLimiter) -> None:
    limits = Limits(rpm=60, tpm=None, burst_seconds=1)
    with pytest.raises(ValueError):
        await lim.reserve("d", limits, -1, max_wait=1)
    with pytest.raises(ValueError):
        await lim.reserve("d", limits, max_wait=float("nan"))
    # a negative max_wait is 0: only an immediate slot
    assert (await lim.reserve("d", limits, max_wait=-5)).granted


async def test_make_limiter_local(clock: FakeClock) -> None:
    lim: LimiterBackend = make_limiter(None, clock=clock, namespace="x")
    assert isinstance(lim, LocalLimiter)
    await lim.start()
    assert lim.status == "local"
    assert (await lim.reserve("d", Limits(60, None, 1), max_wait=0)).source == "local"
    assert lim.describe()["mode"] == "local"
    await lim.aclose()


def test_make_limiter_redis_does_no_io_until_started(clock: FakeClock) -> None:
    lim = make_limiter("redis://:pw@127.0.0.1:1/0", clock=clock, namespace="x")
    assert isinstance(lim, RedisLimiter)
    assert lim.describe()["live_instances"] == 1
    assert "pw" not in repr(lim.describe())


def test_redact_url() -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://user:s3cret@host/1?password=x") == "rediss://user:***@host/1"
    assert redact_url("redis://localhost") == "redis://localhost"
    assert redact_url("unix:///tmp/r.sock?password=x") == "unix:///tmp/r.sock"
    # an OTLP endpoint's user name may be a key too (Basic auth): dropped on request
    otlp = "https://pk-1:sk-2@[::1]:4318/v1/traces?token=t"
    assert redact_url(otlp, keep_user=False) == "https://[::1]:4318/v1/traces"
    assert redact_url("http://h:99999/v1", keep_user=False) == "<unparsable url>"


def test_invalid_url_is_a_config_error_without_the_password(clock: FakeClock) -> None:
    with pytest.raises(ConfigError) as info:
        RedisLimiter("http://:s3cret@host/0", clock=clock)
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is None
    with pytest.raises(ValueError):
        RedisLimiter("redis://localhost", clock=clock, op_timeout=0)


# -- what the upstream says is left


async def test_spent_leaves_only_what_the_upstream_has_left(lim: LocalLimiter) -> None:
    limits = Limits(rpm=120, tpm=None, burst_seconds=5)  # T = 0.5 s, burst = 10
    await lim.spent("d", limits, 3, None)
    assert await waits(lim, limits, [0] * 5) == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0])


async def test_spent_never_gives_back_what_is_already_used(lim: LocalLimiter) -> None:
    limits = Limits(rpm=120, tpm=None, burst_seconds=5)
    await waits(lim, limits, [0] * 8)  # 2 left locally
    await lim.spent("d", limits, 9, None)  # the upstream thinks more is left: ignored
    assert await waits(lim, limits, [0] * 3) == pytest.approx([0.0, 0.0, 0.5])
    await lim.spent("d", limits, None, None)  # nothing said: nothing changes
    assert await lim.peek("d", limits) == pytest.approx(1.0)


async def test_spent_with_nothing_left_waits_one_interval_and_tokens_too(
    lim: LocalLimiter,
) -> None:
    limits = Limits(rpm=120, tpm=6000, burst_seconds=2)  # T = 0.5 s; 200 tokens
    await lim.spent("d", limits, 0, 50)
    assert await lim.peek("d", limits, 0) == pytest.approx(0.5)
    # tokens: 50 left, so 100 tokens wait for 50 more (0.5 s at 100 tokens/s)
    assert await lim.peek("e", limits, 100) == 0.0
    await lim.spent("e", limits, None, 50)
    assert await lim.peek("e", limits, 100) == pytest.approx(0.5)
    assert await lim.peek("e", limits, 0) == 0.0  # requests untouched


def test_a_bucket_holds_burst_seconds_of_refill_and_at_least_one() -> None:
    assert Limits(rpm=600, tpm=60_000, burst_seconds=2).bucket() == (20.0, 2000.0)
    assert Limits(rpm=1, tpm=None, burst_seconds=1).bucket() == (1.0, None)
