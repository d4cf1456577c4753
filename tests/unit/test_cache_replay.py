"""A stream assembled into one JSON answer, replayed as a stream, and assembled again."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from brace.cache import Assembler, CachedAnswer, assemble, replay
from brace.cache.replay import split_text
from brace.stack import frame_payloads, sse_frame
from brace.testing import ok_response

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "gpt-x"}
USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, index: int = 0
) -> dict[str, Any]:
    return {**HEAD, "choices": [{"index": index, "delta": delta or {}, "finish_reason": finish}]}


def parse(frame: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(p) for p in frame_payloads(frame)]


TEXT_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo, "}),
    chunk({"content": "world"}),
    chunk({}, "stop"),
    {**HEAD, "choices": [], "usage": USAGE},
]

TOOL_STREAM = [
    chunk({"role": "assistant", "content": None}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                }
            ]
        }
    ),
    chunk({}, "tool_calls"),
]


def test_assemble_text_stream() -> None:
    doc = assemble(TEXT_STREAM)
    assert doc == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 7,
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


def test_assemble_tool_calls() -> None:
    doc = assemble(TOOL_STREAM, usage=USAGE)
    assert doc is not None
    msg = doc["choices"][0]["message"]
    assert msg["content"] is None
    assert msg["tool_calls"] == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
        },
    ]
    assert doc["choices"][0]["finish_reason"] == "tool_calls"
    assert doc["usage"] == USAGE  # from the argument: no chunk carried usage


@pytest.mark.parametrize("stream", [TEXT_STREAM, TOOL_STREAM], ids=["text", "tools"])
@pytest.mark.parametrize("include_usage", [False, True])
def test_replay_reassembles_to_the_original(
    stream: list[dict[str, Any]], include_usage: bool
) -> None:
    original = assemble(stream, usage=USAGE)
    assert original is not None
    frame = replay(original, include_usage=include_usage)
    assert frame is not None
    chunks = parse(frame)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-1" for c in chunks)
    again = assemble(chunks, usage=None if include_usage else USAGE)
    assert again == original


def test_usage_chunk_only_when_asked() -> None:
    original = assemble(TEXT_STREAM)
    assert original is not None
    without = parse(replay(original) or b"")
    assert not any("usage" in c for c in without)
    assert without[-1]["choices"][0]["finish_reason"] == "stop"
    with_usage = parse(replay(original, include_usage=True) or b"")
    assert with_usage[-1] == {**HEAD, "choices": [], "usage": USAGE}
    assert sum("usage" in c for c in with_usage) == 1


def test_replay_shape_role_pieces_tool_deltas_finish() -> None:
    long_text = "word " * 40
    doc = orjson.loads(ok_response(long_text).body)
    chunks = parse(replay(doc) or b"")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert 1 < len(pieces) <= 4 and "".join(pieces) == long_text
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }

    tools = assemble(TOOL_STREAM)
    assert tools is not None
    tchunks = parse(replay(tools) or b"")
    firsts = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in tchunks
        if "id" in (c["choices"][0]["delta"].get("tool_calls") or [{}])[0]
    ]
    assert [(f["index"], f["id"], f["function"]["name"]) for f in firsts] == [
        (0, "call_a", "get_weather"),
        (1, "call_b", "get_time"),
    ]


def test_json_answer_replays_as_an_equal_stream() -> None:
    doc = orjson.loads(ok_response("The answer is 42.").body)
    again = assemble(parse(replay(doc, include_usage=True) or b""))
    assert again is not None
    assert again["choices"][0]["message"] == doc["choices"][0]["message"]
    assert again["choices"][0]["finish_reason"] == doc["choices"][0]["finish_reason"]
    assert again["usage"] == doc["usage"]


def test_several_choices_and_reasoning() -> None:
    stream = [
        chunk({"role": "assistant", "reasoning_content": "think"}, index=0),
        chunk({"role": "assistant", "content": "B"}, index=1),
        chunk({"content": "A"}, index=0),
        chunk({}, "stop", index=1),
        chunk({}, "length", index=0),
    ]
    doc = assemble(stream)
    assert doc is not None
    assert [c["message"] for c in doc["choices"]] == [
        {"role": "assistant", "content": "A", "reasoning_content": "think"},
        {"role": "assistant", "content": "B"},
    ]
    assert [c["finish_reason"] for c in doc["choices"]] == ["length", "stop"]
    assert assemble(parse(replay(doc) or b"")) == doc


@pytest.mark.parametrize(
    "stream",
    [
        [chunk({"content": "x"})],  # never finished
        [chunk({"content": "x"}), {"error": {"message": "boom"}}, chunk({}, "stop")],
        [
            {
                **HEAD,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": "x"},
                        "logprobs": {"content": []},
                        "finish_reason": "stop",
                    }
                ],
            }
        ],
        [chunk({"audio": {"data": "AAA"}}, "stop")],
        [],
    ],
    ids=["unfinished", "error", "logprobs", "audio", "empty"],
)
def test_unfaithful_streams_do_not_assemble(stream: list[dict[str, Any]]) -> None:
    assert assemble(stream) is None


def test_unreplayable_answers() -> None:
    doc = orjson.loads(ok_response("x").body)
    doc["choices"][0]["message"]["annotations"] = [{"type": "url_citation"}]
    assert replay(doc) is None
    doc["choices"][0]["message"]["annotations"] = []  # empty extras are fine
    assert replay(doc) is not None
    doc["choices"][0]["finish_reason"] = None
    assert replay(doc) is None
    assert replay({"data": []}) is None


def test_assembler_from_frames_tracks_size() -> None:
    acc = Assembler()
    acc.feed_frames([sse_frame(orjson.dumps(c) for c in TEXT_STREAM[:3])])
    assert acc.size == len("Hello, ")
    acc.feed_frames([sse_frame(orjson.dumps(c) for c in TEXT_STREAM[3:])])
    assert acc.result() == assemble(TEXT_STREAM)
    broken = Assembler()
    broken.feed_frames([b"data: {not json\n\n"])
    assert broken.failed and broken.result() is None


def test_split_text() -> None:
    assert split_text("") == []
    assert split_text("short") == ["short"]
    text = "x" * 100
    parts = split_text(text)
    assert "".join(parts) == text and len(parts) == 4


def test_cached_answer_round_trip() -> None:
    answer = CachedAnswer(b'{\n  "pretty": true\n}', {"prompt_tokens": 1}, 123.5, "dep", "m")
    assert CachedAnswer.decode(answer.encode()) == answer
    with pytest.raises(ValueError):
        CachedAnswer.decode(b"no header")
    with pytest.raises(ValueError):
        CachedAnswer.decode(b"[1]\n{}")
