"""Linking a request to the run whose answer it continues, with no run identity sent.

Agent loops resend the whole conversation: the request after a tool call holds the
messages that were sent before, the answer that asked for the tools, and the tools'
results.  When Brace answers a run's request it keeps a fingerprint of *the messages
sent plus the answer*; a later request whose messages, up to and including their last
assistant message, have the same fingerprint continues that run.

The fingerprint is a hash over each message's role, its text, its tool calls (id, name,
and arguments with their JSON keys sorted; a message with tool calls is known by them
alone) and its ``tool_call_id``, scoped to the tenant: formatting the client may change when it resends a message (``content: null``
against ``""``, spacing in arguments, extra fields such as ``refusal``) does not count.
What breaks the link — documented in docs/runs.md — is a client that edits the history
(drops, summarises or reorders earlier messages) or forks a conversation: a fork
continues the run from the answer it forked at, so both branches land in one run.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import orjson

__all__ = ["LinkIndex", "answer_key", "continuation_key"]


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    out.append(text)
                elif part.get("type") not in (None, "text"):
                    out.append(f"<{part.get('type')}>")
            elif isinstance(part, str):
                out.append(part)
        return "".join(out)
    return str(content)


def _args(raw: Any) -> str:
    value = raw
    if isinstance(raw, str):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return str(raw)


def _canonical(message: Any) -> list[Any]:
    if not isinstance(message, dict):
        return [str(message)]
    calls = []
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            fn = call.get("function")
            fn = fn if isinstance(fn, dict) else {}
            calls.append([call.get("id"), fn.get("name"), _args(fn.get("arguments"))])
    # an answer with tool calls is known by them: its text (which a streamed answer's
    # client assembles, and frameworks resend as null, "" or the text) does not count
    text = "" if calls else _text(message.get("content")).strip()
    return [message.get("role"), text, calls, message.get("tool_call_id")]


def _digest(tenant: str, messages: list[Any]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(tenant.encode())
    h.update(b"\0")
    h.update(orjson.dumps([_canonical(m) for m in messages]))
    return h.digest()


def continuation_key(tenant: str, messages: Any) -> bytes | None:
    """The fingerprint a request continues: its messages up to and including the last
    assistant message (``None`` when it has none: it continues nothing)."""
    if not isinstance(messages, list):
        return None
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "assistant":
            return _digest(tenant, messages[: i + 1])
    return None


def answer_key(tenant: str, messages: Any, answer: dict[str, Any]) -> bytes | None:
    """The fingerprint of a request's messages followed by its answer's message."""
    if not isinstance(messages, list):
        return None
    return _digest(tenant, [*messages, answer])


class LinkIndex:
    """Fingerprint → (tenant, run id), the newest ``size`` kept."""

    __slots__ = ("_items", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, tuple[str, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: bytes, run: tuple[str, str]) -> None:
        items = self._items
        items[key] = run
        items.move_to_end(key)
        while len(items) > self._size:
            items.popitem(last=False)

    def get(self, key: bytes) -> tuple[str, str] | None:
        return self._items.get(key)
