"""The one exception tree of Brace.

Every error knows its HTTP status and renders itself as an OpenAI-shaped body
(``{"error": {"message", "type", "code", "param"}}``), so the gateway and the
in-process client report failures the same way.  Caller mistakes are kept apart
from runtime failures; vendor errors are mapped at the provider boundary
(``raise ... from exc``) into the runtime branch.

::

    BraceError
    ├── ConfigError                  the config file or a constructor argument is wrong (start-up)
    ├── NoCapacity                   internal signal: no deployment can take the request now
    │                                (``wait``: when one may); the admission queue catches it
    ├── RequestError                 the caller sent something Brace will not forward (4xx)
    │   ├── BadRequest               400 unparseable body, missing/invalid field
    │   │   └── InvalidQuery         400 a request-log query argument (brace.store.requests)
    │   ├── PayloadTooLarge          413 body over ``server.max_body_bytes``
    │   ├── NotFound                 404 no such route, dashboard file, logged request or trace
    │   │   ├── ModelNotFound        404 the model name is not a configured model group
    │   │   └── KeyNotFound          404 no virtual key with this id (admin API)
    │   ├── MethodNotAllowed         405 the path exists with other methods (``Allow`` header)
    │   ├── AuthenticationFailed     401 no API key, an unknown, expired or revoked one
    │   │   └── AdminKeyRequired     401 an admin route without the master key (``server.admin_key``)
    │   └── PermissionDenied         403 the key may not use this model
    │       └── AdminDisabled        403 the admin API is off: a non-loopback address, no master key
    ├── RequestLogUnavailable        503 the request log could not be read (a failing database)
    │   └── RequestLogOff            503 there is no request log (``telemetry.store: off``)
    ├── QuotaExceeded                the caller's own limits refused the request (429, not sent)
    │   ├── KeyRateLimited           429 the key's RPM/TPM; ``retry-after`` when it frees up
    │   └── BudgetExceeded           429 a hard budget of the key or its team is spent; says which,
    │                                and when it resets (``x-should-retry: false``)
    └── UpstreamFailure              an attempt at a deployment failed (runtime)
        ├── RateLimited              429 the upstream (or Brace's own pacing) refused; ``retry_after``
        ├── Overloaded               503 the upstream said 503/529 "overloaded"
        ├── ServerError              502 the upstream answered 5xx
        ├── UpstreamTimeout          504 connect / first byte / stall / total timeout
        ├── UpstreamConnectionError  502 connection refused, reset, DNS, TLS
        ├── MalformedResponse        502 the upstream answered something that is not its protocol
        ├── ContextWindowExceeded    400 the prompt does not fit the model's context window
        ├── ContentFiltered          400 the upstream's content filter refused
        ├── UpstreamAuthError        502 the upstream rejected the deployment's credentials
        ├── UpstreamBadRequest       4xx the upstream rejected the request itself (passed through)
        ├── UpstreamNotFound         404 the upstream does not know the model or path
        ├── Shed                     429 Brace's admission queue refused: full, or the deadline
        │                            cannot be met at the current rate (honest ``retry-after``)
        ├── CircuitOpen              503 Brace's breaker for the deployment is open (not sent)
        ├── DeadlineExceeded         504 the request's one deadline passed (queue + retries + fallbacks)
        ├── RetryBudgetExhausted     503 a retry or hedge found no deployment with retry budget left
        └── AttemptsExhausted        every attempt failed: carries each attempt's failure, in order;
                                     its status is the last failure's (429/503 keep ``retry-after``)

``error_class`` is the short, stable name of each class of outcome; it is what
policies decide on and what telemetry records on every attempt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

__all__ = [
    "AdminDisabled",
    "AdminKeyRequired",
    "AttemptsExhausted",
    "AuthenticationFailed",
    "BadRequest",
    "BraceError",
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigError",
    "ContentFiltered",
    "ContextWindowExceeded",
    "DeadlineExceeded",
    "KeyNotFound",
    "KeyRateLimited",
    "MalformedResponse",
    "MethodNotAllowed",
    "ModelNotFound",
    "NoCapacity",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "RequestError",
    "RequestLogOff",
    "RequestLogUnavailable",
    "RetryBudgetExhausted",
    "ServerError",
    "Shed",
    "UpstreamAuthError",
    "UpstreamBadRequest",
    "UpstreamConnectionError",
    "UpstreamFailure",
    "UpstreamNotFound",
    "UpstreamTimeout",
]


class BraceError(Exception):
    """Base of every error Brace raises on purpose."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str | None] = None
    error_class: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self._code = code
        self._status = status

    @property
    def http_status(self) -> int:
        return self._status if self._status is not None else self.status

    @property
    def error_code(self) -> str | None:
        return self._code if self._code is not None else self.code

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI-shaped error object."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.error_code,
                "param": self.param,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def headers(self) -> dict[str, str]:
        """Extra response headers this error carries (``retry-after`` for example)."""
        return {}


