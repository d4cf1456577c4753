"""The Anthropic Messages API adapter, translating OpenAI chat completions both ways.

Callers speak OpenAI's chat-completions format; this adapter rewrites each body
into a ``POST /v1/messages`` request and each answer (JSON or SSE stream) back into
OpenAI's ``chat.completion`` / ``chat.completion.chunk`` shape.  The translation is
plain functions over plain dicts, testable without HTTP:

* :func:`to_anthropic` — an OpenAI request body to a Messages API body;
* :func:`to_openai` — a Messages API answer to an OpenAI ``chat.completion``;
* :class:`StreamTranslator` — Messages API stream events to OpenAI chunks.

What is translated, dropped and defaulted is documented in
``docs/providers-anthropic.md``.  A request that cannot be translated raises
:class:`~brace.errors.BadRequest` (the caller's to fix) before any network call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import aiohttp
import orjson

from ..config import Deployment
from ..errors import BadRequest, MalformedResponse, UpstreamBadRequest
from ..stack import Request, RequestState, Response, StreamResponse, sse_frame
from ._classify import classify_failure
from ._transport import USER_AGENT, client_timeout, iter_sse, post, read_body

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "DROPPED_FIELDS",
    "JSON_TOOL_NAME",
    "AnthropicProvider",
    "StreamTranslator",
    "finish_reason",
    "to_anthropic",
    "to_openai",
]

ANTHROPIC_VERSION: Final = "2023-06-01"
DEFAULT_MAX_TOKENS: Final = 4096
"""Sent as ``max_tokens`` when the caller gives neither ``max_tokens`` nor
``max_completion_tokens`` (the Messages API requires it)."""
JSON_TOOL_NAME: Final = "json_response"
"""The forced tool that emulates ``response_format`` (the Messages API has none)."""

DROPPED_FIELDS: Final = frozenset(
    {
        "audio",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "metadata",
        "modalities",
        "prediction",
        "presence_penalty",
        "reasoning_effort",
        "seed",
        "service_tier",
        "store",
        "top_logprobs",
        "web_search_options",
    }
)
"""OpenAI-only request fields the Messages API has no equivalent for: not sent.
(Any other unknown field is not sent either; these are the documented ones.)"""

_STOP_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STREAM_ERROR_STATUS: Final[dict[str, int]] = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
}
_TOOL_CHOICES: Final[dict[str, str]] = {"auto": "auto", "none": "none", "required": "any"}
_EMPTY_SCHEMA: Final[dict[str, Any]] = {"type": "object", "properties": {}}


# ----------------------------------------------------------------------------- request


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, param=param)


def _image_block(url: Any, param: str) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise _bad("image_url.url must be a non-empty string (an http(s) or data: URL)", param)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise _bad(
                "image data URLs must look like data:image/png;base64,<data> "
                "(Anthropic accepts base64 images only)",
                param,
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad("image_url.url must be an http(s) URL or a base64 data: URL", param)


def _file_block(file: Any, param: str) -> dict[str, Any]:
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str) or not data.startswith("data:"):
        raise _bad(
            "file parts must carry file_data as a base64 data: URL "
            "(file_id is not supported by the Anthropic adapter)",
            param,
        )
    header, sep, payload = data[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise _bad("file_data must look like data:application/pdf;base64,<data>", param)
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": payload},
    }


def _content_blocks(content: Any, param: str, *, images: bool) -> list[dict[str, Any]]:
    """OpenAI message content (a string or a list of parts) as Anthropic blocks.

    Empty text is skipped: the Messages API rejects empty text blocks.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad("content must be a string or a list of content parts", param)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        ptype = part.get("type") if isinstance(part, dict) else None
        block: dict[str, Any]
        if ptype == "text" or ptype == "refusal":
            text = part.get(ptype)
            if not isinstance(text, str):
                raise _bad(f"a {ptype} part needs a string '{ptype}' field", where)
            if not text:
                continue
            block = {"type": "text", "text": text}
        elif ptype == "image_url" and images:
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            block = _image_block(url, f"{where}.image_url.url")
        elif ptype == "file" and images:
            block = _file_block(part.get("file"), f"{where}.file")
        else:
            raise _bad(
                f"content part type {ptype!r} is not supported here by the Anthropic adapter "
                "(use text" + (", image_url or file)" if images else ")"),
                where,
            )
        cache = part.get("cache_control")
        if cache is not None:
            block["cache_control"] = cache
        blocks.append(block)
    return blocks


