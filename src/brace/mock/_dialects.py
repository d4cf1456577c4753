"""Error bodies and rate-limit headers in each provider's wire format.

``OpenAIDialect`` for ``/v1/chat/completions`` and ``/v1/embeddings``; ``AnthropicDialect``
for ``/v1/messages``. Both build complete :class:`Reply` objects.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

import orjson

from brace.mock._ratelimit import LimitDecision, format_reset_duration
from brace.mock._wire import Reply

__all__ = ["JSON", "AnthropicDialect", "Dialect", "OpenAIDialect", "retry_headers"]

JSON: Final = "application/json"

_OPENAI_ERRORS: Final[dict[int, tuple[str, str, str | None]]] = {
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", "bad_gateway"),
    503: ("The server is overloaded or not ready yet.", "server_error", "service_unavailable"),
    529: ("The server is overloaded. Please try again later.", "overloaded_error", "overloaded"),
}
_ANTHROPIC_ERRORS: Final[dict[int, tuple[str, str]]] = {
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


def retry_headers(seconds: float) -> dict[str, str]:
    """``retry-after`` (integer seconds, rounded up, at least 1) and ``retry-after-ms``."""
    return {
        "retry-after": str(max(1, math.ceil(seconds - 1e-9))),
        "retry-after-ms": str(max(1, math.ceil(seconds * 1000 - 1e-6))),
    }


def _limit_message(decision: LimitDecision) -> str:
    wait = format_reset_duration(decision.retry_after)
    if decision.denied == "tokens":
        limit = decision.tokens_limit or 0
        used = limit - decision.tokens_remaining
        requested = decision.requested_tokens
        if requested > limit:
            return (
                f"Request too large for tokens per min (TPM): Limit {limit}, "
                f"Requested {requested}. Reduce the request size."
            )
        return (
            f"Rate limit reached for tokens per min (TPM): Limit {limit}, Used {used}, "
            f"Requested {requested}. Please try again in {wait}."
        )
    limit = decision.requests_limit or 0
    used = limit - decision.requests_remaining
    return (
        f"Rate limit reached for requests per min (RPM): Limit {limit}, Used {used}, "
        f"Requested 1. Please try again in {wait}."
    )


class Dialect:
    """What the shared admission path needs from a wire format."""

    def limit_headers(self, decision: LimitDecision) -> dict[str, str]:
        raise NotImplementedError

    def error(
        self, status: int, kind: str, message: str, headers: dict[str, str], param: str | None
    ) -> Reply:
        raise NotImplementedError

    def rate_limited(self, decision: LimitDecision, headers: dict[str, str]) -> Reply:
        raise NotImplementedError

    def injected_429(self, retry_after: float, headers: dict[str, str]) -> Reply:
        raise NotImplementedError

    def server_error(self, status: int, retry_after: float, headers: dict[str, str]) -> Reply:
        raise NotImplementedError

    def bad_request(self, message: str, param: str | None = None) -> Reply:
        return self.error(400, "invalid_request_error", message, {}, param)


class OpenAIDialect(Dialect):
    """OpenAI errors ``{"error": {message, type, param, code}}`` and ``x-ratelimit-*``."""

    def limit_headers(self, decision: LimitDecision) -> dict[str, str]:
        headers: dict[str, str] = {}
        if decision.requests_limit is not None:
            headers["x-ratelimit-limit-requests"] = str(decision.requests_limit)
            headers["x-ratelimit-remaining-requests"] = str(decision.requests_remaining)
            headers["x-ratelimit-reset-requests"] = format_reset_duration(decision.requests_reset)
        if decision.tokens_limit is not None:
            headers["x-ratelimit-limit-tokens"] = str(decision.tokens_limit)
            headers["x-ratelimit-remaining-tokens"] = str(decision.tokens_remaining)
            headers["x-ratelimit-reset-tokens"] = format_reset_duration(decision.tokens_reset)
        return headers

    def error(
        self,
        status: int,
        kind: str,
        message: str,
        headers: dict[str, str],
        param: str | None,
        code: str | None = None,
    ) -> Reply:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return Reply(status, {"Content-Type": JSON, **headers}, orjson.dumps(body))

    def rate_limited(self, decision: LimitDecision, headers: dict[str, str]) -> Reply:
        assert decision.denied is not None
        return self.error(
            429,
            decision.denied,
            _limit_message(decision),
            {**headers, **retry_headers(decision.retry_after)},
            None,
            "rate_limit_exceeded",
        )

    def injected_429(self, retry_after: float, headers: dict[str, str]) -> Reply:
        message = (
            "Rate limit reached for requests per min (RPM) (injected by brace mock). "
            f"Please try again in {format_reset_duration(retry_after)}."
        )
        return self.error(
            429,
            "requests",
            message,
            {**headers, **retry_headers(retry_after)},
            None,
            "rate_limit_exceeded",
        )

    def server_error(self, status: int, retry_after: float, headers: dict[str, str]) -> Reply:
        message, kind, code = _OPENAI_ERRORS[status]
        if status in (503, 529):
            headers = {**headers, **retry_headers(retry_after)}
        return self.error(status, kind, message, headers, None, code)


class AnthropicDialect(Dialect):
    """Anthropic errors ``{"type": "error", "error": {type, message}}`` and
    ``anthropic-ratelimit-*`` headers (reset as an RFC 3339 time)."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall

    def _stamp(self, seconds_from_now: float) -> str:
        moment = self._wall() + seconds_from_now
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(moment)))

    def limit_headers(self, decision: LimitDecision) -> dict[str, str]:
        headers: dict[str, str] = {}
        if decision.requests_limit is not None:
            headers["anthropic-ratelimit-requests-limit"] = str(decision.requests_limit)
            headers["anthropic-ratelimit-requests-remaining"] = str(decision.requests_remaining)
            headers["anthropic-ratelimit-requests-reset"] = self._stamp(decision.requests_reset)
        if decision.tokens_limit is not None:
            headers["anthropic-ratelimit-tokens-limit"] = str(decision.tokens_limit)
            headers["anthropic-ratelimit-tokens-remaining"] = str(decision.tokens_remaining)
            headers["anthropic-ratelimit-tokens-reset"] = self._stamp(decision.tokens_reset)
        return headers

    def error(
        self, status: int, kind: str, message: str, headers: dict[str, str], param: str | None
    ) -> Reply:
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return Reply(status, {"Content-Type": JSON, **headers}, orjson.dumps(body))

    def rate_limited(self, decision: LimitDecision, headers: dict[str, str]) -> Reply:
        return self.error(
            429,
            "rate_limit_error",
            _limit_message(decision),
            {**headers, **retry_headers(decision.retry_after)},
            None,
        )

    def injected_429(self, retry_after: float, headers: dict[str, str]) -> Reply:
        return self.error(
            429,
            "rate_limit_error",
            "Rate limit exceeded (injected by brace mock).",
            {**headers, **retry_headers(retry_after)},
            None,
        )

    def server_error(self, status: int, retry_after: float, headers: dict[str, str]) -> Reply:
        kind, message = _ANTHROPIC_ERRORS[status]
        if status in (503, 529):
            headers = {**headers, **retry_headers(retry_after)}
        return self.error(status, kind, message, headers, None)
