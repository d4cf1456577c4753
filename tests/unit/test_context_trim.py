"""Trimming: tool calls stay with their results, system messages stay, the budget holds,
and each strategy keeps what it promises — over many seeded random conversations."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from brace.context.trim import blocks, trim
from brace.errors import ContextWindowExceeded

Msg = dict[str, Any]


def cost(m: Msg) -> int:
    """A simple deterministic cost: the content length plus framing."""
    content = m.get("content") or ""
    calls = m.get("tool_calls") or []
    return 4 + len(content) // 4 + 10 * len(calls)


def conversation(rng: random.Random) -> list[Msg]:
    msgs: list[Msg] = []
    if rng.random() < 0.8:
        msgs.append({"role": "system", "content": "s" * rng.randint(0, 200)})
    if rng.random() < 0.1:
        msgs.append({"role": "assistant", "content": "hello, how can I help?"})
    n_call = 0
    for _ in range(rng.randint(1, 12)):
        msgs.append({"role": "user", "content": "u" * rng.randint(1, 400)})
        for _ in range(rng.choice([0, 0, 1, 1, 2, 4])):
            ids = [f"call_{n_call + i}" for i in range(rng.randint(1, 3))]
            n_call += len(ids)
            msgs.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        for i in ids
                    ],
                }
            )
            msgs.extend(
                {"role": "tool", "tool_call_id": i, "content": "r" * rng.randint(0, 300)}
                for i in ids
            )
        if rng.random() < 0.1:
            msgs.append({"role": "system", "content": "mid-conversation instruction"})
        if rng.random() < 0.8:
            msgs.append({"role": "assistant", "content": "a" * rng.randint(1, 400)})
    if msgs[-1]["role"] == "assistant" and not msgs[-1].get("tool_calls") and rng.random() < 0.7:
        msgs.append({"role": "user", "content": "last question " * rng.randint(1, 20)})
    return msgs


def positions(kept: list[Msg], msgs: list[Msg]) -> list[int]:
    """Indices of the kept messages in the original list (by identity)."""
    index = {id(m): i for i, m in enumerate(msgs)}
    return [index[id(m)] for m in kept]


def pinned_cost(msgs: list[Msg], strategy: str) -> int:
    """What the pinned messages cost, computed independently of trim's own bookkeeping."""
    keep: set[int] = {i for i, m in enumerate(msgs) if m["role"] in ("system", "developer")}
    users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
    # The last block: the last message and, if it is a tool result, back to its call.
    last = len(msgs) - 1
    while msgs[last]["role"] == "tool":
        last -= 1
    keep.update(range(last, len(msgs)))
    if users:
        keep.add(users[-1])
        if strategy == "middle_out":
            keep.add(users[0])
    return sum(cost(msgs[i]) for i in keep)


