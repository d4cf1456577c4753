"""The OpenAI-compatible wire adapter: OpenAI, Azure OpenAI, vLLM, Ollama,
llama.cpp, LM Studio, Groq, Together, DeepSeek, Mistral, OpenRouter, ``brace mock``.

Bodies are passed through as the caller sent them (unknown fields included), with
``model`` set to the deployment's upstream model.  JSON answers are relayed as the
upstream's bytes after a cheap shape check; streams are relayed event by event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from ..config import Deployment
from ..errors import MalformedResponse
from ..stack import Request, RequestState, Response, StreamResponse
from ._classify import classify_failure
from ._sse import parse_block
from ._transport import USER_AGENT, client_timeout, closer, post, read_body, transport_error

__all__ = ["OpenAIProvider"]


class OpenAIProvider:
    """The innermost handler for one OpenAI-compatible deployment."""

    __slots__ = (
        "_chat_url",
        "_emb_url",
        "_headers",
        "_json_timeout",
        "_model",
        "_session",
        "_timeout",
        "deployment",
        "id",
    )

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.id = deployment.id
        self._session = session
        self._model = deployment.model
        self._timeout = client_timeout(deployment.timeouts)
        self._json_timeout = client_timeout(deployment.timeouts, stream=False)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        headers.update(deployment.headers)
        key = deployment.api_key.get_secret_value() if deployment.api_key else None
        base = deployment.url
        if deployment.preset.azure:
            name = deployment.azure_deployment or deployment.model
            query = f"?api-version={deployment.api_version}"
            self._chat_url = f"{base}/openai/deployments/{name}/chat/completions{query}"
            self._emb_url = f"{base}/openai/deployments/{name}/embeddings{query}"
            if key:
                headers["api-key"] = key
        else:
            self._chat_url = f"{base}/chat/completions"
            self._emb_url = f"{base}/embeddings"
            if key:
                headers["Authorization"] = f"Bearer {key}"
        self._headers = headers

    def __repr__(self) -> str:  # never shows the headers (they hold the key)
        return f"OpenAIProvider({self.id!r})"

    async def __call__(self, req: Request) -> Response | StreamResponse:
        body = req.body.copy()
        body["model"] = self._model
        strip_usage = False
        if req.stream and req.operation == "chat":
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage")):
                # ask for usage anyway (cost, TPM settling); the caller does not see it
                body["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
                strip_usage = True
        url = self._chat_url if req.operation == "chat" else self._emb_url
        timeout = self._timeout if req.stream else self._json_timeout
        resp = await post(
            self._session, url, orjson.dumps(body), self._headers, timeout, deployment=self.id
        )
        if req.stream:
            return StreamResponse(
                self._relay(resp, req.state, strip_usage),
                close=closer(resp),
                upstream=resp.headers,
            )
        raw = await read_body(resp, deployment=self.id)
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        key = "choices" if req.operation == "chat" else "data"
        if not isinstance(parsed, dict) or key not in parsed:
            raise MalformedResponse(
                f"deployment {self.id}: the upstream answered 200 with a body that is not an "
                f"OpenAI {req.operation} response",
                deployment=self.id,
            )
        return Response(raw, _parsed=parsed, upstream=resp.headers)

    async def _relay(
        self, resp: aiohttp.ClientResponse, state: RequestState, strip_usage: bool
    ) -> AsyncIterator[bytes]:
        """Relay the upstream's SSE as frames: every complete event of a network read
        in one frame, the upstream's own bytes when they need no change."""
        finished = False
        buf = b""
        content = resp.content
        try:
            while True:
                try:
                    piece = await content.readany()
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    raise transport_error(exc, deployment=self.id, phase="stall") from exc
                if not piece:
                    break
                buf = buf + piece if buf else piece
                if b"\r" in buf:
                    buf = buf.replace(b"\r\n", b"\n")
                end = buf.rfind(b"\n\n")
                if end < 0:
                    continue
                block, buf = buf[: end + 2], buf[end + 2 :]
                frame, done = self._frame(block)
                frame, finish = _note_usage(frame, state, strip_usage)
                finished = finished or finish
                if frame:
                    yield frame
                if done:
                    finished = True
                    return
            if not finished:
                raise MalformedResponse(
                    f"deployment {self.id}: the upstream stream ended before it finished "
                    "(no finish_reason, no [DONE])",
                    deployment=self.id,
                )
        finally:
            if finished:
                resp.release()
            else:
                resp.close()

    def _frame(self, block: bytes) -> tuple[bytes, bool]:
        """Check a block of complete events: (the frame to relay, [DONE] seen)."""
        fast = _clean_frame(block)
        if fast is not None:
            return fast
        events = block.split(b"\n\n")
        events.pop()  # the block ends with a blank line
        changed = done = False
        kept: list[bytes] = []
        for ev in events:
            if ev.startswith(b"data: {") and ev.endswith(b"}") and b"\n" not in ev:
                if ev.startswith(b'data: {"error"'):
                    raise classify_failure(500, ev[6:], {}, deployment=self.id)
                kept.append(ev)
                continue
            changed = True
            parsed = parse_block(ev)
            if parsed is None:
                continue  # a comment or keep-alive
            data = parsed[1]
            if data == b"[DONE]":
                done = True
                break
            if not (data.startswith(b"{") and data.endswith(b"}")):
                raise MalformedResponse(
                    f"deployment {self.id}: the upstream sent a stream event that is not JSON",
                    deployment=self.id,
                )
            if data.startswith(b'{"error"'):
                raise classify_failure(500, data, {}, deployment=self.id)
            kept.append(b"data: " + data)
        if not changed:
            return block, False
        return (b"\n\n".join(kept) + b"\n\n" if kept else b""), done


