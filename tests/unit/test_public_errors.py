"""``brace`` exports every public error, and every error renders as before."""

from __future__ import annotations

import inspect

import brace
from brace import errors


def test_every_public_error_is_exported_from_brace() -> None:
    public = [
        name
        for name in errors.__all__
        if inspect.isclass(getattr(errors, name))
        and issubclass(getattr(errors, name), BaseException)
    ]
    assert len(public) == len(errors.__all__)
    for name in public:
        assert name in brace.__all__, name
        assert getattr(brace, name) is getattr(errors, name)


def test_every_error_class_in_errors_is_public() -> None:
    defined = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, errors.BraceError)
        and obj.__module__ == errors.__name__
    }
    assert defined == set(errors.__all__)


def test_the_gateway_errors_render_as_the_routes_did() -> None:
    cases = [
        (errors.NotFound("x"), 404, "invalid_request_error", "not_found", {}),
        (errors.KeyNotFound("x"), 404, "invalid_request_error", "key_not_found", {}),
        (
            errors.MethodNotAllowed("x", allow="GET, POST"),
            405,
            "invalid_request_error",
            "method_not_allowed",
            {"Allow": "GET, POST"},
        ),
        (errors.AdminKeyRequired("x"), 401, "authentication_error", "invalid_admin_key", {}),
        (errors.AdminDisabled("x"), 403, "permission_error", "admin_disabled", {}),
        (errors.RequestLogOff("x"), 503, "api_error", "request_log_off", {}),
        (errors.RequestLogUnavailable("x"), 503, "api_error", "request_log_unavailable", {}),
    ]
    for exc, status, type_, code, headers in cases:
        assert exc.http_status == status
        assert exc.to_dict() == {
            "error": {"message": "x", "type": type_, "code": code, "param": None}
        }
        assert exc.headers() == headers
