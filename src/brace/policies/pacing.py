"""Pacing: send a deployment no more than its limits allow, instead of into a 429.

One :class:`Pacer` per upstream (deployment URL + model: two groups listing the same
deployment share it).  Before an attempt is sent, the pacing policy

1. checks the deployment's **adaptive concurrency** limit (AIMD: ×0.75 on overload,
   timeouts and 429s, +1/limit per success, between 1 and ``max_concurrency`` or 64
   to start / 1024 at most);
2. **reserves** one request and the request's estimated tokens (prompt estimate +
   ``max_tokens``, or the group's ``default_max_tokens``) in the limiter backend
   (GCRA with reservations, in-process or shared through Redis) under the
   deployment's effective limits — configured ``rpm``/``tpm``, else learned from the
   upstream's rate-limit headers — times the AIMD factor that 429s shrink and
   successes grow back.

If the reservation would have to wait more than a few milliseconds, nothing is
booked and :class:`~brace.errors.NoCapacity` tells the admission queue when
capacity will exist, so the request waits there, in priority order, not in the
limiter.  After the answer, the prompt part of the reservation is settled with the
real usage (upstreams charge the requested ``max_tokens`` at admission, so that part
stays), limits are learned from the headers, and an upstream 429 blocks the
deployment for its ``retry-after``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ..clock import Clock
from ..config import CapacityConfig, Deployment
from ..errors import NoCapacity, UpstreamFailure
from ..stack import Handler, Request, Response, StreamResponse
from ..state import LimiterBackend, Limits
from .ratelimit_headers import RateLimitInfo, parse_ratelimit_headers

__all__ = ["Pacer", "PacingPolicy", "estimate_prompt_tokens", "request_tokens"]

_SLACK = 0.005
"""A reservation may wait this long in the limiter; longer waits go to the queue."""
_OVERLOAD = frozenset({"overloaded", "timeout", "rate_limited"})


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A fast prompt-size estimate: characters / 4 over the text of every message,
    plus 4 per message (role and framing).  Images and audio are not counted."""
    chars = 0
    messages = body.get("messages")
    if not isinstance(messages, list):
        inp = body.get("input")
        if isinstance(inp, str):
            return math.ceil(len(inp) / 4) + 1
        if isinstance(inp, list):
            # strings, token arrays, or one token array (a list of ints)
            return sum(
                math.ceil(len(x) / 4) + 1
                if isinstance(x, str)
                else len(x)
                if isinstance(x, list)
                else 1
                for x in inp
            )
        return 1
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
    return math.ceil(chars / 4) + 4 * len(messages)


def request_tokens(req: Request, default_max_tokens: int) -> int:
    """Prompt estimate (kept in ``state.prompt_tokens_est``) + requested completion."""
    state = req.state
    prompt = state.prompt_tokens  # the context policy's count, when it ran
    if prompt is not None:
        state.prompt_tokens_est = prompt
    else:
        prompt = state.prompt_tokens_est
        if prompt is None:
            prompt = state.prompt_tokens_est = estimate_prompt_tokens(req.body)
    return prompt + _requested_completion(req.body, default_max_tokens)


def _requested_completion(body: dict[str, Any], default: int) -> int:
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


