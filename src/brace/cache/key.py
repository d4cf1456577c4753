"""The cache key: SHA-256 of the canonical form of everything that shapes the answer.

Exact match only.  The canonical form is ``{v, op, group, tenant, body}`` as orjson
bytes with sorted keys (``OPT_SORT_KEYS`` sorts every nested object too, so key order
in messages, content parts, tools and schemas never matters), where ``body`` is the
request body with:

- the parameters that do not change the answer removed (:data:`IGNORED_PARAMS`:
  ``stream``, ``stream_options``, ``user``, ``metadata``, ``store``... and ``model``,
  replaced by the model group) — so a streamed and a JSON request share an entry;
- top-level ``null`` values removed (``"stop": null`` is the same as no ``stop``);
- whole-number sampling floats made floats (``"temperature": 1`` is ``1.0``);
- a message ``content`` that is a list of exactly one text part made the plain
  string it stands for.

Every other parameter stays in the key, including ones Brace does not know yet: a
parameter wrongly kept only costs hit rate, one wrongly dropped would return a wrong
answer.  ``tenant`` is the caller (``request.state.tenant``: the virtual key's id, ``master``,
or in local mode a hash of the Authorization header), or ``None`` when the group's
cache is ``shared``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

__all__ = ["IGNORED_PARAMS", "KEY_VERSION", "cache_key", "canonical_request"]

KEY_VERSION = 1
"""Bumped whenever the canonical form changes, so old entries simply stop matching."""

IGNORED_PARAMS = frozenset(
    {
        "model",  # replaced by the model group
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
"""Body fields that do not change the answer's content."""

_FLOAT_PARAMS = frozenset(
    {"temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p"}
)


def _content(value: Any) -> Any:
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and value[0].get("type") == "text"
        and isinstance(value[0].get("text"), str)
        and len(value[0]) == 2
    ):
        return value[0]["text"]
    return value


def _messages(messages: Any) -> Any:
    if not isinstance(messages, list):
        return messages
    out: list[Any] = []
    for msg in messages:
        if isinstance(msg, dict) and "content" in msg:
            msg = {**msg, "content": _content(msg["content"])}
        out.append(msg)
    return out


def canonical_request(
    operation: str, group: str, body: dict[str, Any], tenant: str | None
) -> bytes:
    """The bytes that are hashed into the key (exposed for tests and debugging)."""
    norm: dict[str, Any] = {}
    for name, value in body.items():
        if name in IGNORED_PARAMS or value is None:
            continue
        if name in _FLOAT_PARAMS and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif name == "messages":
            value = _messages(value)
        norm[name] = value
    doc = {"v": KEY_VERSION, "op": operation, "group": group, "tenant": tenant, "body": norm}
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def cache_key(operation: str, group: str, body: dict[str, Any], tenant: str | None) -> str:
    """SHA-256 hex of :func:`canonical_request`."""
    return hashlib.sha256(canonical_request(operation, group, body, tenant)).hexdigest()
