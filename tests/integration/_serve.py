"""Run ``brace mock`` instances and a gateway in a separate process for load tests.

Usage: ``python -m tests.integration._serve SPEC_JSON``.  SPEC is
``{"mocks": {name: MockConfig fields}, "gateway": config}``; in the gateway config,
the string ``{mock:NAME}`` is replaced by that mock's base URL.  Either part may be
left out: mocks alone (several gateway processes can then share them, their URLs
written into each gateway's config), or a gateway alone in front of upstreams that
run elsewhere.  Prints one JSON line ``{"gateway": URL or null, "mocks": {name: URL}}``
once everything listens, and runs until its standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
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
    gateway: Gateway | None = None
    gateway_url: str | None = None
    if spec.get("gateway") is not None:
        gateway_spec = dict(spec["gateway"])
        telemetry = dict(gateway_spec.get("telemetry") or {})
        telemetry.setdefault(
            "database", os.path.join(tempfile.mkdtemp(prefix="brace-serve-"), "brace.db")
        )
        gateway_spec["telemetry"] = telemetry
        text = json.dumps(gateway_spec)
        for name, url in urls.items():
            text = text.replace("{mock:" + name + "}", url)
        gateway = Gateway(parse_config(json.loads(text), env={}))
        port = await gateway.start(host="127.0.0.1", port=0)
        gateway_url = f"http://127.0.0.1:{port}"
    print(json.dumps({"gateway": gateway_url, "mocks": urls}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    if gateway is not None:
        await gateway.stop()
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(json.loads(sys.argv[1])))
    except ImportError:
        asyncio.run(main(json.loads(sys.argv[1])))