class ConfigError(BraceError):
    """The configuration is invalid. The message names the file, the key and the fix."""

    status = 500
    type = "configuration_error"
    error_class = "config"


class NoCapacity(BraceError):
    """No deployment of a group can take this request now (pacing or concurrency).

    Not an error a caller sees: the admission policy catches it and queues the
    request.  ``wait`` is the soonest a deployment may have room (``None``: when an
    in-flight request finishes)."""

    status = 429
    type = "rate_limit_error"
    code = "no_capacity"
    error_class = "no_capacity"

    def __init__(self, message: str, *, wait: float | None) -> None:
        super().__init__(message)
        self.wait = wait


# ----------------------------------------------------------------------------- caller mistakes


class RequestError(BraceError):
    """The caller sent a request Brace will not forward."""

    status = 400
    type = "invalid_request_error"
    error_class = "bad_request"


class BadRequest(RequestError):
    status = 400
    code = "invalid_request"


class PayloadTooLarge(RequestError):
    status = 413
    code = "request_too_large"


class NotFound(RequestError):
    """Nothing at this path, or no such thing in the request log."""

    status = 404
    code = "not_found"
    error_class = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class MethodNotAllowed(RequestError):
    """The path exists, with other methods: ``allow`` lists them (the ``Allow`` header)."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow}


class AuthenticationFailed(RequestError):
    """No usable API key: missing, unknown, expired or revoked (``code`` says which)."""

    status = 401
    code = "invalid_api_key"
    error_class = "authentication"


class PermissionDenied(RequestError):
    """The key is valid but may not do this (a model outside its scope)."""

    status = 403
    type = "permission_error"
    code = "model_not_allowed"
    error_class = "permission_denied"


class AdminKeyRequired(AuthenticationFailed):
    """An admin route (or, with a key set, ``/metrics``) without the master key."""

    type = "authentication_error"
    code = "invalid_admin_key"


class AdminDisabled(PermissionDenied):
    """The admin API is off: the gateway serves a non-loopback address without a
    master key."""

    code = "admin_disabled"


# ----------------------------------------------------------------------------- the gateway's own


class RequestLogUnavailable(BraceError):
    """The request log (``telemetry.store``) failed to answer an admin query."""

    status = 503
    type = "api_error"
    code = "request_log_unavailable"


class RequestLogOff(RequestLogUnavailable):
    """There is no request log to query: ``telemetry.store: off``."""

    code = "request_log_off"


# ----------------------------------------------------------------------------- the caller's limits


class QuotaExceeded(BraceError):
    """The caller's own limits (its key's rate or budget) refused the request before
    anything was sent upstream."""

    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


class KeyRateLimited(QuotaExceeded):
    code = "key_rate_limited"
    error_class = "key_rate_limited"


class BudgetExceeded(QuotaExceeded):
    """A hard budget is spent: retrying before it resets cannot succeed."""

    type = "insufficient_quota"
    code = "budget_exceeded"
    error_class = "budget_exceeded"

    def headers(self) -> dict[str, str]:
        # the openai SDKs honour x-should-retry: a spent budget is not a transient 429
        return {**super().headers(), "x-should-retry": "false"}


# ----------------------------------------------------------------------------- runtime failures


class UpstreamFailure(BraceError):
    """One attempt at a deployment failed.

    ``deployment`` names the deployment that failed (never its credentials) and
    ``upstream_status`` is the HTTP status the upstream answered, if any.
    """

    status = 502
    type = "upstream_error"
    error_class = "server_error"
    retryable: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        deployment: str | None = None,
        upstream_status: int | None = None,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, status=status)
        self.deployment = deployment
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.upstream_headers: Mapping[str, str] | None = None
        """The upstream's response headers, when it answered (rate-limit learning)."""

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        seconds = max(0.0, self.retry_after)
        return {
            "retry-after": str(int(-(-seconds // 1))),
            "retry-after-ms": str(int(seconds * 1000)),
        }


class RateLimited(UpstreamFailure):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    error_class = "rate_limited"


class Overloaded(UpstreamFailure):
    status = 503
    type = "overloaded_error"
    code = "overloaded"
    error_class = "overloaded"


class ServerError(UpstreamFailure):
    status = 502
    type = "upstream_error"
    code = "upstream_server_error"
    error_class = "server_error"


class UpstreamTimeout(UpstreamFailure):
    """``phase`` is ``connect``, ``first_token``, ``stall`` or ``total``."""

    status = 504
    type = "timeout_error"
    code = "upstream_timeout"
    error_class = "timeout"

    def __init__(self, message: str, *, phase: str = "total", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.phase = phase


class UpstreamConnectionError(UpstreamFailure):
    status = 502
    type = "upstream_error"
    code = "upstream_connection_error"
    error_class = "connection_error"


class MalformedResponse(UpstreamFailure):
    status = 502
    type = "upstream_error"
    code = "upstream_malformed_response"
    error_class = "malformed_response"


class ContextWindowExceeded(UpstreamFailure):
    status = 400
    type = "invalid_request_error"
    code = "context_length_exceeded"
    error_class = "context_window_exceeded"
    retryable = False


class ContentFiltered(UpstreamFailure):
    status = 400
    type = "invalid_request_error"
    code = "content_filter"
    error_class = "content_filtered"
    retryable = False


class UpstreamAuthError(UpstreamFailure):
    """The upstream refused the deployment's credentials: a configuration problem of
    the gateway, not the caller's, so it is reported as 502."""

    status = 502
    type = "upstream_error"
    code = "upstream_authentication_error"
    error_class = "authentication"
    retryable = False


class UpstreamBadRequest(UpstreamFailure):
    status = 400
    type = "invalid_request_error"
    code = "upstream_bad_request"
    error_class = "bad_request"
    retryable = False


class UpstreamNotFound(UpstreamFailure):
    status = 404
    type = "invalid_request_error"
    code = "upstream_not_found"
    error_class = "not_found"
    retryable = False


class Shed(UpstreamFailure):
    """The admission queue refused the request at once: the queue is full, or its
    deadline cannot be met given its place in the queue and the current rate.
    ``retry_after`` is Brace's honest estimate of when capacity frees up."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    error_class = "shed"
    retryable = False


class CircuitOpen(UpstreamFailure):
    """Brace did not send the attempt: the deployment's breaker is open."""

    status = 503
    type = "overloaded_error"
    code = "circuit_open"
    error_class = "circuit_open"


class DeadlineExceeded(UpstreamFailure):
    """The request's deadline passed; nothing more is tried."""

    status = 504
    type = "timeout_error"
    code = "deadline_exceeded"
    error_class = "deadline_exceeded"
    retryable = False


class RetryBudgetExhausted(UpstreamFailure):
    """No deployment may take another retry (or hedge) now: their retry budgets are
    spent.  The retry policy then returns the failure that prompted the retry."""

    status = 503
    type = "overloaded_error"
    code = "retry_budget_exhausted"
    error_class = "retry_budget_exhausted"
    retryable = False


class AttemptsExhausted(UpstreamFailure):
    """Every attempt (retries, hedges, fallbacks) failed.

    ``failures`` holds each attempt's error in order; :attr:`group` is an
    :class:`ExceptionGroup` of them for ``except*`` users.  The HTTP status, type,
    code and ``retry-after`` are the last failure's, and the message names every
    attempt and its cause.
    """

    def __init__(self, failures: list[UpstreamFailure], *, deadline_hit: bool = False) -> None:
        assert failures, "AttemptsExhausted needs at least one failure"
        last = failures[-1]
        causes = "; ".join(
            f"[{i}] {f.deployment or '?'}: {f.error_class}"
            + (f" (HTTP {f.upstream_status})" if f.upstream_status else "")
            for i, f in enumerate(failures, 1)
        )
        head = "the deadline passed" if deadline_hit else f"all {len(failures)} attempts failed"
        super().__init__(
            f"{head}: {causes}. Last error: {last.message}",
            deployment=last.deployment,
            upstream_status=last.upstream_status,
            param=last.param,
            retry_after=last.retry_after,
        )
        self.failures = failures
        self.last = last
        self.error_class = last.error_class  # type: ignore[misc]

    @property
    def http_status(self) -> int:
        return self.last.http_status

    @property
    def error_code(self) -> str | None:
        return self.last.error_code

    @property
    def group(self) -> ExceptionGroup[UpstreamFailure]:
        return ExceptionGroup("attempts", self.failures)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["error"]["type"] = self.last.type
        return body