@pytest.mark.parametrize("strategy", ["drop_oldest", "middle_out"])
def test_trim_invariants_over_random_conversations(strategy: Any) -> None:
    rng = random.Random(7)
    trimmed = raised = 0
    for _ in range(600):
        msgs = conversation(rng)
        original = copy.deepcopy(msgs)
        total = sum(cost(m) for m in msgs)
        budget = rng.randint(0, total + 50)
        try:
            kept = trim(msgs, budget, strategy, cost=cost)
        except ContextWindowExceeded as exc:
            raised += 1
            assert exc.param == "messages"
            assert pinned_cost(msgs, strategy) > budget
            continue
        assert msgs == original, "the input list and its messages are unchanged"
        pos = positions(kept, msgs)
        assert pos == sorted(pos), "order is kept"
        assert sum(cost(m) for m in kept) <= budget
        if total <= budget:
            assert pos == list(range(len(msgs)))
            continue
        trimmed += 1
        kept_ids = set(pos)
        # System messages, the last message and the last user message are kept.
        assert {i for i, m in enumerate(msgs) if m["role"] == "system"} <= kept_ids
        assert len(msgs) - 1 in kept_ids
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        if users:
            assert users[-1] in kept_ids
            if strategy == "middle_out":
                assert users[0] in kept_ids
        # Tool calls and their results are kept or dropped together.
        calls = {c["id"]: i for i, m in enumerate(msgs) for c in (m.get("tool_calls") or [])}
        for i, m in enumerate(msgs):
            if m["role"] == "tool":
                assert (i in kept_ids) == (calls[m["tool_call_id"]] in kept_ids), (i, pos)
        # Never starts with a tool message.
        first = next((m for m in kept if m["role"] != "system"), None)
        assert first is not None and first["role"] != "tool"
        # What was dropped is, among the blocks that may be dropped, the oldest ones
        # (drop_oldest) or one run from the middle (middle_out).
        groups = blocks(msgs)
        roles = [msgs[g[0]]["role"] for g in groups]
        user_blocks = [k for k, r in enumerate(roles) if r == "user"]
        pinned = {k for k, r in enumerate(roles) if r == "system"} | {len(groups) - 1}
        pinned |= {user_blocks[-1]} if user_blocks else set()
        if strategy == "middle_out" and user_blocks:
            pinned.add(user_blocks[0])
        droppable = [k for k in range(len(groups)) if k not in pinned]
        dropped = [k for k in droppable if groups[k][0] not in kept_ids]
        assert dropped and not any(groups[k][0] not in kept_ids for k in pinned)
        at = droppable.index(dropped[0])
        if strategy == "drop_oldest":
            assert at == 0
        assert droppable[at : at + len(dropped)] == dropped
    assert trimmed > 200 and raised > 20, (trimmed, raised)


def test_drop_oldest_example() -> None:
    msgs: list[Msg] = [
        {"role": "system", "content": "x" * 40},
        {"role": "user", "content": "1" * 40},
        {"role": "assistant", "content": "2" * 40},
        {"role": "user", "content": "3" * 40},
        {"role": "assistant", "content": "4" * 40},
        {"role": "user", "content": "5" * 40},
    ]
    kept = trim(msgs, 14 * 4, "drop_oldest", cost=cost)
    assert [m["content"][0] for m in kept] == ["x", "3", "4", "5"]


def test_middle_out_example_keeps_first_and_last_turns() -> None:
    msgs: list[Msg] = [{"role": "system", "content": "s" * 40}]
    for i in range(10):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": str(i) * 40})
    kept = trim(msgs, 14 * 5, "middle_out", cost=cost)
    # Pinned: the system prompt, the first user message (0), the last user message (8)
    # and the last turn (9); of the middle, the most recent survives longest.
    assert [m["content"][0] for m in kept] == ["s", "0", "7", "8", "9"]


def test_tool_call_block_dropped_whole() -> None:
    msgs: list[Msg] = [
        {"role": "user", "content": "q" * 40},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "a", "content": "r" * 400},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "next"},
    ]
    kept = trim(msgs, 30, "drop_oldest", cost=cost)
    assert [m["role"] for m in kept] == ["assistant", "user"]
    assert kept[0]["content"] == "done"


def test_minimal_set_that_does_not_fit_raises() -> None:
    msgs: list[Msg] = [
        {"role": "system", "content": "s" * 400},
        {"role": "user", "content": "u" * 40},
        {"role": "user", "content": "v" * 40},
    ]
    with pytest.raises(ContextWindowExceeded, match=r"need 118 tokens; the budget is 100"):
        trim(msgs, 100, "drop_oldest", cost=cost)


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        trim([{"role": "user", "content": "x"}], 0, "newest_first", cost=cost)  # type: ignore[arg-type]


def test_default_cost_is_the_high_estimate() -> None:
    msgs: list[Msg] = [
        {"role": "user", "content": "hello " * 100},
        {"role": "user", "content": "hi"},
    ]
    assert trim(msgs, 1000, "drop_oldest") == msgs
    assert trim(msgs, 20, "drop_oldest") == [msgs[1]]