def _tool_use_blocks(calls: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise _bad("tool_calls must be a list", param)
    blocks: list[dict[str, Any]] = []
    for j, call in enumerate(calls):
        where = f"{param}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or call.get("type", "function") != "function":
            raise _bad("each tool call must be {'id', 'type': 'function', 'function'}", where)
        call_id, name = call.get("id"), fn.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise _bad("the tool call has no id", f"{where}.id")
        if not isinstance(name, str) or not name:
            raise _bad("the tool call has no function name", f"{where}.function.name")
        args = fn.get("arguments")
        parsed: Any
        if isinstance(args, dict):
            parsed = args
        elif args is None or (isinstance(args, str) and not args.strip()):
            parsed = {}
        else:
            try:
                parsed = orjson.loads(args) if isinstance(args, str) else None
            except orjson.JSONDecodeError:
                parsed = None
        if not isinstance(parsed, dict):
            raise _bad(
                f"the arguments of tool call {call_id!r} are not a JSON object; the Anthropic "
                "API needs tool inputs as objects, so send function.arguments as a JSON "
                'object string such as {"city": "Paris"}',
                f"{where}.function.arguments",
            )
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": parsed})
    return blocks


def _tool_result_block(msg: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad("a tool message needs the tool_call_id it answers", f"{param}.tool_call_id")
    content = msg.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    else:
        block["content"] = _content_blocks(content, f"{param}.content", images=False)
    return block


def _messages(
    messages: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating Anthropic messages)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", "messages")
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad("each message must be an object with a role", where)
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_content_blocks(msg.get("content"), f"{where}.content", images=False))
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"), f"{where}.content", images=True)
        elif role == "assistant":
            blocks = _content_blocks(msg.get("content"), f"{where}.content", images=False)
            calls = msg.get("tool_calls")
            if calls:
                blocks.extend(_tool_use_blocks(calls, f"{where}.tool_calls"))
        elif role == "tool":
            role = "user"
            blocks = [_tool_result_block(msg, where)]
        elif role == "function":
            raise _bad(
                "role 'function' (the legacy functions API) is not supported; "
                "use tools and role 'tool'",
                f"{where}.role",
            )
        else:
            raise _bad(
                f"unknown role {role!r}; expected system, developer, user, assistant or tool",
                f"{where}.role",
            )
        if not blocks:
            continue  # the Messages API rejects empty messages
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)  # the Messages API needs alternation
        else:
            out.append({"role": role, "content": blocks})
    if not out:
        raise _bad(
            "messages has no user or assistant content (the Anthropic API needs at least one)",
            "messages",
        )
    return system, out


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools must be a list", "tools")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or tool.get("type", "function") != "function":
            raise _bad(
                "only function tools ({'type': 'function', 'function': {...}}) can be "
                "translated for the Anthropic API",
                f"tools[{i}]",
            )
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("the tool has no function name", f"tools[{i}].function.name")
        if name == JSON_TOOL_NAME:
            raise _bad(
                f"the tool name {JSON_TOOL_NAME!r} is reserved by Brace's Anthropic adapter "
                "(it emulates response_format); rename the tool",
                f"tools[{i}].function.name",
            )
        schema = fn.get("parameters")
        entry: dict[str, Any] = {"name": name, "input_schema": schema or _EMPTY_SCHEMA}
        description = fn.get("description")
        if description:
            entry["description"] = description
        out.append(entry)
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return {"type": _TOOL_CHOICES[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise _bad(
        "tool_choice must be 'auto', 'none', 'required' or "
        "{'type': 'function', 'function': {'name': ...}}",
        "tool_choice",
    )


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    """The forced tool emulating ``response_format``, or None for plain text."""
    if response_format is None:
        return None
    rtype = response_format.get("type") if isinstance(response_format, dict) else None
    if rtype == "text":
        return None
    if rtype == "json_object":
        return {
            "name": JSON_TOOL_NAME,
            "description": "Respond with your answer as a JSON object.",
            "input_schema": {"type": "object"},
        }
    if rtype == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise _bad("response_format.json_schema must be an object", "response_format")
        schema = spec.get("schema") or {"type": "object"}
        if not isinstance(schema, dict):
            raise _bad("json_schema.schema must be a JSON Schema object", "response_format")
        description = "Respond with your answer as JSON matching this schema"
        if isinstance(spec.get("name"), str):
            description += f" ({spec['name']})"
        if isinstance(spec.get("description"), str):
            description += f": {spec['description']}"
        return {"name": JSON_TOOL_NAME, "description": description, "input_schema": schema}
    raise _bad(
        "response_format.type must be 'text', 'json_object' or 'json_schema'", "response_format"
    )


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"{key} must be a positive integer", key)
        return value
    return DEFAULT_MAX_TOKENS


def to_anthropic(body: dict[str, Any], *, model: str, stream: bool) -> tuple[dict[str, Any], bool]:
    """An OpenAI chat-completions body as a Messages API body.

    Returns ``(anthropic_body, json_mode)``; ``json_mode`` says that
    ``response_format`` is emulated with the :data:`JSON_TOOL_NAME` tool, whose
    input must be turned back into message content.  Raises
    :class:`~brace.errors.BadRequest` for what cannot be translated.
    """
    n = body.get("n")
    if n is not None and n != 1:
        raise _bad("n > 1 is not supported by the Anthropic API; send n: 1 (or omit it)", "n")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise _bad(
            "the legacy functions/function_call fields are not supported; use tools/tool_choice",
            "functions",
        )
    system, messages = _messages(body.get("messages"))
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": _max_tokens(body),
    }
    if system:
        if any("cache_control" in b for b in system):
            out["system"] = system
        else:
            out["system"] = "\n\n".join(b["text"] for b in system)
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list):
        if stop:
            out["stop_sequences"] = stop
    elif stop is not None:
        raise _bad("stop must be a string or a list of strings", "stop")
    if stream:
        out["stream"] = True
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}

    tools = _tools(body["tools"]) if body.get("tools") else []
    json_tool = _json_tool(body.get("response_format"))
    choice_in = body.get("tool_choice")
    choice: dict[str, Any] | None = None
    if json_tool is not None:
        caller = _tool_choice(choice_in) if (tools and choice_in is not None) else None
        if caller is not None and caller["type"] == "tool":
            choice = caller  # the caller forces one of its own tools
        elif tools and (caller is None or caller["type"] != "none"):
            choice = {"type": "any"}  # call a tool of the caller's, or answer as JSON
        else:
            choice = {"type": "tool", "name": JSON_TOOL_NAME}
        tools.append(json_tool)
    elif tools and choice_in is not None:
        choice = _tool_choice(choice_in)
    if tools:
        out["tools"] = tools
        if body.get("parallel_tool_calls") is False:
            choice = choice or {"type": "auto"}
            if choice["type"] != "none":
                choice["disable_parallel_tool_use"] = True
        if choice is not None:
            out["tool_choice"] = choice
    return out, json_tool is not None


