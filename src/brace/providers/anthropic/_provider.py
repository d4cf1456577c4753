"""The Anthropic Messages API adapter: the innermost handler of one deployment."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import orjson

from ...config import Deployment
from ...errors import UpstreamBadRequest
from ...stack import Request, RequestState, Response, StreamResponse, sse_frame
from .._transport import USER_AGENT, client_timeout, closer, iter_sse, post, read_body
from ._request import to_anthropic
from ._response import to_openai
from ._stream import StreamTranslator

__all__ = ["ANTHROPIC_VERSION", "AnthropicProvider"]

ANTHROPIC_VERSION: Final = "2023-06-01"


class AnthropicProvider:
    """The innermost handler for one Anthropic Messages API deployment."""

    __slots__ = ("_headers", "_model", "_session", "_timeout", "_url", "deployment", "id")

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.id = deployment.id
        self._session = session
        self._model = deployment.model
        self._timeout = client_timeout(deployment.timeouts)
        self._url = f"{deployment.url}/v1/messages"
        headers = {
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            "user-agent": USER_AGENT,
        }
        if deployment.api_key is not None:
            headers["x-api-key"] = deployment.api_key.get_secret_value()
        headers.update(deployment.headers)
        self._headers = headers

    def __repr__(self) -> str:  # never shows the headers (they hold the key)
        return f"AnthropicProvider({self.id!r})"

    async def __call__(self, req: Request) -> Response | StreamResponse:
        if req.operation != "chat":
            raise UpstreamBadRequest(
                f"deployment {self.id}: the Anthropic API has no {req.operation} endpoint; "
                f"route {req.operation} requests to a model group served by another provider",
                deployment=self.id,
                code="unsupported_operation",
                status=400,
            )
        body, json_mode = to_anthropic(req.body, model=self._model, stream=req.stream)
        resp = await post(
            self._session,
            self._url,
            orjson.dumps(body),
            self._headers,
            self._timeout,
            deployment=self.id,
        )
        created = int(time.time())
        if req.stream:
            options = req.body.get("stream_options")
            translator = StreamTranslator(
                created=created,
                model=self._model,
                include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
                json_mode=json_mode,
                deployment=self.id,
            )
            return StreamResponse(
                self._relay(resp, translator, req.state),
                close=closer(resp),
                upstream=resp.headers,
            )
        raw = await read_body(resp, deployment=self.id)
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        out = to_openai(
            parsed, created=created, json_mode=json_mode, model=self._model, deployment=self.id
        )
        return Response(orjson.dumps(out), _parsed=out, upstream=resp.headers)

    async def _relay(
        self, resp: aiohttp.ClientResponse, translator: StreamTranslator, state: RequestState
    ) -> AsyncIterator[bytes]:
        try:
            async for events in iter_sse(resp, deployment=self.id):
                payloads: list[bytes] = []
                for name, data in events:
                    payloads.extend(translator.feed(name, data))
                if payloads:
                    translator.note(state)  # before the caller sees it: a cut stream counts
                    yield sse_frame(payloads)
                if translator.finished:
                    break
            translator.finish()
        finally:
            translator.note(state)
            if translator.finished:
                resp.release()
            else:
                resp.close()
