"""Stream translation: recorded Messages API SSE streams in, OpenAI chunks out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from brace.errors import MalformedResponse, Overloaded, RateLimited, ServerError
from brace.providers._sse import SSEDecoder
from brace.providers.anthropic import JSON_TOOL_NAME, StreamTranslator


def sse(*events: dict[str, Any]) -> bytes:
    """A recorded stream in Anthropic's wire format (``event:`` line + ``data:`` line)."""
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def message_start(**usage: int) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_stream1",
            "type": "message",
            "role": "assistant",
            "model": "claude-real-1",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage or {"input_tokens": 25, "output_tokens": 1},
        },
    }


def text_start(index: int) -> dict[str, Any]:
    return {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "text", "text": ""},
    }


def text_delta(index: int, text: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }


def tool_start(index: int, tool_id: str, name: str) -> dict[str, Any]:
    return {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
    }


def json_delta(index: int, partial: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial},
    }


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop: str, output: int = 15) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": output},
    }


PING = {"type": "ping"}
STOP = {"type": "message_stop"}

TEXT_STREAM = sse(
    message_start(),
    text_start(0),
    PING,
    text_delta(0, "Hello"),
    text_delta(0, ", world"),
    block_stop(0),
    message_delta("end_turn"),
    STOP,
)

TOOL_STREAM = sse(
    message_start(),
    text_start(0),
    text_delta(0, "Checking."),
    block_stop(0),
    tool_start(1, "toolu_a", "get_weather"),
    json_delta(1, ""),
    json_delta(1, '{"ci'),
    json_delta(1, 'ty": "Pa'),
    json_delta(1, 'ris"}'),
    block_stop(1),
    tool_start(2, "toolu_b", "get_time"),
    json_delta(2, '{"tz": '),
    json_delta(2, '"CET"}'),
    block_stop(2),
    message_delta("tool_use", 40),
    STOP,
)


def run(
    raw: bytes,
    *,
    include_usage: bool = False,
    json_mode: bool = False,
    piece: int = 7,
    translator: StreamTranslator | None = None,
) -> list[dict[str, Any]]:
    """Feed ``raw`` in small network pieces, as iter_sse would, and parse the chunks."""
    t = translator or StreamTranslator(
        created=1700000000,
        model="claude-cfg",
        include_usage=include_usage,
        json_mode=json_mode,
        deployment="anthropic/claude",
    )
    decoder = SSEDecoder()
    chunks: list[dict[str, Any]] = []
    for i in range(0, len(raw), piece):
        for name, data in decoder.feed(raw[i : i + piece]):
            chunks.extend(orjson.loads(c) for c in t.feed(name, data))
    t.finish()
    return chunks


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def test_text_stream() -> None:
    chunks = run(TEXT_STREAM)
    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": ", world"},
        {},
    ]
    for c in chunks:
        assert c["id"] == "msg_stream1"
        assert c["object"] == "chat.completion.chunk"
        assert c["created"] == 1700000000
        assert c["model"] == "claude-real-1"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert chunks[0]["choices"][0]["index"] == 0


def test_usage_chunk_only_when_asked() -> None:
    assert all(c["choices"] for c in run(TEXT_STREAM))
    last = run(TEXT_STREAM, include_usage=True)[-1]
    assert last["choices"] == []
    assert last["id"] == "msg_stream1"
    assert last["usage"] == {
        "prompt_tokens": 25,
        "completion_tokens": 15,
        "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_usage_with_cache_tokens_from_message_start() -> None:
    raw = sse(
        message_start(input_tokens=3, cache_read_input_tokens=50, cache_creation_input_tokens=7),
        text_start(0),
        text_delta(0, "x"),
        message_delta("max_tokens", 9),
        STOP,
    )
    chunks = run(raw, include_usage=True)
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["prompt_tokens"] == 60
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 50}
    assert chunks[-1]["usage"]["total_tokens"] == 69


