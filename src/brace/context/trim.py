"""Trimming a conversation to a token budget, without breaking its structure.

The messages are first cut into *blocks* that live or die together: an assistant
message that calls tools (``tool_calls``, or the legacy ``function_call``) with the
``tool``/``function`` results that follow it, or any other single message.  Then:

* **pinned** blocks are never dropped: every ``system``/``developer`` message, the
  last user message and the last block (what the model must answer); with
  ``middle_out`` also the first user message;
* the others are dropped in the strategy's order until the sum of their costs fits
  the budget: ``drop_oldest`` from the oldest; ``middle_out`` from the middle of the
  droppable run outwards, so that the start of the conversation and its most recent
  turns stay longest;
* tool results that answer no kept call (a leading orphan run, only in a malformed
  conversation) are dropped too, so the kept list never starts with a tool message.

The result is a new list of the same message objects, in their original order; the
input is never modified.  If the pinned blocks alone do not fit,
:class:`~brace.errors.ContextWindowExceeded` says how many tokens they need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Literal, TypeVar

from ..errors import ContextWindowExceeded
from .tokens import count_message_tokens

__all__ = ["STRATEGIES", "Strategy", "blocks", "trim"]

Strategy = Literal["drop_oldest", "middle_out"]
STRATEGIES: tuple[Strategy, ...] = ("drop_oldest", "middle_out")

M = TypeVar("M", bound=Mapping[str, Any])

_PINNED_ROLES = ("system", "developer")
_RESULT_ROLES = ("tool", "function")


def _role(msg: Mapping[str, Any]) -> Any:
    return msg.get("role") if isinstance(msg, Mapping) else None


def _calls_tools(msg: Mapping[str, Any]) -> bool:
    return _role(msg) == "assistant" and bool(msg.get("tool_calls") or msg.get("function_call"))


def blocks(messages: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """The indices of ``messages`` grouped into blocks that are kept or dropped whole.

    A run of tool results belongs to the tool-calling assistant message before it; a
    run that follows anything else (an orphan) joins the block before it, or forms a
    block of its own at the start.
    """
    out: list[list[int]] = []
    i, n = 0, len(messages)
    while i < n:
        j = i + 1
        if _calls_tools(messages[i]) or _role(messages[i]) in _RESULT_ROLES:
            while j < n and _role(messages[j]) in _RESULT_ROLES:
                j += 1
        block = list(range(i, j))
        if (
            _role(messages[i]) in _RESULT_ROLES
            and out
            and _role(messages[out[-1][0]]) not in _PINNED_ROLES
        ):
            out[-1].extend(block)
        else:
            out.append(block)
        i = j
    return out


def _middle_out(order: list[int]) -> list[int]:
    """Drop order for ``middle_out``: the middle of what remains, again and again."""
    remaining = list(order)
    out = []
    while remaining:
        out.append(remaining.pop((len(remaining) - 1) // 2))
    return out


def trim(
    messages: Sequence[M],
    budget: int,
    strategy: Strategy,
    *,
    cost: Callable[[M], int] | None = None,
) -> list[M]:
    """The messages to keep so that their total ``cost`` is at most ``budget``.

    ``cost`` gives one message's tokens (default: the ``other`` family's estimate,
    which errs high).  Returns a new list, unchanged if everything fits.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    measure: Callable[[M], int] = cost or partial(count_message_tokens, family="other")
    costs = [measure(m) for m in messages]
    total = sum(costs)
    if total <= budget:
        return list(messages)

    groups = blocks(messages)
    roles = [_role(messages[g[0]]) for g in groups]
    user_blocks = [k for k, r in enumerate(roles) if r == "user"]
    pinned = {k for k, r in enumerate(roles) if r in _PINNED_ROLES}
    pinned.add(len(groups) - 1)
    if user_blocks:
        pinned.add(user_blocks[-1])
        if strategy == "middle_out":
            pinned.add(user_blocks[0])
    droppable = [k for k in range(len(groups)) if k not in pinned]
    order = droppable if strategy == "drop_oldest" else _middle_out(droppable)

    dropped: set[int] = set()

    def drop(k: int) -> None:
        nonlocal total
        dropped.add(k)
        total -= sum(costs[i] for i in groups[k])

    for k in order:
        if total <= budget:
            break
        drop(k)
    # Never start with tool results: drop a leading run that answers no kept call.
    for k, role in enumerate(roles):
        if k in dropped or role in _PINNED_ROLES:
            continue
        if role not in _RESULT_ROLES:
            break
        drop(k)
    if total > budget or all(k in dropped or r in _PINNED_ROLES for k, r in enumerate(roles)):
        raise ContextWindowExceeded(
            f"the messages that trimming keeps (system prompts, the last turn"
            f"{', the first user message' if strategy == 'middle_out' else ''}) need "
            f"{total} tokens; the budget is {budget}",
            param="messages",
        )
    return [messages[i] for k, g in enumerate(groups) if k not in dropped for i in g]
