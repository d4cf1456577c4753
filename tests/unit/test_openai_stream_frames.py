"""The OpenAI adapter's SSE framing: the whole-block fast paths give exactly what the
event-by-event checks give, on clean streams and on every irregular shape."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from brace.config import parse_config
from brace.errors import MalformedResponse, UpstreamFailure
from brace.providers import openai_compat
from brace.providers.openai_compat import OpenAIProvider, _note_usage
from brace.stack import RequestState


def provider() -> OpenAIProvider:
    cfg = parse_config(
        {
            "models": {
                "m": {"deployments": [{"provider": "openai", "model": "gpt", "api_key": "${K}"}]}
            }
        },
        env={"K": "sk-test"},
    )
    return OpenAIProvider(cfg.models["m"].deployments[0], session=None)  # type: ignore[arg-type]


def chunk(i: int, *, finish: str | None = None, usage: bool = False) -> bytes:
    body: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-x",
        "choices": []
        if usage
        else [{"index": 0, "delta": {"content": f"w{i} {{}}"}, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 3, "completion_tokens": i, "total_tokens": 3 + i}
    return b"data: " + orjson.dumps(body)


IRREGULAR = [
    b": keep-alive",
    b"event: message\ndata: " + orjson.dumps({"choices": [{"delta": {}}]}),
    b'data: {"choices":\ndata: []}',
    b'data: {"error": {"message": "overloaded", "type": "server_error"}}',
    b"data: not json",
    b"data: [DONE]",
    b"",
]
TRICKY_BUT_CLEAN = [b'data: {"content": "[DONE] in text"}', b'data: {"a": "}\\n\\ndata: {"}']


def random_block(rng: random.Random, irregular: bool) -> bytes:
    events = [chunk(i) for i in range(rng.randint(0, 6))]
    if rng.random() < 0.5:
        events.append(chunk(99, finish="stop"))
    if rng.random() < 0.5:
        events.append(chunk(7, usage=True))
    if irregular:
        for _ in range(rng.randint(1, 2)):
            events.insert(rng.randint(0, len(events)), rng.choice(IRREGULAR + TRICKY_BUT_CLEAN))
    if rng.random() < 0.4:
        events.append(b"data: [DONE]")
    return b"".join(e + b"\n\n" for e in events)


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except UpstreamFailure as exc:
        return (type(exc), exc.error_class)


@pytest.mark.parametrize("irregular", [False, True])
def test_fast_frame_matches_the_event_by_event_checks(
    irregular: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = provider()
    rng = random.Random(5)
    blocks = [random_block(rng, irregular) for _ in range(400)]
    took_fast = sum(openai_compat._clean_frame(b) is not None for b in blocks)
    fast = [outcome(p._frame, b) for b in blocks]
    monkeypatch.setattr(openai_compat, "_clean_frame", lambda block: None)
    slow = [outcome(p._frame, b) for b in blocks]
    assert fast == slow
    # both paths are really exercised: clean blocks take the fast one
    assert took_fast > 300 if not irregular else 0 < took_fast < 300


def test_fast_frame_takes_clean_blocks_and_leaves_the_rest() -> None:
    clean = chunk(1) + b"\n\n" + chunk(2, finish="stop") + b"\n\n"
    assert openai_compat._clean_frame(clean) == (clean, False)
    assert openai_compat._clean_frame(clean + b"data: [DONE]\n\n") == (clean, True)
    for odd in IRREGULAR:
        if odd != b"data: [DONE]":  # [DONE] last is the clean ending above
            assert openai_compat._clean_frame(clean + odd + b"\n\n") is None, odd
        assert openai_compat._clean_frame(odd + b"\n\n" + clean) is None, odd
    assert openai_compat._clean_frame(b"data: [DONE]\n\n") is None
    for fine in TRICKY_BUT_CLEAN:
        block = clean + fine + b"\n\n"
        assert openai_compat._clean_frame(block) == (block, False), fine
    with pytest.raises(MalformedResponse):
        provider()._frame(b"data: not json\n\n")


def reference_note_usage(frame: bytes, state: RequestState, strip_usage: bool) -> bytes:
    """The event-by-event version the search-based one replaced."""
    kept: list[bytes] = []
    dropped = False
    for ev in frame.split(b"\n\n"):
        if not ev:
            continue
        if b'"usage":{' in ev or b'"finish_reason":"' in ev:
            try:
                parsed = orjson.loads(ev[6:])
            except orjson.JSONDecodeError:
                kept.append(ev)
                continue
            usage = parsed.get("usage")
            if isinstance(usage, dict):
                state.usage = usage
                state.response_model = parsed.get("model")
                state.response_id = parsed.get("id")
            for choice in parsed.get("choices") or ():
                reason = choice.get("finish_reason") if isinstance(choice, dict) else None
                if isinstance(reason, str):
                    state.finish_reasons = [*(state.finish_reasons or ()), reason]
            if strip_usage and isinstance(usage, dict) and not parsed.get("choices"):
                dropped = True
                continue
        kept.append(ev)
    if not dropped:
        return frame
    return b"".join(e + b"\n\n" for e in kept)


@pytest.mark.parametrize("strip", [False, True])
def test_note_usage_matches_the_event_by_event_version(strip: bool) -> None:
    rng = random.Random(11)
    for _ in range(400):
        events = [chunk(i) for i in range(rng.randint(0, 5))]
        for _ in range(rng.randint(0, 3)):
            extra = rng.choice(
                [chunk(9, finish="stop"), chunk(4, usage=True), b'data: {"usage":{bad', chunk(2)]
            )
            events.insert(rng.randint(0, len(events)), extra)
        frame = b"".join(e + b"\n\n" for e in events)
        got = RequestState()
        want = RequestState()
        out, finish = _note_usage(frame, got, strip)
        assert out == reference_note_usage(frame, want, strip)
        assert got == want
        assert finish == (b'"finish_reason":"' in out)


def test_the_usage_event_brace_asked_for_is_dropped_and_recorded() -> None:
    frame = (
        chunk(1) + b"\n\n" + chunk(2, finish="length") + b"\n\n" + chunk(5, usage=True) + b"\n\n"
    )
    state = RequestState()
    out, finish = _note_usage(frame, state, True)
    assert finish
    assert out == chunk(1) + b"\n\n" + chunk(2, finish="length") + b"\n\n"
    assert state.usage is not None
    assert state.usage["completion_tokens"] == 5 and state.finish_reasons == ["length"]
    assert state.response_model == "gpt-x" and state.response_id == "c1"
    assert _note_usage(frame, RequestState(), False) == (frame, True)  # asked for usage: kept
    assert _note_usage(chunk(1) + b"\n\n", RequestState(), True) == (chunk(1) + b"\n\n", False)
