"""The ``runs`` slot: right inside ``observe``, it puts a request into its agent run.

A request that names no run and declares no ``tools`` passes straight through (one
attribute test and one dict lookup: no coroutine frame of its own).  Otherwise:

1. the run is the one the door named (``request.state.run``), else — with
   ``runs.link_conversations`` — the run whose answer the request's conversation
   continues (:mod:`brace.runs._link`); a request with tools that continues nothing
   starts a run of its own only if its answer asks for tool calls (an agent loop);
2. the tracker opens the model step (closing the tool steps whose results the request
   carries) before the layers below run;
3. when the answer is complete — at once for JSON, when the stream closes for a stream
   — the tool calls it asked for are read (for a stream, from the chunks' deltas as they
   pass, only for a request of a run) and the tracker closes the step.

Nothing here changes the request or the answer.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from ..errors import BraceError
from ..stack import (
    Handler,
    Request,
    Response,
    RunRef,
    StreamResponse,
    frame_payloads,
)
from ._tracker import ModelStep, RunTracker, ToolCall

__all__ = ["RunPolicy"]

_TOOL_CALLS = b'"tool_calls"'


class RunPolicy:
    def __init__(
        self,
        tracker: RunTracker,
        *,
        cost: Callable[[Request, Response | None], float],
    ) -> None:
        self.tracker = tracker
        self._cost = cost
        self._seq = 0
        self._prefix = os.urandom(4).hex()

    def wrap(self, inner: Handler) -> Handler:
        tracker = self.tracker
        link = tracker.config.link_conversations

        def runs(req: Request) -> Awaitable[Response | StreamResponse]:
            state = req.state
            if state.run is None and ("tools" not in req.body or not link):
                return inner(req)
            return tracked(req)

        async def tracked(req: Request) -> Response | StreamResponse:
            state = req.state
            ref = state.run
            if ref is None:
                ref = tracker.link(req)
                if ref is None:  # maybe the first step of an agent loop
                    return await self._maybe_start(req, inner)
                state.run = ref
            return await self._run(req, ref, inner, tracker.begin(req, ref))

        return runs

    async def _run(
        self, req: Request, ref: RunRef, inner: Handler, active: ModelStep
    ) -> Response | StreamResponse:
        tracker = self.tracker
        try:
            result = await inner(req)
        except BraceError as exc:
            tracker.end(active, req, error=exc, tool_calls=None, answer=None, cost=None)
            raise
        except BaseException:
            tracker.end(
                active,
                req,
                error=None,
                tool_calls=None,
                answer=None,
                cost=None,
                error_class="client_disconnected",
            )
            raise
        if isinstance(result, Response):
            answer = _message(result)
            tracker.end(
                active,
                req,
                error=None,
                tool_calls=_json_calls(answer),
                answer=answer,
                cost=self._cost(req, result),
                usage=_usage(result),
            )
            return result
        return self._watch(req, active, result)

    async def _maybe_start(self, req: Request, inner: Handler) -> Response | StreamResponse:
        """A request with tools that names and continues no run: if its answer asks for
        tool calls, an agent loop has started — it becomes the first step of a new run."""
        tracker = self.tracker
        started = tracker.now()
        result = await inner(req)
        if isinstance(result, Response):
            answer = _message(result)
            calls = _json_calls(answer)
            if calls:
                ref = self._new_ref(req)
                req.state.run = ref
                active = tracker.begin(req, ref, started_at=started)
                tracker.end(
                    active,
                    req,
                    error=None,
                    tool_calls=calls,
                    answer=answer,
                    cost=self._cost(req, result),
                    usage=_usage(result),
                )
            return result
        return self._watch(req, None, result, started)

    def _new_ref(self, req: Request) -> RunRef:
        self._seq += 1
        owner = req.state.owner or "local"
        return RunRef(f"run-{self._prefix}{self._seq:x}", owner, "conversation")

    def _watch(
        self,
        req: Request,
        active: ModelStep | None,
        upstream: StreamResponse,
        started: float | None = None,
    ) -> StreamResponse:
        """Relay a stream unchanged, reading its tool-call deltas; close the step when
        it ends (a stream that started no run starts one if it asked for tool calls)."""
        calls = _StreamCalls()
        outcome: dict[str, Any] = {"error": None, "done": False}

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for frame in upstream.chunks:
                    if _TOOL_CALLS in frame:
                        calls.feed(frame)
                    yield frame
                outcome["done"] = True
            except BraceError as exc:
                outcome["error"] = exc
                raise

        ended = False

        async def close() -> None:
            nonlocal ended
            try:
                await upstream.aclose()
            finally:
                if not ended:
                    ended = True
                    self._stream_ended(req, active, calls, outcome, started)

        return StreamResponse(
            relay(), headers=upstream.headers, close=close, upstream=upstream.upstream
        )

    def _stream_ended(
        self,
        req: Request,
        active: ModelStep | None,
        calls: _StreamCalls,
        outcome: dict[str, Any],
        started: float | None,
    ) -> None:
        tracker = self.tracker
        error = outcome["error"] or req.state.stream_error
        tool_calls = calls.result()
        answer = calls.message(tool_calls) if tool_calls else None
        if active is None:
            if error is not None or not tool_calls or not outcome["done"]:
                return
            ref = self._new_ref(req)
            req.state.run = ref
            active = tracker.begin(req, ref, started_at=started)
        if error is not None:
            tracker.end(active, req, error=error, tool_calls=None, answer=None, cost=None)
            return
        if not outcome["done"]:
            tracker.end(
                active,
                req,
                error=None,
                tool_calls=None,
                answer=None,
                cost=self._cost(req, None),
                error_class="client_disconnected",
            )
            return
        tracker.end(
            active,
            req,
            error=None,
            tool_calls=tool_calls,
            answer=answer,
            cost=self._cost(req, None),
        )


def _message(result: Response) -> dict[str, Any] | None:
    """The answer's first choice's message (what a client appends to its history)."""
    try:
        body = result.json()
    except orjson.JSONDecodeError:
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    return message if isinstance(message, dict) else None


def _usage(result: Response) -> Any:
    try:
        return result.json().get("usage")
    except orjson.JSONDecodeError:
        return None


def _json_calls(message: dict[str, Any] | None) -> list[ToolCall]:
    if message is None:
        return []
    out = []
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        args = fn.get("arguments")
        out.append(
            ToolCall(
                str(call.get("id") or ""),
                str(fn.get("name") or "?"),
                str(call.get("type") or "function"),
                args if isinstance(args, str) else None,
            )
        )
    return out


class _StreamCalls:
    """Tool calls assembled from a stream's ``delta.tool_calls`` (first choice)."""

    __slots__ = ("_calls", "_content")

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}
        self._content: list[str] = []

    def feed(self, frame: bytes) -> None:
        for payload in frame_payloads(frame):
            if _TOOL_CALLS not in payload:
                continue
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if not isinstance(delta, dict):
                    continue
                for part in delta.get("tool_calls") or ():
                    if not isinstance(part, dict):
                        continue
                    index = part.get("index", 0)
                    if not isinstance(index, int) or len(self._calls) > 1024:
                        continue
                    call = self._calls.setdefault(index, {"id": "", "name": "", "args": []})
                    if part.get("id"):
                        call["id"] = str(part["id"])
                    if part.get("type"):
                        call["type"] = str(part["type"])
                    fn = part.get("function")
                    if isinstance(fn, dict):
                        if fn.get("name"):
                            call["name"] += str(fn["name"])
                        if isinstance(fn.get("arguments"), str):
                            call["args"].append(fn["arguments"])

    def result(self) -> list[ToolCall]:
        return [
            ToolCall(c["id"], c["name"] or "?", c.get("type", "function"), "".join(c["args"]))
            for _, c in sorted(self._calls.items())
        ]

    def message(self, calls: list[ToolCall]) -> dict[str, Any]:
        """The assistant message a client rebuilds from the stream (for linking)."""
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": c.type,
                    "function": {"name": c.name, "arguments": c.arguments or ""},
                }
                for c in calls
            ],
        }
