"""A streamed answer as one JSON answer, and a JSON answer as a stream again.

:func:`assemble` turns the ``chat.completion.chunk`` payloads of a finished stream
into the ``chat.completion`` body a JSON request would have got: per choice, the
role, every text field concatenated (``content``, ``refusal``, ``reasoning_content``,
``reasoning``), tool calls joined by index (id, type, name, arguments) and the
finish reason; plus the usage.  :func:`replay` does the opposite: a role chunk, the
text in a few pieces, each tool call (id and name, then its arguments in pieces),
the finish chunk and — only when the caller asked ``stream_options.include_usage``
— the usage chunk, as ONE frame (a hit is written with one write).

Both return ``None`` for what they cannot carry faithfully (logprobs, audio,
annotations, a choice without a finish reason, an error event): such an answer is
not cached, or not replayed.  ``assemble(replay(x))`` equals ``x`` for whatever
``assemble`` produced.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson

from ..stack import frame_payloads, sse_frame

__all__ = ["Assembler", "assemble", "replay", "split_text"]

_TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
_HEAD_FIELDS = ("id", "created", "model", "system_fingerprint")
_REPLAY_ORDER = ("reasoning_content", "reasoning", "content", "refusal")
"""Reasoning streams before the answer, as upstreams send it."""


class _Unfaithful(Exception):
    pass


def assemble(payloads: Iterable[Any], usage: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The JSON answer of a complete stream (``usage`` if no chunk carried one)."""
    acc = Assembler()
    acc.feed(payloads)
    return acc.result(usage)


class Assembler:
    """:func:`assemble`, fed as the chunks pass: memory grows with the answer's text,
    not with the stream's bytes.  :attr:`size` is the text gathered so far."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] | None = None
        self.failed = False
        self.size = 0

    def feed(self, payloads: Iterable[Any]) -> None:
        if self.failed:
            return
        try:
            for chunk in payloads:
                self._feed(chunk)
        except _Unfaithful:
            self.failed = True
            self._choices.clear()

    def feed_frames(self, frames: Iterable[bytes]) -> None:
        """Parse SSE frames (as :class:`~brace.stack.StreamResponse` yields) and feed them."""
        try:
            self.feed(orjson.loads(p) for f in frames for p in frame_payloads(f))
        except orjson.JSONDecodeError:
            self.failed = True

    def _feed(self, chunk: Any) -> None:
        if not isinstance(chunk, dict) or "error" in chunk:
            raise _Unfaithful
        head = self._head
        for name in _HEAD_FIELDS:
            if name not in head and chunk.get(name) is not None:
                head[name] = chunk[name]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for c in chunk.get("choices") or ():
            if not isinstance(c, dict) or not isinstance(c.get("index", 0), int):
                raise _Unfaithful
            if c.get("logprobs") is not None:
                raise _Unfaithful
            state = self._choices.setdefault(c.get("index", 0), {"texts": {}, "tools": {}})
            delta = c.get("delta") or {}
            if not isinstance(delta, dict):
                raise _Unfaithful
            for name, value in delta.items():
                if name == "role":
                    state["role"] = value
                elif name == "tool_calls":
                    self.size += _tool_deltas(state["tools"], value)
                elif value is None:
                    continue
                elif name in _TEXT_FIELDS and isinstance(value, str):
                    state["texts"][name] = state["texts"].get(name, "") + value
                    self.size += len(value)
                else:
                    raise _Unfaithful  # audio, function_call, annotations...
            if c.get("finish_reason") is not None:
                state["finish"] = c["finish_reason"]

    def result(self, usage: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The answer, or ``None`` (unfaithful, or a choice never finished)."""
        choices = self._choices
        if self.failed or not choices or any("finish" not in s for s in choices.values()):
            return None
        head = self._head
        out: dict[str, Any] = {
            "id": head.get("id", ""),
            "object": "chat.completion",
            "created": head.get("created", 0),
            "model": head.get("model", ""),
        }
        if "system_fingerprint" in head:
            out["system_fingerprint"] = head["system_fingerprint"]
        out["choices"] = [_choice(i, choices[i]) for i in sorted(choices)]
        usage = self._usage if self._usage is not None else usage
        if usage is not None:
            out["usage"] = usage
        return out


