"""What the read side of every table family shares: the 400 of a bad query argument,
``LIKE`` patterns that match their text literally, and keyset paging's cursors."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from ..errors import BadRequest

__all__ = ["InvalidQuery", "decode_cursor", "encode_cursor", "like_contains", "like_prefix", "page"]

_BAD_CURSOR = "before must be a next_cursor returned by this API"


class InvalidQuery(BadRequest):
    """A query argument is out of range; ``param`` names it (the admin API answers 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message, param=param)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_prefix(prefix: str) -> str:
    """A ``LIKE ... ESCAPE '\\'`` pattern matching text that starts with ``prefix``."""
    return _escape(prefix) + "%"


def like_contains(part: str) -> str:
    """A ``LIKE ... ESCAPE '\\'`` pattern matching text that contains ``part``."""
    return "%" + _escape(part) + "%"


def encode_cursor(position: float, *ids: str) -> str:
    """An opaque ``next_cursor``: a row's sort position and the ids that break ties."""
    raw = "|".join([repr(position), *ids]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, ids: int = 1) -> tuple[float, list[str]]:
    """The position and ``ids`` ids of a cursor from :func:`encode_cursor` (the last id
    may contain ``|``), or :class:`InvalidQuery` (``param="before"``)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        position, *rest = raw.split("|", ids)
        value = float(position)
    except (ValueError, UnicodeDecodeError):
        raise InvalidQuery("before", _BAD_CURSOR) from None
    if len(rest) != ids or not all(rest) or not math.isfinite(value):
        raise InvalidQuery("before", _BAD_CURSOR)
    return value, rest


def page(
    rows: list[dict[str, Any]], limit: int, cursor: Callable[[dict[str, Any]], str]
) -> tuple[list[dict[str, Any]], str | None]:
    """The first ``limit`` of ``rows`` (read with ``LIMIT limit + 1``) and, when there
    were more, the cursor of the last one shown."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, cursor(rows[-1])