# ----------------------------------------------------------------------------- response


def finish_reason(stop_reason: Any, *, tool_calls: bool) -> str:
    """An Anthropic ``stop_reason`` as an OpenAI ``finish_reason``.

    ``tool_use`` becomes ``stop`` when the only tool used was the JSON emulation.
    """
    if stop_reason == "tool_use" and not tool_calls:
        return "stop"
    return _STOP_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) else 0


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    cached = _count(usage, "cache_read_input_tokens")
    prompt = _count(usage, "input_tokens") + cached + _count(usage, "cache_creation_input_tokens")
    completion = _count(usage, "output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _malformed(deployment: str, what: str) -> MalformedResponse:
    return MalformedResponse(f"deployment {deployment}: {what}", deployment=deployment)


def to_openai(
    msg: Any,
    *,
    created: int,
    json_mode: bool = False,
    model: str | None = None,
    deployment: str = "anthropic",
) -> dict[str, Any]:
    """A Messages API answer as an OpenAI ``chat.completion`` (raises
    :class:`~brace.errors.MalformedResponse` if ``msg`` is not a message)."""
    content = msg.get("content") if isinstance(msg, dict) else None
    if not isinstance(content, list) or not isinstance(msg.get("id"), str):
        raise _malformed(
            deployment, "the upstream answered 200 with a body that is not an Anthropic message"
        )
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    json_text: str | None = None
    for block in content:
        btype = block.get("type") if isinstance(block, dict) else None
        if btype == "text":
            texts.append(str(block.get("text") or ""))
        elif btype == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            if json_mode and block.get("name") == JSON_TOOL_NAME:
                json_text = args
                continue
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": args},
                }
            )
        # thinking, redacted_thinking and server-tool blocks have no OpenAI equivalent
    text = json_text if json_text is not None else "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if (text or not calls) else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    usage = msg.get("usage")
    return {
        "id": msg["id"],
        "object": "chat.completion",
        "created": created,
        "model": msg.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(msg.get("stop_reason"), tool_calls=bool(calls)),
            }
        ],
        "usage": _usage(usage if isinstance(usage, dict) else {}),
    }


