"""The Anthropic adapter's pure translations: OpenAI request → Messages API, and back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from brace.errors import BadRequest, MalformedResponse
from brace.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    JSON_TOOL_NAME,
    finish_reason,
    to_anthropic,
    to_openai,
)


def translate(body: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
    out, _ = to_anthropic(body, model="claude-x", stream=stream)
    return out


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# ----------------------------------------------------------------------------- request


def test_minimal_request_defaults() -> None:
    out, json_mode = to_anthropic({"messages": [user("hi")]}, model="claude-x", stream=False)
    assert out == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }
    assert json_mode is False


def test_caller_model_is_replaced_by_the_deployment_model() -> None:
    assert translate({"model": "gpt-4o", "messages": [user("hi")]})["model"] == "claude-x"


def test_system_and_developer_messages_are_joined_into_system() -> None:
    out = translate(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                user("hi"),
                {"role": "system", "content": "Late rule."},
            ]
        }
    )
    assert out["system"] == "Be brief.\n\nUse French.\n\nLate rule."
    assert [m["role"] for m in out["messages"]] == ["user"]


def test_system_with_cache_control_stays_blocks() -> None:
    cached = {"type": "text", "text": "Long doc", "cache_control": {"type": "ephemeral"}}
    out = translate({"messages": [{"role": "system", "content": [cached]}, user("q")]})
    assert out["system"] == [cached]


def test_consecutive_same_role_messages_are_merged() -> None:
    out = translate(
        {
            "messages": [
                user("a"),
                user("b"),
                {"role": "system", "content": "s"},
                user("c"),
                {"role": "assistant", "content": "x"},
                {"role": "assistant", "content": "y"},
            ]
        }
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a"},
                {"type": "text", "text": "b"},
                {"type": "text", "text": "c"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}],
        },
    ]


def test_empty_messages_are_skipped() -> None:
    out = translate({"messages": [user("a"), {"role": "assistant", "content": ""}, user("b")]})
    assert len(out["messages"]) == 1
    assert len(out["messages"][0]["content"]) == 2


def test_images_data_and_http_urls() -> None:
    out = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0K"},
                        },
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                        },
                    ],
                }
            ]
        }
    )
    assert out["messages"][0]["content"][1:] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize("url", ["data:image/png,rawnotbase64", "ftp://x/y.png", ""])
def test_bad_image_urls_are_rejected(url: str) -> None:
    part = {"type": "image_url", "image_url": {"url": url}}
    with pytest.raises(BadRequest) as info:
        translate({"messages": [{"role": "user", "content": [part]}]})
    assert info.value.param == "messages[0].content[0].image_url.url"
    assert info.value.http_status == 400


def test_pdf_file_part_becomes_a_document() -> None:
    part = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER"}}
    out = translate({"messages": [{"role": "user", "content": [part]}]})
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
        }
    ]


def test_unsupported_part_type_names_the_part() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}
    with pytest.raises(BadRequest) as info:
        translate({"messages": [user("a"), {"role": "user", "content": ["oops", part]}]})
    assert info.value.param == "messages[1].content[0]"


CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a weather bot."},
    user("Weather in Paris and Rome?"),
    {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "25C"}]},
    user("Thanks, and which is warmer?"),
]


def test_tool_calls_and_tool_results() -> None:
    out = translate({"messages": CONVERSATION})
    assert out["system"] == "You are a weather bot."
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "25C"}],
                },
                {"type": "text", "text": "Thanks, and which is warmer?"},
            ],
        },
    ]


def test_tool_call_round_trip_through_the_response() -> None:
    """A tool_use answer, translated to OpenAI and sent back, gives the same tool_use."""
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_9",
                "name": "lookup",
                "input": {"q": "x", "n": [1, 2]},
            }
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 7},
    }
    message = to_openai(answer, created=1)["choices"][0]["message"]
    back = translate(
        {
            "messages": [
                user("go"),
                message,
                {"role": "tool", "tool_call_id": "toolu_9", "content": "found"},
            ]
        }
    )
    assert back["messages"][1] == {"role": "assistant", "content": answer["content"]}
    assert back["messages"][2]["content"][0]["tool_use_id"] == "toolu_9"


def test_empty_tool_arguments_mean_no_input() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "now", "arguments": ""}}
    out = translate(
        {"messages": [user("t?"), {"role": "assistant", "content": None, "tool_calls": [call]}]}
    )
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c", "name": "now", "input": {}}
    ]


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]", '"str"'])
def test_bad_tool_arguments_name_the_message(arguments: str) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = {
        "messages": [
            user("a"),
            user("b"),
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ]
    }
    with pytest.raises(BadRequest) as info:
        translate(body)
    assert info.value.http_status == 400
    assert info.value.param == "messages[2].tool_calls[0].function.arguments"
    assert "JSON object" in info.value.message
    assert "c1" in info.value.message


def test_tool_message_needs_tool_call_id() -> None:
    with pytest.raises(BadRequest) as info:
        translate({"messages": [user("a"), {"role": "tool", "content": "x"}]})
    assert info.value.param == "messages[1].tool_call_id"


@pytest.mark.parametrize("role", ["function", "robot", None])
def test_unknown_roles_are_rejected(role: Any) -> None:
    with pytest.raises(BadRequest) as info:
        translate({"messages": [{"role": role, "content": "x"}]})
    assert info.value.param == "messages[0].role"


@pytest.mark.parametrize("messages", [None, [], "hi", [{"role": "system", "content": "only"}]])
def test_messages_must_have_content(messages: Any) -> None:
    with pytest.raises(BadRequest) as info:
        translate({"messages": messages})
    assert info.value.param == "messages"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


def test_tools_are_translated() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    out = translate({"messages": [user("x")], "tools": [WEATHER_TOOL, bare]})
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in out


def test_non_function_tools_are_rejected() -> None:
    with pytest.raises(BadRequest) as info:
        translate({"messages": [user("x")], "tools": [{"type": "web_search"}]})
    assert info.value.param == "tools[0]"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    out = translate({"messages": [user("x")], "tools": [WEATHER_TOOL], "tool_choice": choice})
    assert out["tool_choice"] == expected


@pytest.mark.parametrize("choice", ["sometimes", {"type": "function"}, 3])
def test_bad_tool_choice(choice: Any) -> None:
    with pytest.raises(BadRequest) as info:
        translate({"messages": [user("x")], "tools": [WEATHER_TOOL], "tool_choice": choice})
    assert info.value.param == "tool_choice"


def test_tool_choice_without_tools_is_dropped() -> None:
    out = translate({"messages": [user("x")], "tool_choice": "none", "parallel_tool_calls": False})
    assert "tool_choice" not in out
    assert "tools" not in out


def test_parallel_tool_calls_false() -> None:
    body = {"messages": [user("x")], "tools": [WEATHER_TOOL], "parallel_tool_calls": False}
    assert translate(body)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    body["tool_choice"] = "required"
    assert translate(body)["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    body["tool_choice"] = "none"
    assert translate(body)["tool_choice"] == {"type": "none"}


def test_sampling_fields_and_stop() -> None:
    out = translate(
        {
            "messages": [user("x")],
            "max_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": "END",
            "user": "u-42",
        },
        stream=True,
    )
    assert out["max_tokens"] == 50
    assert out["temperature"] == 0.2
    assert out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "u-42"}
    assert out["stream"] is True
    assert translate({"messages": [user("x")], "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]


def test_max_completion_tokens_wins() -> None:
    body = {"messages": [user("x")], "max_completion_tokens": 10, "max_tokens": 99}
    assert translate(body)["max_tokens"] == 10


@pytest.mark.parametrize("value", [0, -1, "10", 1.5, True])
def test_bad_max_tokens(value: Any) -> None:
    with pytest.raises(BadRequest) as info:
        translate({"messages": [user("x")], "max_tokens": value})
    assert info.value.param == "max_tokens"


def test_openai_only_fields_are_dropped() -> None:
    out = translate(
        {
            "messages": [user("x")],
            "n": 1,
            "logprobs": True,
            "top_logprobs": 3,
            "seed": 7,
            "frequency_penalty": 0.5,
            "presence_penalty": 0.5,
            "logit_bias": {"1": 2},
            "service_tier": "auto",
            "store": True,
            "metadata": {"k": "v"},
            "stream_options": {"include_usage": True},
            "something_new": 1,
        }
    )
    assert set(out) == {"model", "messages", "max_tokens"}


def test_n_above_one_is_rejected() -> None:
    with pytest.raises(BadRequest) as info:
        translate({"messages": [user("x")], "n": 2})
    assert info.value.param == "n"
    assert "n: 1" in info.value.message


def test_legacy_functions_are_rejected() -> None:
    with pytest.raises(BadRequest, match="use tools"):
        translate({"messages": [user("x")], "functions": [{"name": "f"}]})


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
}


def test_json_schema_is_emulated_with_a_forced_tool() -> None:
    body = {
        "messages": [user("2+2?")],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "sum", "schema": SCHEMA, "strict": True},
        },
    }
    out, json_mode = to_anthropic(body, model="claude-x", stream=False)
    assert json_mode is True
    assert out["tools"] == [
        {
            "name": JSON_TOOL_NAME,
            "description": "Respond with your answer as JSON matching this schema (sum)",
            "input_schema": SCHEMA,
        }
    ]
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}


def test_json_object_is_emulated_too() -> None:
    out, json_mode = to_anthropic(
        {"messages": [user("x")], "response_format": {"type": "json_object"}},
        model="m",
        stream=False,
    )
    assert json_mode
    assert out["tools"][0]["input_schema"] == {"type": "object"}
    _, text_mode = to_anthropic(
        {"messages": [user("x")], "response_format": {"type": "text"}}, model="m", stream=False
    )
    assert not text_mode


def test_json_schema_with_caller_tools() -> None:
    body: dict[str, Any] = {
        "messages": [user("x")],
        "tools": [WEATHER_TOOL],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}},
    }
    out = translate(body)
    assert [t["name"] for t in out["tools"]] == ["get_weather", JSON_TOOL_NAME]
    assert out["tool_choice"] == {"type": "any"}
    body["tool_choice"] = "none"
    assert translate(body)["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}
    body["tool_choice"] = {"type": "function", "function": {"name": "get_weather"}}
    assert translate(body)["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_reserved_tool_name_is_rejected() -> None:
    tool = {"type": "function", "function": {"name": JSON_TOOL_NAME}}
    with pytest.raises(BadRequest, match="reserved"):
        translate({"messages": [user("x")], "tools": [tool]})


def test_bad_response_format() -> None:
    with pytest.raises(BadRequest) as info:
        translate({"messages": [user("x")], "response_format": {"type": "xml"}})
    assert info.value.param == "response_format"


# ----------------------------------------------------------------------------- response


def message(
    content: list[dict[str, Any]], stop: str | None = "end_turn", **usage: int
) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-real-1",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 3},
    }


def test_text_response() -> None:
    out = to_openai(
        message([{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}]),
        created=1700000000,
    )
    assert out == {
        "id": "msg_01",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-real-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "total_tokens": 13,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_tool_use_response() -> None:
    out = to_openai(
        message(
            [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
            stop="tool_use",
        ),
        created=1,
    )
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        }
    ]
    assert orjson.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Oslo"
    }


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_stop_reason_mapping(stop: str | None, expected: str) -> None:
    assert finish_reason(stop, tool_calls=True) == expected


def test_usage_with_cache_tokens() -> None:
    out = to_openai(
        message(
            [{"type": "text", "text": "x"}],
            input_tokens=20,
            cache_read_input_tokens=100,
            cache_creation_input_tokens=30,
            output_tokens=5,
        ),
        created=1,
    )
    assert out["usage"] == {
        "prompt_tokens": 150,
        "completion_tokens": 5,
        "total_tokens": 155,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


def test_json_mode_response_becomes_content() -> None:
    out = to_openai(
        message(
            [{"type": "tool_use", "id": "toolu_j", "name": JSON_TOOL_NAME, "input": {"answer": 4}}],
            stop="tool_use",
        ),
        created=1,
        json_mode=True,
    )
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert orjson.loads(choice["message"]["content"]) == {"answer": 4}


def test_json_tool_name_is_a_real_tool_outside_json_mode() -> None:
    out = to_openai(
        message([{"type": "tool_use", "id": "t", "name": JSON_TOOL_NAME, "input": {}}], "tool_use"),
        created=1,
    )
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_empty_answer_has_empty_string_content() -> None:
    out = to_openai(message([]), created=1)
    assert out["choices"][0]["message"]["content"] == ""


@pytest.mark.parametrize(
    "body",
    [None, [], {"type": "error", "error": {"type": "api_error"}}, {"id": "x", "content": "text"}],
)
def test_malformed_messages(body: Any) -> None:
    with pytest.raises(MalformedResponse) as info:
        to_openai(body, created=1, deployment="anthropic/claude")
    assert info.value.deployment == "anthropic/claude"