_DONE_EVENT = b"data: [DONE]\n\n"
_USAGE = b'"usage":{'
_FINISH = b'"finish_reason":"'


def _clean_frame(block: bytes) -> tuple[bytes, bool] | None:
    """The common case at the cost of four scans of the whole block: every event one
    ``data: {...}`` line, then maybe ``data: [DONE]`` — relayed as it is (without the
    ``[DONE]``, which the gateway writes itself).  ``None``: anything else (comments,
    ``event:`` or multi-line fields, CRs, an error event, ``[DONE]`` mid-block: every
    boundary must be ``}\\n\\ndata: {``), which :meth:`OpenAIProvider._frame` checks event
    by event."""
    done = block.endswith(_DONE_EVENT)
    body = block[: -len(_DONE_EVENT)] if done else block
    n = body.count(b"\n\n")
    if (
        n
        and body.startswith(b"data: {")
        and body.endswith(b"}\n\n")
        and body.count(b"\n") == 2 * n  # no newline but the blank lines between events
        and body.count(b"}\n\ndata: {") == n - 1  # so every event is one data: {...} line
        and b'data: {"error"' not in body
    ):
        return body, done
    return None


def _note_usage(frame: bytes, state: RequestState, strip_usage: bool) -> tuple[bytes, bool]:
    """Record usage, finish reasons and the model from the events that carry them;
    drop the usage-only event Brace asked for on the caller's behalf.  Returns the
    frame and whether it holds a finish reason.  Only the events holding a marker are
    looked at (found by searching the frame, not by splitting it)."""
    starts: set[int] = set()
    finish = False
    for marker in (_USAGE, _FINISH):
        i = frame.find(marker)
        while i >= 0:
            finish = finish or marker is _FINISH
            start = frame.rfind(b"\n\n", 0, i)
            starts.add(0 if start < 0 else start + 2)
            i = frame.find(marker, i + 1)
    if not starts:
        return frame, False
    dropped: list[tuple[int, int]] = []
    for start in sorted(starts):
        end = frame.find(b"\n\n", start)
        end = len(frame) if end < 0 else end
        try:
            chunk = orjson.loads(frame[start + 6 : end])
        except orjson.JSONDecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            state.usage = usage
            model, rid = chunk.get("model"), chunk.get("id")
            state.response_model = model if isinstance(model, str) else None
            state.response_id = rid if isinstance(rid, str) else None
        for choice in chunk.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str):
                if state.finish_reasons is None:
                    state.finish_reasons = []
                state.finish_reasons.append(reason)
        if strip_usage and isinstance(usage, dict) and not chunk.get("choices"):
            dropped.append((start, min(end + 2, len(frame))))
    if not dropped:
        return frame, finish
    pieces = []
    last = 0
    for start, end in dropped:
        pieces.append(frame[last:start])
        last = end
    pieces.append(frame[last:])
    return b"".join(pieces), finish
