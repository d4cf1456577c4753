"""The context policy's modes with a scripted provider as the inner handler."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from brace.config import Deployment, FallbackRule
from brace.context.policy import ContextConfig, ContextPolicy
from brace.context.tokens import count_prompt_tokens
from brace.errors import AttemptsExhausted, ContextWindowExceeded
from brace.events import EventBus
from brace.policies.fallback import FallbackPolicy
from brace.stack import Handler, Request, build_stack
from brace.testing import FakeClock, ScriptedProvider, ok_response


def deployments(*windows: int | None, model: str = "gpt-4o") -> list[Deployment]:
    return [
        Deployment(provider="mock", model=model, name=f"d{i}", context_window=w)
        for i, w in enumerate(windows)
    ]


def chat(turns: int, *, words: int = 50, **extra: Any) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are terse."}]
    for i in range(turns):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"turn {i}: " + "lorem ipsum " * words})
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": "and now?"})
    return {"model": "g", "messages": messages, **extra}


def request(body: dict[str, Any], operation: Any = "chat") -> Request:
    return Request(operation=operation, model="g", body=body)


def policy(mode: str, windows: tuple[int | None, ...] = (1000, 4000), **kw: Any) -> ContextPolicy:
    rules = kw.pop("fallbacks", ())
    return ContextPolicy(
        "g", ContextConfig(mode=mode, **kw), deployments(*windows), fallbacks=rules
    )


async def test_reject_raises_before_calling_the_provider() -> None:
    provider = ScriptedProvider([ok_response()])
    handler = policy("reject").wrap(provider)
    req = request(chat(12))
    with pytest.raises(ContextWindowExceeded) as info:
        await handler(req)
    assert provider.calls == []
    err = info.value
    prompt = req.state.prompt_tokens
    assert prompt > 1000 * 1.3
    assert err.http_status == 400 and err.error_code == "context_length_exceeded"
    assert err.param == "messages"
    assert f"{prompt} prompt tokens" in err.message
    assert "1000-token context window of d0" in err.message
    assert err.error_class == "context_window_exceeded"


async def test_request_that_fits_is_forwarded_untouched() -> None:
    provider = ScriptedProvider([ok_response()])
    body = chat(2)
    req = request(body)
    await policy("reject").wrap(provider)(req)
    assert provider.calls[0].body is body
    assert req.state.prompt_tokens == count_prompt_tokens(body, family="openai")
    assert req.state.context_trimmed is None


async def test_requested_max_tokens_counts_against_the_window() -> None:
    body = chat(2)
    prompt = count_prompt_tokens(body, family="openai")
    handler = policy("reject", margin=0.0).wrap(ScriptedProvider([ok_response()]))
    await handler(request({**body, "max_tokens": 1000 - prompt}))
    with pytest.raises(ContextWindowExceeded, match=r"\+ 2000 for the completion"):
        await handler(request({**body, "max_completion_tokens": 2000}))


async def test_reject_lets_a_borderline_estimate_through() -> None:
    # Over the window by less than the estimate's margin: the upstream decides.
    body = chat(2)
    prompt = count_prompt_tokens(body, family="openai")
    window = int(prompt * 0.9)
    provider = ScriptedProvider([ok_response()])
    await policy("reject", windows=(window,)).wrap(provider)(request(body))
    assert len(provider.calls) == 1
    with pytest.raises(ContextWindowExceeded):
        await policy("reject", windows=(window,), margin=0.0).wrap(provider)(request(body))


@pytest.mark.parametrize("strategy", ["drop_oldest", "middle_out"])
async def test_trim_forwards_a_smaller_copy(strategy: str) -> None:
    provider = ScriptedProvider([ok_response()])
    body = chat(12, max_tokens=100)
    original = copy.deepcopy(body)
    req = request(body)
    await policy("trim", strategy=strategy).wrap(provider)(req)
    assert body == original, "the caller's body is not modified"
    sent = provider.calls[0].body
    assert sent is not body
    assert len(sent["messages"]) < len(body["messages"])
    assert req.state.context_trimmed == len(body["messages"]) - len(sent["messages"])
    assert req.state.prompt_tokens == count_prompt_tokens(sent, family="openai")
    # Fits even if the estimate is low by its margin (24% for openai), max_tokens included.
    assert req.state.prompt_tokens / (1 - 0.24) + 100 <= 1000
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][-1] == body["messages"][-1]
    assert sent["max_tokens"] == 100 and sent["model"] == "g"
    if strategy == "middle_out":
        assert sent["messages"][1] == body["messages"][1]
    assert provider.calls[0].state is req.state


async def test_trim_reserves_output_tokens_without_max_tokens() -> None:
    body = chat(12)
    reqs = [request(body), request(body)]
    provider = ScriptedProvider([ok_response()])
    await policy("trim", reserve_output_tokens=0).wrap(provider)(reqs[0])
    await policy("trim", reserve_output_tokens=400).wrap(provider)(reqs[1])
    assert reqs[1].state.context_trimmed > reqs[0].state.context_trimmed


async def test_trim_that_cannot_fit_raises() -> None:
    provider = ScriptedProvider([ok_response()])
    body = chat(1, words=2000)
    with pytest.raises(ContextWindowExceeded, match="trimming cannot make it fit"):
        await policy("trim").wrap(provider)(request(body))
    assert provider.calls == []


def route_chain(rules: list[FallbackRule]) -> tuple[Handler, ScriptedProvider, ScriptedProvider]:
    small = ScriptedProvider([ok_response("small")], id="small")
    big = ScriptedProvider([ok_response("big")], id="big")
    core = policy("route", fallbacks=rules).wrap(small)
    fallback = FallbackPolicy(
        "g", rules, {"big": big}, max_hops=2, clock=FakeClock(), events=EventBus()
    )
    return build_stack(core, [fallback]), small, big


async def test_route_goes_to_the_larger_group_through_fallback() -> None:
    handler, small, big = route_chain([FallbackRule(to="big", on=["context_window_exceeded"])])
    req = request(chat(12))
    res = await handler(req)
    assert small.calls == [] and len(big.calls) == 1
    assert big.calls[0].body is req.body
    assert req.state.fallback == ["g", "big"]
    assert res.json()["choices"][0]["message"]["content"] == "big"  # type: ignore[union-attr]
    fitting = request(chat(2))
    await handler(fitting)
    assert len(small.calls) == 1


async def test_route_without_a_rule_rejects() -> None:
    handler, small, big = route_chain([FallbackRule(to="big", on=["unavailable"])])
    with pytest.raises(ContextWindowExceeded, match="shorten the messages"):
        await handler(request(chat(12)))
    assert small.calls == [] and big.calls == []


async def test_route_error_names_the_hop_when_the_larger_group_fails_too() -> None:
    rules = [FallbackRule(to="big", on=["context_window_exceeded"])]
    small = ScriptedProvider([ok_response()], id="small")
    big = ScriptedProvider([ContextWindowExceeded("still too long")], id="big")
    core = policy("route", fallbacks=rules).wrap(small)
    fallback = FallbackPolicy(
        "g", rules, {"big": big}, max_hops=2, clock=FakeClock(), events=EventBus()
    )
    with pytest.raises(AttemptsExhausted) as info:
        await build_stack(core, [fallback])(request(chat(12)))
    assert info.value.http_status == 400
    assert "routing it to a larger-context group" in info.value.failures[0].message


async def test_passes_through_without_a_window_or_for_embeddings() -> None:
    provider = ScriptedProvider([ok_response()])
    no_window = policy("reject", windows=(None,))
    assert no_window.wrap(provider) is provider
    handler = policy("reject").wrap(provider)
    await handler(request({"model": "g", "input": "x" * 100_000}, operation="embeddings"))
    assert len(provider.calls) == 1


def test_family_and_margin_follow_the_smallest_window() -> None:
    p = ContextPolicy(
        "g",
        ContextConfig(),
        [
            Deployment(provider="mock", model="gpt-4o", name="a", context_window=128_000),
            Deployment(provider="mock", model="Qwen/Qwen2.5-7B", name="b", context_window=32_000),
        ],
    )
    assert p.window == 32_000 and p.family == "qwen" and p.margin == pytest.approx(0.29)
    forced = ContextPolicy("g", ContextConfig(family="mistral", margin=0.1), deployments(8000))
    assert forced.family == "mistral" and forced.margin == 0.1


def test_config_is_validated() -> None:
    assert ContextConfig().model_dump() == {
        "mode": "reject",
        "strategy": "drop_oldest",
        "family": "auto",
        "reserve_output_tokens": 256,
        "margin": None,
    }
    with pytest.raises(ValueError):
        ContextConfig(mode="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ContextConfig(unknown=1)  # type: ignore[call-arg]