class Pacer:
    """Capacity of one upstream: limits, AIMD factor, in-flight limit."""

    def __init__(
        self,
        deployment: Deployment,
        config: CapacityConfig,
        backend: LimiterBackend,
        *,
        clock: Clock,
        on_release: Callable[[], None] = lambda: None,
    ) -> None:
        self.id = deployment.id
        self.key = f"{deployment.url}|{deployment.model}"
        self._config = config
        self.backend = backend
        self._clock = clock
        self._on_release = on_release
        self.configured_rpm = deployment.rpm
        self.configured_tpm = deployment.tpm
        self.burst_seconds = deployment.burst_seconds
        self.learned_rpm: int | None = None
        self.learned_tpm: int | None = None
        self.factor = 1.0
        self.max_concurrency = float(deployment.max_concurrency or 1024)
        self.concurrency_limit = float(deployment.max_concurrency or 64)
        self.adaptive = config.adaptive_concurrency
        self.headroom = config.headroom
        self.in_flight = 0
        self.throttled = 0  # upstream 429s seen despite pacing
        self._cut_until = -math.inf
        """429s before this time belong to the overshoot that last cut ``factor``."""

    # ----------------------------------------------------------------- limits

    def limits(self) -> Limits | None:
        """The effective :class:`~brace.state.Limits`, or ``None`` when unlimited."""
        rpm = self.configured_rpm or self.learned_rpm
        tpm = self.configured_tpm or self.learned_tpm
        if rpm is None and tpm is None:
            return None
        f = self.factor * (1.0 - self.headroom)
        return Limits(
            rpm=rpm * f if rpm else None,
            tpm=tpm * f if tpm else None,
            burst_seconds=self.burst_seconds,
        )

    def request_rate(self, tokens: float) -> float | None:
        """Requests per second this deployment sustains for requests of ``tokens``."""
        lim = self.limits()
        if lim is None:
            return None
        rates = []
        if lim.rpm:
            rates.append(lim.rpm / 60.0)
        if lim.tpm:
            rates.append(lim.tpm / 60.0 / max(1.0, tokens))
        return min(rates)

    def full(self) -> bool:
        return self.in_flight >= self.concurrency_limit

    async def peek(self, tokens: int) -> float | None:
        """Seconds until this deployment could take a request of ``tokens`` (0: now;
        ``None``: when an in-flight request finishes)."""
        if self.full():
            return None
        lim = self.limits()
        if lim is None:
            return 0.0
        return float(await self.backend.peek(self.key, lim, tokens))

    # ----------------------------------------------------------------- learning

    def learn(self, headers: Any) -> RateLimitInfo | None:
        if not headers:
            return None
        info = parse_ratelimit_headers(headers, now_epoch=time.time())
        if info is None:
            return None
        if info.requests_limit:
            self.learned_rpm = info.requests_limit
        if info.tokens_limit:
            self.learned_tpm = info.tokens_limit
        return info

    async def sync(self, info: RateLimitInfo) -> None:
        """Trust what the upstream says is left over the local bucket when it is less:
        other clients of the same key, another region's gateway or a restart may have
        spent what this gateway thinks it still has.  The requests this gateway has in
        flight are counted as not yet seen by the upstream (the conservative side).
        With nothing left, the next request waits one emission interval (60/limit s),
        not the header's full reset: one more is free once one has refilled."""
        if info.requests_remaining is None and info.tokens_remaining is None:
            return
        lim = self.limits()
        if lim is None:
            return
        others = max(0, self.in_flight - 1)  # besides the request that brought the headers
        requests = None if info.requests_remaining is None else info.requests_remaining - others
        tokens = info.tokens_remaining
        # Only a remainder below the local bucket's size can change it: most answers
        # (thousands left of a minute's quota) cost no call, which matters on Redis.
        request_bucket, token_bucket = lim.bucket()
        if requests is not None and (request_bucket is None or requests >= request_bucket):
            requests = None
        if tokens is not None and (token_bucket is None or tokens >= token_bucket):
            tokens = None
        if requests is not None or tokens is not None:
            await self.backend.spent(self.key, lim, requests, tokens)

    def succeeded(self) -> None:
        if self.factor < 1.0:
            self.factor = min(1.0, self.factor + 0.01)
        if self.adaptive and self.concurrency_limit < self.max_concurrency:
            self.concurrency_limit = min(
                self.max_concurrency, self.concurrency_limit + 1.0 / self.concurrency_limit
            )

    def failed(self, error_class: str) -> None:
        if error_class == "rate_limited":
            self.throttled += 1
            # One cut per overshoot: the 429s of requests that were already on their
            # way when the first came back are the same event (TCP cuts once per
            # round trip for the same reason); 0.8^5 would run at a third of the limit.
            now = self._clock.now()
            if now >= self._cut_until:
                self.factor = max(0.25, self.factor * 0.8)
                self._cut_until = now + max(1.0, self.burst_seconds)
        if self.adaptive and error_class in _OVERLOAD:
            self.concurrency_limit = max(1.0, self.concurrency_limit * 0.75)

    def release(self) -> None:
        self.in_flight -= 1
        self._on_release()

    def snapshot(self) -> dict[str, Any]:
        lim = self.limits()
        return {
            "configured_rpm": self.configured_rpm,
            "configured_tpm": self.configured_tpm,
            "learned_rpm": self.learned_rpm,
            "learned_tpm": self.learned_tpm,
            "factor": round(self.factor, 3),
            "effective_rpm": None if lim is None or lim.rpm is None else round(lim.rpm, 1),
            "effective_tpm": None if lim is None or lim.tpm is None else round(lim.tpm, 1),
            "concurrency_limit": round(self.concurrency_limit, 2),
            "in_flight": self.in_flight,
            "upstream_429s": self.throttled,
        }


class PacingPolicy:
    """The per-deployment policy around :class:`Pacer` (see the module docstring)."""

    def __init__(self, pacer: Pacer, config: CapacityConfig) -> None:
        self.pacer = pacer
        self._default_max = config.default_max_tokens

    def wrap(self, inner: Handler) -> Handler:
        pacer = self.pacer
        default_max = self._default_max

        async def pace(req: Request) -> Response | StreamResponse:
            state = req.state
            tokens = request_tokens(req, default_max)
            prompt = state.prompt_tokens_est
            assert prompt is not None  # request_tokens() set it
            if pacer.full():
                raise NoCapacity(f"deployment {pacer.id} is at its concurrency limit", wait=None)
            lim = pacer.limits()
            if lim is not None:
                reservation = await pacer.backend.reserve(pacer.key, lim, tokens, max_wait=_SLACK)
                if not reservation.granted:
                    raise NoCapacity(
                        f"deployment {pacer.id} is at its rate limit", wait=reservation.wait
                    )
                if reservation.wait > 0:
                    await pacer._clock.sleep(reservation.wait)
                    if state.attempts is None:  # the wait before the first attempt
                        state.queue_wait = (state.queue_wait or 0.0) + reservation.wait
            admitted = state.on_admit
            if admitted is not None:
                admitted()
            pacer.in_flight += 1
            try:
                result = await inner(req)
            except UpstreamFailure as exc:
                pacer.release()
                pacer.learn(exc.upstream_headers)
                pacer.failed(exc.error_class)
                if exc.error_class == "rate_limited":
                    await pacer.backend.block(pacer.key, exc.retry_after or 1.0)
                raise
            except BaseException:
                pacer.release()
                raise
            pacer.succeeded()
            info = pacer.learn(result.upstream)
            if info is not None:
                await pacer.sync(info)
            if isinstance(result, StreamResponse):
                return StreamResponse(
                    result.chunks,
                    headers=result.headers,
                    close=_release_then(pacer, result),
                    upstream=result.upstream,
                )
            pacer.release()
            if lim is not None and lim.tpm:
                usage = (result._parsed or {}).get("usage")
                actual = usage.get("prompt_tokens") if isinstance(usage, dict) else None
                if isinstance(actual, int) and actual != prompt:
                    await pacer.backend.adjust(pacer.key, lim, actual - prompt)
            return result

        return pace


def _release_then(pacer: Pacer, stream: StreamResponse) -> Callable[[], Any]:
    async def close() -> None:
        pacer.release()
        await stream.aclose()

    return close
