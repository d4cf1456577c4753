"""Map an upstream's failed answer to one class of Brace's error tree.

The class decides what the resilience policies do (retry, fall back, trip a
breaker) and is recorded on every attempt.  Works for OpenAI-compatible and
Anthropic bodies alike (both put the message at ``error.message``).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import (
    ContentFiltered,
    ContextWindowExceeded,
    Overloaded,
    RateLimited,
    ServerError,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamFailure,
    UpstreamNotFound,
)

__all__ = ["classify_failure", "parse_retry_after"]

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "input is too long",
)
_FILTER_MARKERS = ("content_filter", "content_policy", "content management policy", "safety")


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_fields(body: bytes) -> tuple[str, str, str]:
    """(message, type, code) from an OpenAI- or Anthropic-shaped error body."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return text, "", ""
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or ""), str(err.get("type") or ""), str(err.get("code") or "")
    if isinstance(err, str):
        return err, "", ""
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return parsed["message"], "", ""
    return "", "", ""


def classify_failure(
    status: int, body: bytes, headers: Mapping[str, str], *, deployment: str
) -> UpstreamFailure:
    """The error for an upstream answer with a non-2xx ``status``."""
    message, etype, code = _error_fields(body)
    retry_after = parse_retry_after(headers)
    detail = f": {message}" if message else ""
    kw: dict[str, Any] = {"deployment": deployment, "upstream_status": status}
    low = f"{message} {etype} {code}".lower()

    if status == 429:
        if code == "insufficient_quota" or etype == "insufficient_quota":
            return UpstreamAuthError(
                f"deployment {deployment}: the upstream account is out of quota (HTTP 429){detail}",
                code="insufficient_quota",
                **kw,
            )
        return RateLimited(
            f"deployment {deployment} is rate limited by its upstream (HTTP 429){detail}",
            retry_after=retry_after,
            **kw,
        )
    if status in (503, 529) or etype == "overloaded_error":
        return Overloaded(
            f"deployment {deployment} is overloaded (HTTP {status}){detail}",
            retry_after=retry_after,
            **kw,
        )
    if status >= 500:
        return ServerError(
            f"deployment {deployment} failed with HTTP {status}{detail}",
            retry_after=retry_after,
            **kw,
        )
    if status in (401, 403):
        # The upstream's message may echo part of the key: never pass it on.
        return UpstreamAuthError(
            f"deployment {deployment}: the upstream rejected Brace's credentials "
            f"(HTTP {status}); check the deployment's api_key",
            **kw,
        )
    if status == 404:
        return UpstreamNotFound(
            f"deployment {deployment}: the upstream does not know this model or path "
            f"(HTTP 404){detail}",
            **kw,
        )
    if any(m in low for m in _CONTEXT_MARKERS) or status == 413:
        return ContextWindowExceeded(
            f"the prompt does not fit the context window of deployment {deployment}{detail}",
            **kw,
        )
    if any(m in low for m in _FILTER_MARKERS):
        return ContentFiltered(f"deployment {deployment}: content filtered{detail}", **kw)
    return UpstreamBadRequest(
        f"deployment {deployment} rejected the request (HTTP {status}){detail}",
        status=status if 400 <= status < 500 else 400,
        **kw,
    )
