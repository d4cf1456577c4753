"""The bare relay: the ceiling for any Python gateway on Brace's stack.

aiohttp server on uvloop (access log off, ``handler_cancellation=True``) and one
shared aiohttp ``ClientSession`` with an unlimited connector.  ``POST
/v1/chat/completions`` is forwarded byte for byte; the answer is relayed whole
(JSON) or chunk by chunk as it arrives (SSE: ``iter_any`` → ``write``).  Nothing is
parsed.  ``GET /readyz`` answers 200 once listening.

    python bench/relay.py --port 4001 --upstream http://127.0.0.1:4010/v1
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web

_FORWARD = ("Content-Type", "Authorization")
_RELAY = ("Content-Type", "Cache-Control")


def create_app(upstream: str) -> web.Application:
    url = upstream.rstrip("/") + "/chat/completions"
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            app[session_key] = session
            yield

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: request.headers[k] for k in _FORWARD if k in request.headers}
        session = request.app[session_key]
        async with session.post(url, data=body, headers=headers) as upstream_resp:
            out_headers = {
                k: upstream_resp.headers[k] for k in _RELAY if k in upstream_resp.headers
            }
            if upstream_resp.content_type != "text/event-stream":
                data = await upstream_resp.read()
                return web.Response(body=data, status=upstream_resp.status, headers=out_headers)
            resp = web.StreamResponse(status=upstream_resp.status, headers=out_headers)
            await resp.prepare(request)
            async for chunk in upstream_resp.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    async def readyz(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b'{"status":"ready"}', content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/readyz", readyz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4001)
    parser.add_argument("--upstream", default="http://127.0.0.1:4010/v1")
    args = parser.parse_args()
    print(f"bare relay listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        handler_cancellation=True,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
