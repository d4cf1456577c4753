"""A small blocking client of a gateway's admin API, shared by the ``brace`` commands
that drive a running gateway (``logs``, ``trace``, ``keys``).

The master key is read from an environment variable (``$BRACE_ADMIN_KEY`` unless
``--admin-key-env`` names another) and sent as ``Authorization: Bearer``; it is
never taken as a flag value and never printed.  Every failure (an HTTP error with an
OpenAI-shaped body, a gateway that cannot be reached, an answer that is not JSON)
becomes one :class:`AdminError` whose message fits on one line.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any

import orjson
import typer

__all__ = ["DEFAULT_URL", "AdminClient", "AdminError", "KeyEnvOpt", "UrlOpt"]

DEFAULT_URL = "http://127.0.0.1:4000"

UrlOpt = Annotated[str, typer.Option("--url", help="The gateway's base URL.")]
KeyEnvOpt = Annotated[
    str,
    typer.Option(
        "--admin-key-env",
        help="Environment variable holding server.admin_key (sent as a Bearer token).",
    ),
]


class AdminError(Exception):
    """A failed admin call; ``status`` is the HTTP status, or ``None`` when the gateway
    gave no HTTP answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AdminClient:
    def __init__(self, url: str, key_env: str, timeout: float = 10.0) -> None:
        self.base = url.rstrip("/")
        self.key_env = key_env
        self.key = os.environ.get(key_env) or None
        self.timeout = timeout

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """Call the admin API; returns the parsed JSON answer."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else orjson.dumps(body)
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Accept": "application/json"}
        )
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            message = f"{exc.code} {_error_message(exc)}"
            if exc.code == 401 and self.key is None:
                message += f" (${self.key_env} is not set)"
            raise AdminError(message, exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"cannot reach the gateway at {self.base}: {reason}") from None
        except orjson.JSONDecodeError:
            raise AdminError(f"{url}: the answer is not JSON (is this a Brace gateway?)") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = orjson.loads(exc.read())
        return " ".join(str(body["error"]["message"]).split())  # one line
    except Exception:  # any non-OpenAI-shaped body: show the reason phrase
        return str(exc.reason)
