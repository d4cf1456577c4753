"""Messages API stream events as OpenAI ``chat.completion.chunk`` payloads."""

from __future__ import annotations

from typing import Any, Final

import orjson

from ...stack import RequestState
from .._classify import classify_failure
from ._shared import JSON_TOOL_NAME, finish_reason, malformed, openai_usage

__all__ = ["StreamTranslator"]

_STREAM_ERROR_STATUS: Final[dict[str, int]] = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
}


class StreamTranslator:
    """Messages API stream events in, OpenAI ``chat.completion.chunk`` payloads out.

    Feed each SSE event to :meth:`feed`; it returns the chunks (JSON bytes) to send.
    After the upstream ends, :meth:`finish` raises
    :class:`~brace.errors.MalformedResponse` if ``message_stop`` never came.
    """

    __slots__ = (
        "_block_tool",
        "_created",
        "_deployment",
        "_id",
        "_include_usage",
        "_json_blocks",
        "_json_mode",
        "_model",
        "_prefix",
        "_tools",
        "_usage",
        "finish_reasons",
        "finished",
    )

    def __init__(
        self, *, created: int, model: str, include_usage: bool, json_mode: bool, deployment: str
    ) -> None:
        self._created = created
        self._model = model
        self._include_usage = include_usage
        self._json_mode = json_mode
        self._deployment = deployment
        self._id = ""
        self._prefix = b""
        self._usage: dict[str, Any] = {}
        self.finish_reasons: list[str] = []
        self._block_tool: dict[int, int] = {}  # content block index -> tool call index
        self._json_blocks: set[int] = set()
        self._tools = 0
        self.finished = False

    def _chunk(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        tail = b'"' + reason.encode() + b'"' if reason else b"null"
        return (
            self._prefix
            + b'"delta":'
            + orjson.dumps(delta)
            + b',"logprobs":null,"finish_reason":'
            + tail
            + b"}]}"
        )

    def feed(self, name: bytes | None, data: bytes) -> list[bytes]:
        try:
            event: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            raise malformed(self._deployment, "the upstream sent a stream event that is not JSON")
        etype = event.get("type") or (name.decode() if name else None)
        if self.finished:
            return []
        if etype == "message_start":
            return self._start(event)
        if etype == "error":
            err = event.get("error")
            kind = err.get("type") if isinstance(err, dict) else None
            status = _STREAM_ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
            raise classify_failure(status, data, {}, deployment=self._deployment)
        if etype in ("ping", None):
            return []
        if not self._prefix:
            raise malformed(
                self._deployment, f"the upstream stream sent {etype} before message_start"
            )
        if etype == "content_block_start":
            return self._block_start(event)
        if etype == "content_block_delta":
            return self._block_delta(event)
        if etype == "message_delta":
            return self._message_delta(event)
        if etype == "message_stop":
            self.finished = True
            if not self._include_usage:
                return []
            chunk = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": openai_usage(self._usage),
            }
            return [orjson.dumps(chunk)]
        return []  # content_block_stop and event types added later

    def _start(self, event: dict[str, Any]) -> list[bytes]:
        msg = event.get("message")
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), str):
            raise malformed(self._deployment, "message_start carries no message")
        if isinstance(msg.get("model"), str):
            self._model = msg["model"]
        usage = msg.get("usage")
        if isinstance(usage, dict):
            self._usage.update(usage)
        self._id = msg["id"]
        head = {"id": self._id, "object": "chat.completion.chunk", "created": self._created}
        self._prefix = (
            orjson.dumps(head)[:-1]
            + b',"model":'
            + orjson.dumps(self._model)
            + b',"choices":[{"index":0,'
        )
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, event: dict[str, Any]) -> list[bytes]:
        block = event.get("content_block")
        index = event.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            raise malformed(self._deployment, "content_block_start without a block or index")
        btype = block.get("type")
        if btype == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if text else []
        if btype != "tool_use":
            return []  # thinking and server-tool blocks have no OpenAI equivalent
        if self._json_mode and block.get("name") == JSON_TOOL_NAME:
            self._json_blocks.add(index)
            return []
        tool = self._tools
        self._tools += 1
        self._block_tool[index] = tool
        call = {
            "index": tool,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, event: dict[str, Any]) -> list[bytes]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            raise malformed(self._deployment, "content_block_delta without a delta")
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if text else []
        if dtype != "input_json_delta":
            return []  # thinking, signature and citations deltas
        partial = delta.get("partial_json")
        if not partial:
            return []
        index = event.get("index")
        if index in self._json_blocks:
            return [self._chunk({"content": partial})]
        tool = self._block_tool.get(index) if isinstance(index, int) else None
        if tool is None:
            raise malformed(self._deployment, "input_json_delta for a block that is no tool_use")
        return [self._chunk({"tool_calls": [{"index": tool, "function": {"arguments": partial}}]})]

    def _message_delta(self, event: dict[str, Any]) -> list[bytes]:
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        delta = event.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop is None:
            return []
        reason = finish_reason(stop, tool_calls=self._tools > 0)
        self.finish_reasons.append(reason)
        return [self._chunk({}, reason)]

    def note(self, state: RequestState) -> None:
        """Leave what the stream told so far — usage (OpenAI-shaped), the upstream's
        model, message id and finish reasons — in ``state`` for telemetry and budgets,
        as the OpenAI adapter does: a stream cut short still reports its input tokens."""
        if self._usage:
            state.usage = openai_usage(self._usage)
        if self._id:
            state.response_model = self._model
            state.response_id = self._id
        if self.finish_reasons:
            state.finish_reasons = list(self.finish_reasons)

    def finish(self) -> None:
        """Raise if the stream ended before ``message_stop`` (a truncated answer)."""
        if not self.finished:
            raise malformed(
                self._deployment, "the upstream stream ended before message_stop (truncated)"
            )
