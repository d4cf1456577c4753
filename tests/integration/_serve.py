"""Run ``brace mock`` instances and a gateway in a separate process for load tests.

Usage: ``python -m tests.integration._serve SPEC_JSON``.  SPEC is
``{"mocks": {name: MockConfig fields}, "gateway": config}``; in the gateway config,
the string ``{mock:NAME}`` is replaced by that mock's base URL.  Prints one JSON
line ``{"gateway": URL, "mocks": {name: URL}}`` once everything listens, and runs
until its standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiohttp import web

from brace.config import parse_config
from brace.gateway import Gateway
from brace.mock import MockConfig, create_app


async def main(spec: dict[str, Any]) -> None:
    runners: list[web.AppRunner] = []
    urls: dict[str, str] = {}
    for name, cfg in spec.get("mocks", {}).items():
        runner = web.AppRunner(
            create_app(MockConfig(**cfg)), access_log=None, handler_cancellation=True
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        urls[name] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    text = json.dumps(spec["gateway"])
    for name, url in urls.items():
        text = text.replace("{mock:" + name + "}", url)
    gateway = Gateway(parse_config(json.loads(text), env={}))
    port = await gateway.start(host="127.0.0.1", port=0)
    print(json.dumps({"gateway": f"http://127.0.0.1:{port}", "mocks": urls}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await gateway.stop()
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(json.loads(sys.argv[1])))
    except ImportError:
        asyncio.run(main(json.loads(sys.argv[1])))
