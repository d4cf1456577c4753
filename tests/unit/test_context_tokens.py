"""Prompt token counting: exact where an encoding is on the machine, and the calibrated
estimate within its stated error on the shipped corpus."""

from __future__ import annotations

import base64
import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from brace.context.tokens import (
    CALIBRATIONS,
    FAMILIES,
    Encoding,
    Family,
    count_message_tokens,
    count_prompt,
    count_prompt_tokens,
    count_text_tokens,
    encoding_name_for,
    family_for,
    fixed_prompt_tokens,
    load_encoding,
)

CORPUS = [
    json.loads(line)
    for line in (Path(__file__).parents[1] / "data" / "context_corpus.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]
TEXTS = [item for item in CORPUS if "text" in item]
BODIES = [item for item in CORPUS if "body" in item]
REFERENCE = {
    "openai": "o200k",
    "anthropic": "claude",
    "llama": "cl100k",
    "qwen": "qwen",
    "mistral": "tekken",
}
# Mean relative error measured on the corpus (docs/context.md), rounded up.
MEAN_ERROR = {"openai": 0.09, "anthropic": 0.09, "llama": 0.10, "qwen": 0.11, "mistral": 0.10}


@functools.cache
def _load(name: str) -> Encoding | None:
    return load_encoding(name)


def _encoding(name: str) -> Encoding:
    enc = _load(name)
    if enc is None:
        pytest.skip(
            f"{name} is not available offline here (needs the tiktoken package and a rank "
            "file: the bpe-openai package's data, a search directory or tiktoken's cache)"
        )
    return enc


def test_corpus_is_varied() -> None:
    kinds = {item["kind"].split("_")[0] for item in CORPUS}
    assert {"prose", "code", "json", "numbers", "mixed", "chat"} <= kinds
    assert len({item["kind"] for item in TEXTS if item["kind"].startswith("prose")}) >= 15
    assert len(CORPUS) >= 300
    for item in TEXTS:
        assert set(REFERENCE.values()) <= set(item["ref"])


@pytest.mark.parametrize(("name", "ref"), [("o200k_base", "o200k"), ("cl100k_base", "cl100k")])
def test_openai_count_is_tiktokens_exactly(name: str, ref: str) -> None:
    enc = _encoding(name)
    for item in TEXTS:
        assert count_text_tokens(item["text"], family="openai", encoding=enc) == item["ref"][ref]


def test_openai_body_count_follows_the_cookbook() -> None:
    enc = _encoding("o200k_base")
    for item in BODIES:
        assert (
            count_prompt_tokens(item["body"], family="openai", encoding=enc) == item["ref"]["o200k"]
        )
    assert count_prompt(BODIES[0]["body"], family="openai", encoding=enc).exact


def _relative_errors(family: Family, ref: str) -> tuple[list[float], list[int]]:
    big, small = [], []
    for item in TEXTS:
        want = item["ref"][ref]
        got = count_text_tokens(item["text"], family=family)
        if want >= 20:
            big.append((got - want) / want)
        else:
            small.append(abs(got - want))
    return big, small


@pytest.mark.parametrize("family", list(REFERENCE))
def test_estimate_stays_within_the_stated_error(family: Family) -> None:
    big, small = _relative_errors(family, REFERENCE[family])
    bound = CALIBRATIONS[family].error
    worst = max(abs(e) for e in big)
    assert worst <= bound, f"{family}: worst relative error {worst:.3f} > stated {bound}"
    assert max(small) <= 8  # texts under 20 tokens: within 8 tokens
    mean = statistics.fmean(abs(e) for e in big)
    assert mean <= MEAN_ERROR[family], f"{family}: mean error {mean:.3f}"
    # Unbiased: neither a systematic over- nor under-count.
    assert abs(statistics.fmean(big)) < 0.05


def test_other_family_errs_high_against_every_reference() -> None:
    bound = CALIBRATIONS["other"].error
    for ref in REFERENCE.values():
        big, _ = _relative_errors("other", ref)
        assert min(big) >= -bound, ref


def test_estimated_bodies_stay_within_the_openai_error() -> None:
    bound = CALIBRATIONS["openai"].error
    for item in BODIES:
        want = item["ref"]["o200k"]
        got = count_prompt_tokens(item["body"], family="openai")
        assert abs(got - want) <= bound * want, item["id"]
    assert not count_prompt(BODIES[0]["body"], family="openai").exact


@pytest.mark.parametrize("family", FAMILIES)
def test_body_is_fixed_part_plus_messages(family: Family) -> None:
    for item in BODIES[:20]:
        body = item["body"]
        parts = fixed_prompt_tokens(body, family=family) + sum(
            count_message_tokens(m, family=family) for m in body["messages"]
        )
        assert count_prompt_tokens(body, family=family) == parts


def test_framing_tools_and_names_add_up() -> None:
    one = {"messages": [{"role": "user", "content": "hello there"}]}
    base = count_prompt_tokens(one, family="openai")
    text = count_text_tokens("hello there", family="openai") + count_text_tokens(
        "user", family="openai"
    )
    assert base == 3 + text + 3
    named = {"messages": [{"role": "user", "content": "hello there", "name": "bob"}]}
    assert count_prompt_tokens(named, family="openai") == base + 1 + count_text_tokens(
        "bob", family="openai"
    )
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "description": "d",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    with_tools = count_prompt_tokens({**one, "tools": [tool]}, family="openai")
    assert with_tools == base + 12 + 7 + count_text_tokens("f:d", family="openai")
    assert count_prompt_tokens({**one, "tools": [tool]}, family="anthropic") >= 346
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert (
        count_message_tokens(call, family="openai")
        > count_message_tokens({"role": "assistant", "content": None}, family="openai") + 5
    )


def _png(width: int, height: int) -> str:
    header = (
        b"\x89PNG\r\n\x1a\n"
        + b"\x00\x00\x00\rIHDR"
        + width.to_bytes(4, "big")
        + height.to_bytes(4, "big")
        + b"\x08\x02\x00\x00\x00"
    )
    return "data:image/png;base64," + base64.b64encode(header + b"\x00" * 32).decode()


def _jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = (
        b"\xff\xc0\x00\x11\x08"
        + height.to_bytes(2, "big")
        + width.to_bytes(2, "big")
        + b"\x03"
        + b"\x00" * 9
    )
    return (
        "data:image/jpeg;base64,"
        + base64.b64encode(b"\xff\xd8" + app0 + sof + b"\x00" * 16).decode()
    )


def _image_body(url: str, detail: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"url": url}
    if detail:
        spec["detail"] = detail
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": spec}]}]}


@pytest.mark.parametrize(
    ("url", "detail", "tokens"),
    [
        (_png(1024, 1024), None, 85 + 170 * 4),  # → 768x768: 2x2 tiles
        (_png(2048, 4096), None, 85 + 170 * 6),  # → 1024x2048 → 768x1536: 2x3
        (_png(300, 200), None, 85 + 170),
        (_jpeg(1600, 900), None, 85 + 170 * 6),  # → 1365x768: 3x2
        (_png(4000, 4000), "low", 85),
        ("https://example.com/cat.png", None, 765),
        ("data:image/webp;base64,UklGRg==", None, 765),
    ],
)
def test_openai_image_rule(url: str, detail: str | None, tokens: int) -> None:
    body = _image_body(url, detail)
    empty = count_prompt_tokens({"messages": [{"role": "user", "content": []}]}, family="openai")
    counted = count_prompt(body, family="openai")
    assert counted.tokens - empty == tokens
    assert counted.images == 1


def test_anthropic_image_rule_and_uncounted_parts() -> None:
    empty = count_prompt_tokens({"messages": [{"role": "user", "content": []}]}, family="anthropic")
    assert count_prompt_tokens(_image_body(_png(750, 750)), family="anthropic") - empty == 750
    assert count_prompt_tokens(_image_body("https://x/y.png"), family="anthropic") - empty == 1600
    audio = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "A" * 100_000}}],
            }
        ]
    }
    counted = count_prompt(audio, family="openai")
    assert counted.uncounted_parts == 1
    assert counted.tokens == empty - 0 or counted.tokens < 50


