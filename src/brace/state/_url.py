"""URLs safe to log and show."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["redact_url"]


def redact_url(url: str, *, keep_user: bool = True) -> str:
    """``url`` without its password or query string (safe to log and show); without
    the user name too when ``keep_user`` is false (where it may be a key as well)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        if keep_user and (parts.username or parts.password):
            netloc = f"{parts.username or ''}:***@{netloc}"
        return f"{parts.scheme}://{netloc}{parts.path}"
    except ValueError:
        return "<unparsable url>"
