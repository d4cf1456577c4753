"""The context-window policy: count a chat request's prompt before any upstream call
and reject, trim or route it when it cannot fit.

The limit is the smallest ``context_window`` among the group's deployments (the one
any of them could be picked for); a group whose deployments declare none is passed
through untouched.  The prompt is counted with the tokenizer family of that
deployment (:mod:`brace.context.tokens`): exactly for OpenAI models when the encoding
is on the machine, else with the calibrated estimate.  The count is left in
``request.state.prompt_tokens`` for the layers below (pacing).

An estimate is only trusted within its measured error (``margin``, by default the
family's 95th percentile; 0 for an exact count):

* ``reject`` / ``route`` raise :class:`~brace.errors.ContextWindowExceeded`
  (400, ``context_length_exceeded``, param ``messages``) only when the request is
  over the window *even if the estimate is high by the margin* — a borderline request
  is sent, and an upstream refusal maps to the same error class anyway.  ``route``
  means the group's ``fallbacks`` rule ``on: [context_window_exceeded]`` takes it to a
  larger-context group; without such a rule it is a ``reject``.
* ``trim`` drops messages (:func:`~brace.context.trim.trim`) until the request fits
  *even if the estimate is low by the margin*, reserving the requested
  ``max_completion_tokens``/``max_tokens`` or ``reserve_output_tokens`` for the
  answer.  The caller's body is never modified: the layers below see a new body
  (a shallow copy with a new ``messages`` list) and ``state.context_trimmed`` holds
  the number of messages dropped.

Reject and route never need the requested completion room to be reserved: without a
``max_tokens`` the upstream accepts a prompt up to the whole window.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import ContextConfig, Deployment, FallbackRule
from ..errors import ContextWindowExceeded
from ..stack import Handler, Request, Response, StreamResponse
from .tokens import (
    CALIBRATIONS,
    Encoding,
    Family,
    count_message_tokens,
    encoding_name_for,
    family_for,
    fixed_prompt_tokens,
    load_encoding,
)
from .trim import trim

__all__ = ["ContextConfig", "ContextPolicy", "Encodings"]


class Encodings:
    """The tiktoken encodings found on this machine, loaded once (about a second
    each) and shared by every group's policy of one engine."""

    def __init__(self, search: Sequence[str | Path] = ()) -> None:
        self._search = tuple(search)
        self._loaded: dict[str, Encoding | None] = {}

    def get(self, name: str) -> Encoding | None:
        if name not in self._loaded:
            self._loaded[name] = load_encoding(name, search=self._search)
        return self._loaded[name]


class ContextPolicy:
    """Counts the prompt of chat requests against the group's context window."""

    def __init__(
        self,
        group: str,
        config: ContextConfig,
        deployments: Sequence[Deployment],
        *,
        fallbacks: Sequence[FallbackRule] = (),
        encodings: Encodings | None = None,
    ) -> None:
        self._group = group
        self._config = config
        sized = [d for d in deployments if d.context_window is not None]
        self._binding = min(sized, key=lambda d: d.context_window or 0) if sized else None
        self.window = self._binding.context_window if self._binding else None
        dep = self._binding
        self.family: Family = "other"
        if config.family != "auto":
            self.family = config.family
        elif dep is not None:
            self.family = family_for(dep.provider, dep.model)
        self.encoding: Encoding | None = None
        if dep is not None and self.family == "openai" and encodings is not None:
            self.encoding = encodings.get(encoding_name_for(dep.model))
        calibration = CALIBRATIONS[self.family]
        exact = self.encoding is not None
        self.margin = (
            config.margin if config.margin is not None else (0.0 if exact else calibration.p95)
        )
        self._how = (
            f"counted with {self.encoding.name}"
            if self.encoding is not None
            else f"estimated for the {self.family} tokenizer family, ±{self.margin:.0%}"
        )
        self._routable = any("context_window_exceeded" in r.classes for r in fallbacks)

    def wrap(self, inner: Handler) -> Handler:
        window = self.window
        if window is None:
            return inner
        config, family, encoding, margin = self._config, self.family, self.encoding, self.margin

        async def context(req: Request) -> Response | StreamResponse:
            body = req.body
            messages = body.get("messages")
            if req.operation != "chat" or not isinstance(messages, list):
                return await inner(req)
            fixed = fixed_prompt_tokens(body, family=family, encoding=encoding)
            costs = [count_message_tokens(m, family=family, encoding=encoding) for m in messages]
            prompt = fixed + sum(costs)
            req.state.prompt_tokens = prompt
            requested = _requested_completion(body)
            if config.mode != "trim":
                if prompt / (1 + margin) + (requested or 0) > window:
                    raise self._exceeded(prompt, requested or 0)
                return await inner(req)

            out = requested if requested is not None else config.reserve_output_tokens
            if prompt / (1 - margin) + out <= window:
                return await inner(req)
            budget = math.floor((window - out) * (1 - margin)) - fixed
            by_id = {id(m): c for m, c in zip(messages, costs, strict=True)}
            try:
                kept = trim(messages, budget, config.strategy, cost=lambda m: by_id[id(m)])
            except ContextWindowExceeded as exc:
                raise self._exceeded(prompt, out, detail=exc.message) from None
            req.state.context_trimmed = len(messages) - len(kept)
            req.state.prompt_tokens = fixed + sum(by_id[id(m)] for m in kept)
            return await inner(dataclasses.replace(req, body={**body, "messages": kept}))

        return context

    def _exceeded(self, prompt: int, out: int, *, detail: str = "") -> ContextWindowExceeded:
        dep = self._binding
        assert dep is not None
        need = f"{prompt} prompt tokens ({self._how})"
        if out:
            need += f" + {out} for the completion"
        message = (
            f"model group {self._group!r}: the request needs {need}, over the "
            f"{self.window}-token context window of {dep.id}"
        )
        if detail:
            message += f"; trimming cannot make it fit: {detail}"
        elif self._config.mode == "route" and self._routable:
            message += "; routing it to a larger-context group"
        else:
            message += "; shorten the messages or lower max_tokens"
        return ContextWindowExceeded(message, param="messages")


def _requested_completion(body: Mapping[str, Any]) -> int | None:
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
