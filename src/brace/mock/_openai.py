"""OpenAI-compatible endpoints: chat completions (JSON and SSE), embeddings, models."""

from __future__ import annotations

import base64
import hashlib
import math
from array import array
from typing import Any, Final

import orjson

from brace.mock._agent import BadAgentHeader, request_agent
from brace.mock._core import Admitted, Core, MockRequest, Outcome
from brace.mock._dialects import JSON, OpenAIDialect
from brace.mock._openai_tools import tool_calls, tool_groups, tool_message
from brace.mock._schema import generate_from_schema
from brace.mock._text import estimate_tokens, fit_reply, openai_prompt_text, reply_text, split_even
from brace.mock._wire import PartialBody, Reply, SseStream

__all__ = ["OpenAIRoutes"]

SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE: Final = b"data: [DONE]\n\n"
_BROKEN: Final = (
    b'data: {"id":"chatcmpl-broken","object":"chat.completion.chunk","choices":[{"d\n\n'
)


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _structured(body: dict[str, Any], text: str) -> str | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return orjson.dumps({"reply": text}).decode()
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return orjson.dumps(generate_from_schema(schema or {"type": "object"})).decode()
    return None


def embedding_vector(text: str, dim: int) -> list[float]:
    """A unit vector derived from the SHA-3 (SHAKE-256) hash of ``text``."""
    raw = array("h", hashlib.shake_256(text.encode()).digest(2 * dim))
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


class OpenAIRoutes:
    """Handlers for the OpenAI wire format; each returns a Reply or a Streamer."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self.dialect = OpenAIDialect()

    async def chat(self, request: MockRequest) -> Outcome:
        core, dialect = self._core, self.dialect
        core.stats.request("/v1/chat/completions")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return dialect.bad_request("We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return dialect.bad_request("The request body must be a JSON object.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return dialect.bad_request("'messages' is a required non-empty array.", "messages")
        settings = core.live.current()
        try:
            agent = request_agent(settings.agent, request.headers)
        except BadAgentHeader as exc:
            return dialect.bad_request(str(exc), exc.header)
        chars, last_user = openai_prompt_text(messages)
        prompt_tokens = estimate_tokens(chars)
        max_tokens = _max_tokens(body)
        cost = prompt_tokens + (settings.default_max_tokens if max_tokens is None else max_tokens)
        gate = await core.admit(request, settings, cost, dialect)
        if not isinstance(gate, Admitted):
            return gate
        model = body.get("model")
        model = model if isinstance(model, str) else settings.config.models[0]
        ident = "chatcmpl-" + core.new_id()
        created = int(core.wall())
        stream = body.get("stream") is True
        calls = tool_calls(
            body,
            messages,
            agent,
            settings.config.seed,
            # the one call of the plain mock: its id is the response's when streamed
            (lambda: "call_" + ident.removeprefix("chatcmpl-"))
            if stream
            else (lambda: "call_" + core.new_id()),
        )
        if calls is not None:
            completion_tokens = estimate_tokens(sum(len(c.name) + len(c.arguments) for c in calls))
            text, finish = "", "tool_calls"
        else:
            base = reply_text(last_user, settings.reply_tokens)
            structured = _structured(body, base)
            text, cut = fit_reply(structured if structured is not None else base, max_tokens)
            finish = "length" if cut else "stop"
            completion_tokens = estimate_tokens(len(text))
        core.stats.tokens_in += prompt_tokens
        core.stats.tokens_out += completion_tokens
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if stream:
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            head = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,' % (
                ident.encode(),
                created,
                orjson.dumps(model),
            )
            if calls is not None:
                groups = tool_groups(head, settings.chunks, calls)
            else:
                groups = _text_groups(head, settings.chunks, text)
            tail = (
                head
                + b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"%s"}]}\n\n'
                % (finish.encode())
            )
            if with_usage:
                tail += head + b'"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"
            groups[-1] += tail + _DONE
            core.stats.streams_started += 1
            return SseStream(
                {**SSE_HEADERS, **gate.headers},
                groups,
                core.chunk_delays(settings, len(groups)),
                gate.fault,
                _BROKEN,
                settings.stall_seconds,
                core.is_stopping,
                core.stream_completed,
            )
        if calls is not None:
            message = tool_message(calls)
        else:
            message = {"role": "assistant", "content": text, "refusal": None}
        payload = orjson.dumps(
            {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": usage,
                "system_fingerprint": "fp_brace_mock",
            }
        )
        return self._json(gate, payload)

    def _json(self, gate: Admitted, payload: bytes) -> Outcome:
        headers = {"Content-Type": JSON, **gate.headers}
        fault = gate.fault
        if fault is None:
            return Reply(200, headers, payload)
        if fault == "malformed":
            return Reply(200, headers, payload[: len(payload) // 2])
        core = self._core
        return PartialBody(headers, payload, fault, gate.settings.stall_seconds, core.is_stopping)

    async def embeddings(self, request: MockRequest) -> Outcome:
        core, dialect = self._core, self.dialect
        core.stats.request("/v1/embeddings")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return dialect.bad_request("We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return dialect.bad_request("The request body must be a JSON object.")
        raw = body.get("input")
        texts: list[str] = []
        tokens = 0
        if isinstance(raw, str):
            raw = [raw]
        if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            raw = [raw]  # one pre-tokenized input
        if not isinstance(raw, list) or not raw:
            return dialect.bad_request("'input' must be a string or a non-empty array.", "input")
        for item in raw:
            if isinstance(item, str):
                texts.append(item)
                tokens += estimate_tokens(len(item))
            elif isinstance(item, list):
                texts.append(",".join(str(x) for x in item))
                tokens += max(1, len(item))
            else:
                return dialect.bad_request(
                    "'input' items must be strings or token arrays.", "input"
                )
        settings = core.live.current()
        gate = await core.admit(request, settings, tokens, dialect)
        if not isinstance(gate, Admitted):
            return gate
        dims = body.get("dimensions")
        dim = dims if isinstance(dims, int) and dims > 0 else settings.embedding_dim
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vector = embedding_vector(text, dim)
            embedding: Any = (
                base64.b64encode(array("f", vector).tobytes()).decode() if as_base64 else vector
            )
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        model = body.get("model")
        core.stats.tokens_in += tokens
        payload = orjson.dumps(
            {
                "object": "list",
                "data": data,
                "model": model if isinstance(model, str) else settings.config.models[0],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
        return self._json(gate, payload)

    async def models(self, request: MockRequest) -> Outcome:
        return Reply(200, {"Content-Type": JSON}, self._core.live.current().models_body)


def _text_groups(head: bytes, chunks: int, text: str) -> list[bytes]:
    prefix = head + b'"choices":[{"index":0,"delta":{"content":'
    suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'
    first = head + (
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
        b'"logprobs":null,"finish_reason":null}]}\n\n'
    )
    groups = [prefix + orjson.dumps(piece) + suffix for piece in split_even(text, chunks)]
    groups[0] = first + groups[0]
    return groups