# ----------------------------------------------------------------------------- stream


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
            raise _malformed(self._deployment, "the upstream sent a stream event that is not JSON")
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
            raise _malformed(
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
                "usage": _usage(self._usage),
            }
            return [orjson.dumps(chunk)]
        return []  # content_block_stop and event types added later

    def _start(self, event: dict[str, Any]) -> list[bytes]:
        msg = event.get("message")
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), str):
            raise _malformed(self._deployment, "message_start carries no message")
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
            raise _malformed(self._deployment, "content_block_start without a block or index")
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
            raise _malformed(self._deployment, "content_block_delta without a delta")
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
            raise _malformed(self._deployment, "input_json_delta for a block that is no tool_use")
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
            state.usage = _usage(self._usage)
        if self._id:
            state.response_model = self._model
            state.response_id = self._id
        if self.finish_reasons:
            state.finish_reasons = list(self.finish_reasons)

    def finish(self) -> None:
        """Raise if the stream ended before ``message_stop`` (a truncated answer)."""
        if not self.finished:
            raise _malformed(
                self._deployment, "the upstream stream ended before message_stop (truncated)"
            )


# ----------------------------------------------------------------------------- provider


class AnthropicProvider:
    """The innermost handler for one Anthropic Messages API deployment."""

    __slots__ = ("_headers", "_model", "_session", "_timeout", "_url", "deployment", "id")

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.id = deployment.id
        self._session = session
        self._model = deployment.model
        self._timeout = client_timeout(deployment.timeouts)
        self._url = f"{deployment.url}/v1/messages"
        headers = {
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            "user-agent": USER_AGENT,
        }
        if deployment.api_key is not None:
            headers["x-api-key"] = deployment.api_key.get_secret_value()
        headers.update(deployment.headers)
        self._headers = headers

    def __repr__(self) -> str:  # never shows the headers (they hold the key)
        return f"AnthropicProvider({self.id!r})"

    async def __call__(self, req: Request) -> Response | StreamResponse:
        if req.operation != "chat":
            raise UpstreamBadRequest(
                f"deployment {self.id}: the Anthropic API has no {req.operation} endpoint; "
                f"route {req.operation} requests to a model group served by another provider",
                deployment=self.id,
                code="unsupported_operation",
                status=400,
            )
        body, json_mode = to_anthropic(req.body, model=self._model, stream=req.stream)
        resp = await post(
            self._session,
            self._url,
            orjson.dumps(body),
            self._headers,
            self._timeout,
            deployment=self.id,
        )
        created = int(time.time())
        if req.stream:
            options = req.body.get("stream_options")
            translator = StreamTranslator(
                created=created,
                model=self._model,
                include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
                json_mode=json_mode,
                deployment=self.id,
            )
            return StreamResponse(
                self._relay(resp, translator, req.state),
                close=_closer(resp),
                upstream=resp.headers,
            )
        raw = await read_body(resp, deployment=self.id)
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        out = to_openai(
            parsed, created=created, json_mode=json_mode, model=self._model, deployment=self.id
        )
        return Response(orjson.dumps(out), _parsed=out, upstream=resp.headers)

    async def _relay(
        self, resp: aiohttp.ClientResponse, translator: StreamTranslator, state: RequestState
    ) -> AsyncIterator[bytes]:
        try:
            async for events in iter_sse(resp, deployment=self.id):
                payloads: list[bytes] = []
                for name, data in events:
                    payloads.extend(translator.feed(name, data))
                if payloads:
                    translator.note(state)  # before the caller sees it: a cut stream counts
                    yield sse_frame(payloads)
                if translator.finished:
                    break
            translator.finish()
        finally:
            translator.note(state)
            if translator.finished:
                resp.release()
            else:
                resp.close()


def _closer(resp: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        # Dropping the connection is what cancels the upstream generation.
        resp.close()

    return close