def test_tool_use_stream() -> None:
    chunks = run(TOOL_STREAM, piece=3)
    got = deltas(chunks)
    assert got[1] == {"content": "Checking."}
    assert got[2] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "toolu_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    }
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    # Reassemble as an OpenAI client does: by tool call index (not content block index).
    calls: dict[int, dict[str, str]] = {}
    for d in got:
        for tc in d.get("tool_calls", []):
            slot = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
            slot["id"] += tc.get("id") or ""
            slot["name"] += tc.get("function", {}).get("name") or ""
            slot["arguments"] += tc["function"].get("arguments", "")
    assert sorted(calls) == [0, 1]
    assert calls[0]["id"] == "toolu_a"
    assert orjson.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert calls[1]["name"] == "get_time"
    assert orjson.loads(calls[1]["arguments"]) == {"tz": "CET"}


def test_json_mode_stream_becomes_content() -> None:
    raw = sse(
        message_start(),
        tool_start(0, "toolu_j", JSON_TOOL_NAME),
        json_delta(0, '{"ans'),
        json_delta(0, 'wer": 4}'),
        block_stop(0),
        message_delta("tool_use"),
        STOP,
    )
    chunks = run(raw, json_mode=True)
    got = deltas(chunks)
    assert all("tool_calls" not in d for d in got)
    text = "".join(d.get("content", "") for d in got)
    assert orjson.loads(text) == {"answer": 4}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_thinking_blocks_are_skipped() -> None:
    raw = sse(
        message_start(),
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "hm"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "s"},
        },
        block_stop(0),
        text_start(1),
        text_delta(1, "ok"),
        message_delta("end_turn"),
        STOP,
        {"type": "some_future_event"},
    )
    assert deltas(run(raw)) == [{"role": "assistant", "content": ""}, {"content": "ok"}, {}]


@pytest.mark.parametrize(
    ("error_type", "expected", "status"),
    [
        ("overloaded_error", Overloaded, 529),
        ("rate_limit_error", RateLimited, 429),
        ("api_error", ServerError, 500),
    ],
)
def test_error_event_raises_the_classified_failure(
    error_type: str, expected: type[Exception], status: int
) -> None:
    raw = sse(
        message_start(),
        text_start(0),
        text_delta(0, "Hel"),
        {"type": "error", "error": {"type": error_type, "message": "Overloaded"}},
    )
    with pytest.raises(expected) as info:
        run(raw)
    err = info.value
    assert getattr(err, "upstream_status", None) == status
    assert getattr(err, "deployment", None) == "anthropic/claude"


def test_truncated_stream_is_malformed() -> None:
    raw = sse(message_start(), text_start(0), text_delta(0, "Hel"), message_delta("end_turn"))
    with pytest.raises(MalformedResponse, match="truncated"):
        run(raw)


def test_empty_stream_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        run(b"")


@pytest.mark.parametrize(
    "raw",
    [
        b"event: message_start\ndata: not json\n\n",
        sse(text_start(0)),
        sse(message_start(), json_delta(3, '{"a":')),
        sse({"type": "message_start", "message": {"content": []}}),
    ],
)
def test_protocol_violations_are_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedResponse):
        run(raw)


def test_events_after_message_stop_are_ignored() -> None:
    t = StreamTranslator(created=1, model="m", include_usage=False, json_mode=False, deployment="d")
    run(TEXT_STREAM, translator=t)
    assert t.finished
    assert t.feed(b"content_block_delta", orjson.dumps(text_delta(0, "late"))) == []


def test_model_falls_back_to_the_deployment_model() -> None:
    start = message_start()
    del start["message"]["model"]
    chunks = run(sse(start, message_delta("end_turn"), STOP))
    assert {c["model"] for c in chunks} == {"claude-cfg"}


def test_chunk_escaping_is_valid_json() -> None:
    start = message_start()
    start["message"]["id"] = 'msg_"quoted"\\'
    chunks = run(
        sse(start, text_start(0), text_delta(0, 'a "b"\n\u00e9'), message_delta("end_turn"), STOP)
    )
    assert chunks[1]["choices"][0]["delta"] == {"content": 'a "b"\n\u00e9'}
    assert chunks[0]["id"] == 'msg_"quoted"\\'
