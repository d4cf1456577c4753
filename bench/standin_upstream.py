"""A tiny OpenAI-compatible upstream, used only until ``brace mock`` is available.

``run.py --upstream standin`` uses it; published numbers always come from ``brace mock``.
It answers ``POST /v1/chat/completions`` (JSON, or SSE with ``--chunks`` chunks when
the body asks ``"stream": true``) and ``GET /healthz``.  Needs only aiohttp (+ uvloop).

    python bench/standin_upstream.py --port 4010 --chunks 20
"""

from __future__ import annotations

import argparse
import json
import time

import uvloop
from aiohttp import web

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def create_app(chunks: int) -> web.Application:
    created = int(time.time())
    answer = {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": created,
        "model": "mock-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello " * chunks},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks},
    }
    json_body = json.dumps(answer).encode()

    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        obj = {
            "id": "chatcmpl-standin",
            "object": "chat.completion.chunk",
            "created": created,
            "model": "mock-1",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": "hello "}, None) for _ in range(chunks)]
    events += [chunk({}, "stop"), b"data: [DONE]\n\n"]

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=json_body, content_type="application/json")
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)
        for event in events:
            await resp.write(event)
        await resp.write_eof()
        return resp

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4010)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    print(f"stand-in upstream listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(
        create_app(args.chunks),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        handler_cancellation=True,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
