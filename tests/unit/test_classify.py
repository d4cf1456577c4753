import orjson
import pytest

from brace.errors import (
    ContentFiltered,
    ContextWindowExceeded,
    Overloaded,
    RateLimited,
    ServerError,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamNotFound,
)
from brace.providers._classify import classify_failure, parse_retry_after


def body(message: str, type_: str = "", code: str = "") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "code": code}})


@pytest.mark.parametrize(
    ("status", "raw", "cls", "error_class"),
    [
        (429, body("Rate limit reached"), RateLimited, "rate_limited"),
        (503, body("busy"), Overloaded, "overloaded"),
        (
            529,
            orjson.dumps(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            ),
            Overloaded,
            "overloaded",
        ),
        (500, body("boom"), ServerError, "server_error"),
        (502, b"<html>bad gateway</html>", ServerError, "server_error"),
        (
            401,
            body("Incorrect API key provided: sk-abc***xyz"),
            UpstreamAuthError,
            "authentication",
        ),
        (404, body("The model does not exist"), UpstreamNotFound, "not_found"),
        (
            400,
            body(
                "This model's maximum context length is 8192 tokens", code="context_length_exceeded"
            ),
            ContextWindowExceeded,
            "context_window_exceeded",
        ),
        (
            400,
            orjson.dumps(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "prompt is too long: 210000 tokens > 200000 maximum",
                    },
                }
            ),
            ContextWindowExceeded,
            "context_window_exceeded",
        ),
        (400, body("filtered", code="content_filter"), ContentFiltered, "content_filtered"),
        (400, body("Invalid value for temperature"), UpstreamBadRequest, "bad_request"),
        (422, body("unprocessable"), UpstreamBadRequest, "bad_request"),
    ],
)
def test_classes(status: int, raw: bytes, cls: type, error_class: str) -> None:
    err = classify_failure(status, raw, {}, deployment="d1")
    assert type(err) is cls
    assert err.error_class == error_class
    assert err.deployment == "d1"
    assert err.upstream_status == status


def test_auth_error_never_echoes_upstream_message() -> None:
    err = classify_failure(
        401, body("Incorrect API key provided: sk-abc***xyz"), {}, deployment="d"
    )
    assert "sk-abc" not in err.message
    assert "api_key" in err.message


def test_rate_limited_carries_retry_after_and_headers() -> None:
    err = classify_failure(429, body("slow down"), {"retry-after-ms": "1500"}, deployment="d")
    assert isinstance(err, RateLimited)
    assert err.retry_after == 1.5
    assert err.headers() == {"retry-after": "2", "retry-after-ms": "1500"}
    assert err.http_status == 429
    assert err.to_dict()["error"]["code"] == "rate_limit_exceeded"


def test_insufficient_quota_is_not_a_rate_limit() -> None:
    err = classify_failure(429, body("quota", code="insufficient_quota"), {}, deployment="d")
    assert isinstance(err, UpstreamAuthError)
    assert not err.retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412480.0  # 07:28:00 GMT that day
    assert parse_retry_after(headers, now=now) == expected
