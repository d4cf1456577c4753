"""The cache key: what changes it, what does not, and tenant isolation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from brace.cache import CacheConfig, CachePolicy, MemoryCache, cache_key, canonical_request
from brace.stack import Request

BASE: dict[str, Any] = {
    "model": "chat",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "!"}],
        },
    ],
    "temperature": 0.2,
    "max_tokens": 50,
}


def key(
    body: dict[str, Any], *, op: str = "chat", group: str = "chat", tenant: str | None = "t1"
) -> str:
    return cache_key(op, group, body, tenant)


def with_(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body.update(changes)
    return body


def test_key_is_sha256_hex() -> None:
    k = key(BASE)
    assert len(k) == 64 and int(k, 16) >= 0
    assert key(copy.deepcopy(BASE)) == k


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.3},
        {"top_p": 0.5},
        {"max_tokens": 51},
        {"max_completion_tokens": 50},
        {"stop": ["\n"]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"seed": 7},
        {"n": 2},
        {"logit_bias": {"50256": -100}},
        {"presence_penalty": 0.5},
        {"frequency_penalty": 0.5},
        {"reasoning_effort": "high"},
        {"parallel_tool_calls": False},
        {"some_future_param": 1},  # unknown parameters are kept (conservative)
        {"messages": [{"role": "user", "content": "hi!"}]},
    ],
)
def test_output_changing_params_change_the_key(change: dict[str, Any]) -> None:
    assert key(with_(**change)) != key(BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "alice"},
        {"metadata": {"trace": "x"}},
        {"store": True},
        {"service_tier": "flex"},
        {"prompt_cache_key": "k"},
        {"model": "another-name-for-the-same-group"},
        {"stop": None},  # null is the same as absent
        {"temperature": None, "top_p": None} | {"temperature": 0.2},
    ],
)
def test_irrelevant_params_keep_the_key(change: dict[str, Any]) -> None:
    assert key(with_(**change)) == key(BASE)


def test_stream_and_json_share_a_key() -> None:
    assert key(with_(stream=True)) == key(with_(stream=False)) == key(BASE)


def test_key_order_does_not_matter() -> None:
    reordered = {
        "max_tokens": 50,
        "temperature": 0.2,
        "messages": [
            {"content": "Be brief.", "role": "system"},
            {
                "content": [{"text": "hi", "type": "text"}, {"text": "!", "type": "text"}],
                "role": "user",
            },
        ],
        "model": "chat",
    }
    assert key(reordered) == key(BASE)
    tools_a = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
            },
        }
    ]
    tools_b = [
        {
            "function": {
                "parameters": {"properties": {"a": {"type": "string"}}, "type": "object"},
                "name": "f",
            },
            "type": "function",
        }
    ]
    assert key(with_(tools=tools_a)) == key(with_(tools=tools_b))


def test_content_part_order_matters() -> None:
    swapped = with_()
    swapped["messages"][1]["content"].reverse()
    assert key(swapped) != key(BASE)


def test_numbers_and_single_text_parts_are_normalised() -> None:
    assert key(with_(temperature=1)) == key(with_(temperature=1.0))
    as_parts = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    as_text = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert key(as_parts) == key(as_text)
    # an image part is not text: it stays a list
    image = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
        ],
    }
    assert key(image) != key(as_text)
    assert b'"temperature":1.0' in canonical_request("chat", "g", {"temperature": 1}, None)


def test_group_operation_and_tenant_are_in_the_key() -> None:
    assert key(BASE, group="other") != key(BASE)
    assert key(BASE, op="embeddings") != key(BASE)
    assert key(BASE, tenant="t2") != key(BASE)
    assert key(BASE, tenant=None) != key(BASE, tenant="")


def _req(tenant: str | None, **body: Any) -> Request:
    req = Request("chat", "chat", with_(**body))
    if tenant is not None:
        req.state.tenant = tenant
    return req


def test_policy_key_is_per_tenant_unless_shared() -> None:
    private = CachePolicy(CacheConfig(enabled=True), MemoryCache())
    shared = CachePolicy(CacheConfig(enabled=True, shared=True), MemoryCache())
    assert private.key(_req("a")) != private.key(_req("b"))
    assert private.key(_req(None)) == private.key(_req(None))
    assert shared.key(_req("a")) == shared.key(_req("b")) == shared.key(_req(None))


def test_uncacheable_requests_have_no_key() -> None:
    policy = CachePolicy(CacheConfig(enabled=True), MemoryCache())
    assert policy.key(_req("a", logprobs=True)) is None
    assert policy.key(_req("a", top_logprobs=2)) is None
    assert policy.key(_req("a", logprobs=False)) is not None
    emb = Request("embeddings", "emb", {"model": "emb", "input": "x"})
    assert policy.key(emb) is not None
