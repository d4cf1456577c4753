"""Per-key rate limits: a key's ``rpm`` / ``tpm``, refused at once when spent.

A request made with a virtual key that has limits books one request and its
estimated tokens (prompt estimate + ``max_tokens``, or the group's
``capacity.default_max_tokens``) in the limiter backend under ``key:<id>`` — the
same GCRA state as deployment pacing: in-process, or shared by every gateway
through Redis.  The sustained rate is ``rpm / 60`` per second with bursts of up to
``burst_seconds`` (10) of it.  When the key has no room, the request is refused with
:class:`~brace.errors.KeyRateLimited` and an honest ``retry-after``: unlike the
deployments' limits, these are the caller's own, so Brace does not queue for them.
After the answer, the token part is settled with the real usage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from ..errors import KeyRateLimited
from ..keys import VirtualKey
from ..stack import Handler, Request, Response, StreamResponse
from ..state import LimiterBackend, Limits
from .pacing import request_tokens

__all__ = ["KeyLimitPolicy"]


class KeyLimitPolicy:
    def __init__(
        self,
        limiter: LimiterBackend,
        *,
        default_max_tokens: Mapping[str, int],
        burst_seconds: float = 10.0,
    ) -> None:
        self._limiter = limiter
        self._default_max = default_max_tokens
        self._burst = burst_seconds
        self._limits: dict[tuple[int | None, int | None], Limits] = {}

    def _limits_of(self, key: VirtualKey) -> Limits:
        pair = (key.rpm, key.tpm)
        limits = self._limits.get(pair)
        if limits is None:
            if len(self._limits) > 1024:  # bounded: limit pairs, not keys
                self._limits.clear()
            limits = self._limits[pair] = Limits(
                rpm=key.rpm, tpm=key.tpm, burst_seconds=self._burst
            )
        return limits

    def wrap(self, inner: Handler) -> Handler:
        def key_limits(req: Request) -> Awaitable[Response | StreamResponse]:
            # without limits, the inner awaitable itself: no coroutine frame of its own
            key = req.state.ext.get(VirtualKey)
            if key is None or (key.rpm is None and key.tpm is None):
                return inner(req)
            return limited(req, key, self._limiter)

        async def limited(
            req: Request, key: VirtualKey, limiter: LimiterBackend
        ) -> Response | StreamResponse:
            limits = self._limits_of(key)
            tokens = request_tokens(req, self._default_max.get(req.model, 256)) if key.tpm else 0
            name = f"key:{key.id}"
            booked = await limiter.reserve(name, limits, tokens, max_wait=0.0)
            if not booked.granted:
                what = []
                if key.rpm:
                    what.append(f"{key.rpm} requests")
                if key.tpm:
                    what.append(f"{key.tpm} tokens")
                raise KeyRateLimited(
                    f"rate limit of API key {key.prefix}… ({key.id}) reached: "
                    f"{' and '.join(what)} per minute; retry after {booked.wait:.1f}s",
                    retry_after=booked.wait,
                )
            result = await inner(req)
            if key.tpm and isinstance(result, Response):
                await self._settle(limiter, name, limits, booked.tokens, result.json())
            return result

        return key_limits

    @staticmethod
    async def _settle(
        limiter: LimiterBackend, name: str, limits: Limits, booked: int, body: dict[str, Any]
    ) -> None:
        usage = body.get("usage")
        if not isinstance(usage, dict):
            return
        total = usage.get("total_tokens")
        if isinstance(total, int) and total != booked:
            await limiter.adjust(name, limits, total - booked)
