"""Budgets: hold a request's worst-case cost before it is sent, settle the real cost.

Only requests made with a virtual key (a :class:`~brace.keys.VirtualKey` in ``request.state.ext``) are counted; the
in-process client and the master key are not.  Before the request goes on, its
worst-case cost is held on the key's and its team's budgets
(:class:`~brace.keys.Ledger`): if a hard budget cannot take it, the request is
refused with :class:`~brace.errors.BudgetExceeded` and nothing is sent.  When the
answer is complete (at once for JSON, when the stream closes) the hold is released
and the real cost — from the usage the upstream reported and the deployment's
price — is added.  A failed request costs nothing.

The worst case is an upper bound, not a guess: prompt tokens ≤ the UTF-8 bytes of
the messages' text and tools (+ 8 per message, 1,500 per image), completion tokens
≤ ``max_completion_tokens`` / ``max_tokens`` (else the group's
``capacity.default_max_tokens``) × ``n``, at the highest input and output prices of
the group's deployments and of its fallback groups.  Without ``max_tokens`` the
bound is only as good as ``default_max_tokens``: a longer answer settles at its
real cost, which is the only way a budget can be overshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from ..keys import Hold, Ledger, Scope, VirtualKey
from ..stack import Handler, Request, Response, StreamResponse

__all__ = ["BudgetPolicy", "worst_case_tokens"]

log = logging.getLogger("brace.budgets")

_IMAGE_TOKENS = 1_500


def _text_bytes(content: Any) -> tuple[int, int]:
    """(UTF-8 bytes of text, image parts) of a message's content."""
    if isinstance(content, str):
        return len(content.encode()), 0
    size = images = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            text = part.get("text")
            if isinstance(text, str):
                size += len(text.encode())
            elif part.get("type") in ("image_url", "input_image", "image"):
                images += 1
            else:
                size += len(orjson.dumps(part))
    return size, images


def worst_case_tokens(body: Mapping[str, Any], default_max_tokens: int) -> tuple[int, int]:
    """Upper bounds of (prompt tokens, completion tokens) of a chat or embeddings body."""
    prompt = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            size, images = _text_bytes(msg.get("content"))
            prompt += size + 8 + images * _IMAGE_TOKENS
            calls = msg.get("tool_calls")
            if calls:
                prompt += len(orjson.dumps(calls))
    else:
        inp = body.get("input")
        if isinstance(inp, str):
            prompt = len(inp.encode()) + 1
        elif isinstance(inp, list):  # strings, token arrays, or one token array
            prompt = sum(
                len(x.encode()) + 1 if isinstance(x, str) else len(x) if isinstance(x, list) else 1
                for x in inp
            )
        return prompt, 0
    for extra in ("tools", "functions", "response_format"):
        value = body.get(extra)
        if value:
            prompt += len(orjson.dumps(value))
    out = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    n = body.get("n") or 1
    out = out if isinstance(out, int) else default_max_tokens
    n = n if isinstance(n, int) and n > 0 else 1
    return prompt, out * n


class BudgetPolicy:
    """Reserve worst case → run → settle real cost, for requests made with a key."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        scopes: Callable[[VirtualKey], Sequence[Scope]],
        prices: Mapping[str, tuple[float, float]],
        default_max_tokens: Mapping[str, int],
        cost: Callable[[Request, Response | None], float],
    ) -> None:
        """``prices``: per model group, the highest (input, output) USD per million
        tokens it can be billed at; ``cost``: a finished request's real cost."""
        self._ledger = ledger
        self._scopes = scopes
        self._prices = prices
        self._default_max = default_max_tokens
        self._cost = cost
        self._settling: set[asyncio.Task[None]] = set()

    def worst_case(self, req: Request) -> float:
        price_in, price_out = self._prices.get(req.model, (0.0, 0.0))
        if not price_in and not price_out:
            return 0.0
        prompt, completion = worst_case_tokens(req.body, self._default_max.get(req.model, 256))
        return (prompt * price_in + completion * price_out) / 1_000_000

    def wrap(self, inner: Handler) -> Handler:
        ledger = self._ledger

        def budget(req: Request) -> Awaitable[Response | StreamResponse]:
            # without a key, the inner awaitable itself: no coroutine frame of its own
            key = req.state.ext.get(VirtualKey)
            if key is None:
                return inner(req)
            return counted(req, key)

        async def counted(req: Request, key: VirtualKey) -> Response | StreamResponse:
            scopes = self._scopes(key)
            amount = self.worst_case(req)
            hold = await ledger.reserve(scopes, amount)
            try:
                result = await inner(req)
            except BaseException:
                self._settle_soon(hold, 0.0, scopes)
                raise
            if isinstance(result, Response):
                await self._settle(hold, self._cost(req, result), scopes)
                return result

            async def close() -> None:
                try:
                    await result.aclose()
                finally:
                    self._settle_soon(hold, self._cost(req, None), scopes)

            return StreamResponse(
                result.chunks, headers=result.headers, close=close, upstream=result.upstream
            )

        return budget

    async def _settle(self, hold: Hold, cost: float, scopes: Sequence[Scope]) -> None:
        try:
            await self._ledger.settle(hold, cost, scopes)
        except Exception:  # a ledger failure must not fail an answered request
            log.exception("budgets: cannot settle a request's spend")

    def _settle_soon(self, hold: Hold, cost: float, scopes: Sequence[Scope]) -> None:
        """Settle even when the caller is being cancelled (a client that went away)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # the loop itself is being torn down: nothing left to settle
            return
        task = loop.create_task(self._settle(hold, cost, scopes))
        self._settling.add(task)  # one per request in flight at most
        task.add_done_callback(self._settling.discard)

    async def drain(self) -> None:
        """Wait for settlements still running (shutdown)."""
        while self._settling:
            await asyncio.gather(*list(self._settling), return_exceptions=True)