def _tool_deltas(tools: dict[int, dict[str, Any]], deltas: Any) -> int:
    if deltas is None:
        return 0
    if not isinstance(deltas, list):
        raise _Unfaithful
    size = 0
    for d in deltas:
        if not isinstance(d, dict) or not isinstance(d.get("index"), int):
            raise _Unfaithful
        call = tools.setdefault(
            d["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if isinstance(d.get("id"), str):
            call["id"] = d["id"]
        if isinstance(d.get("type"), str):
            call["type"] = d["type"]
        fn = d.get("function")
        if isinstance(fn, dict):
            for part in ("name", "arguments"):
                if isinstance(fn.get(part), str):
                    call["function"][part] += fn[part]
                    size += len(fn[part])
    return size


def _choice(index: int, state: dict[str, Any]) -> dict[str, Any]:
    texts: dict[str, str] = state["texts"]
    tools = [state["tools"][i] for i in sorted(state["tools"])]
    others = [name for name in _TEXT_FIELDS[1:] if name in texts]
    content: str | None = texts.get("content") or None
    if content is None and not tools and not others:
        content = ""
    message: dict[str, Any] = {"role": state.get("role") or "assistant", "content": content}
    for name in others:
        message[name] = texts[name]
    if tools:
        message["tool_calls"] = tools
    return {"index": index, "message": message, "logprobs": None, "finish_reason": state["finish"]}


def split_text(text: str, pieces: int = 4, min_piece: int = 16) -> list[str]:
    """``text`` in at most ``pieces`` parts of at least ``min_piece`` characters."""
    if not text:
        return []
    size = max(min_piece, math.ceil(len(text) / pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def replay(answer: dict[str, Any], *, include_usage: bool = False) -> bytes | None:
    """A ``chat.completion`` body as one SSE frame of chunks, or ``None`` if it
    cannot be replayed faithfully."""
    try:
        return sse_frame(orjson.dumps(c) for c in _chunks(answer, include_usage))
    except _Unfaithful:
        return None


def _chunks(answer: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Unfaithful
    base: dict[str, Any] = {
        "id": answer.get("id", ""),
        "object": "chat.completion.chunk",
        "created": answer.get("created", 0),
        "model": answer.get("model", ""),
    }
    if "system_fingerprint" in answer:
        base["system_fingerprint"] = answer["system_fingerprint"]

    def chunk(index: int, delta: dict[str, Any], finish: Any = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }

    out: list[dict[str, Any]] = []
    for pos, c in enumerate(choices):
        if not isinstance(c, dict) or c.get("logprobs") is not None:
            raise _Unfaithful
        index = c.get("index", pos)
        message = c.get("message")
        finish = c.get("finish_reason")
        if not isinstance(message, dict) or finish is None or not isinstance(index, int):
            raise _Unfaithful
        for name, value in message.items():
            known = name in ("role", "tool_calls", *_TEXT_FIELDS)
            if not known and value not in (None, [], {}):
                raise _Unfaithful  # audio, annotations, function_call...
        out.append(chunk(index, {"role": message.get("role") or "assistant", "content": ""}))
        for name in _REPLAY_ORDER:
            value = message.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise _Unfaithful
            out.extend(chunk(index, {name: piece}) for piece in split_text(value))
        tool_calls = message.get("tool_calls") or []
        if not isinstance(tool_calls, list):
            raise _Unfaithful
        for i, call in enumerate(tool_calls):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict):
                raise _Unfaithful
            first = {
                "index": i,
                "id": call.get("id", ""),
                "type": call.get("type", "function"),
                "function": {"name": fn.get("name", ""), "arguments": ""},
            }
            out.append(chunk(index, {"tool_calls": [first]}))
            args = fn.get("arguments") or ""
            if not isinstance(args, str):
                raise _Unfaithful
            out.extend(
                chunk(index, {"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                for piece in split_text(args)
            )
        out.append(chunk(index, {}, finish))
    if include_usage and isinstance(answer.get("usage"), dict):
        out.append({**base, "choices": [], "usage": answer["usage"]})
    return out