@pytest.mark.parametrize(
    ("provider", "model", "family"),
    [
        ("openai", "gpt-4o-mini", "openai"),
        ("azure", "my-deployment", "openai"),
        ("anthropic", "claude-sonnet-4-5", "anthropic"),
        ("openrouter", "anthropic/claude-3.5-sonnet", "anthropic"),
        ("groq", "llama-3.3-70b-versatile", "llama"),
        ("vllm", "Qwen/Qwen2.5-7B-Instruct", "qwen"),
        ("mistral", "mistral-large-latest", "mistral"),
        ("together", "mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral"),
        ("deepseek", "deepseek-chat", "other"),
        ("openrouter", "openai/o3-mini", "openai"),
    ],
)
def test_family_for(provider: str, model: str, family: str) -> None:
    assert family_for(provider, model) == family


def test_encoding_name_for() -> None:
    assert encoding_name_for("gpt-4o") == "o200k_base"
    assert encoding_name_for("gpt-4.1-mini") == "o200k_base"
    assert encoding_name_for("o3") == "o200k_base"
    assert encoding_name_for("gpt-4-turbo") == "cl100k_base"
    assert encoding_name_for("gpt-3.5-turbo") == "cl100k_base"


def test_unknown_encoding_and_tampered_files_are_not_used(tmp_path: Path) -> None:
    assert load_encoding("p50k_base") is None
    (tmp_path / "o200k_base.tiktoken").write_bytes(b"aGVsbG8= 0\n")
    enc = load_encoding("o200k_base", search=[tmp_path])
    # Either no genuine file is on this machine, or the genuine one was found instead.
    assert enc is None or len(enc.encode_ordinary("hello world")) == 2


def test_estimate_is_fast_and_needs_no_state() -> None:
    text = "\n".join(item["text"] for item in TEXTS) * 5
    started = time.perf_counter()
    first = count_text_tokens(text, family="qwen")
    elapsed = time.perf_counter() - started
    assert len(text) > 1_000_000
    assert elapsed < 0.25, f"{elapsed:.3f}s for {len(text)} characters"
    assert count_text_tokens(text, family="qwen") == first
    assert count_text_tokens("", family="qwen") == 0
    assert count_text_tokens("a", family="qwen") == 1
