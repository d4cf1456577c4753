"""The embedded default: a gateway in front of a built-in simulated upstream.

``brace serve --demo`` needs no key, no file and no external service: it starts
``brace mock`` inside the same process on a free loopback port and serves a few
model groups pointed at it, so that ``curl`` and the ``openai`` SDK get answers at
once.
"""

from __future__ import annotations

from aiohttp import web

from .config import BraceConfig, parse_config

__all__ = ["demo_config", "start_demo_upstream"]


def demo_config(upstream_port: int, *, host: str = "127.0.0.1", port: int = 4000) -> BraceConfig:
    openai_base = f"http://127.0.0.1:{upstream_port}/v1"
    anthropic_base = f"http://127.0.0.1:{upstream_port}"
    raw = {
        "server": {"host": host, "port": port},
        "models": {
            "demo": {
                "description": "two simulated OpenAI-compatible deployments, balanced",
                "deployments": [
                    {
                        "provider": "mock",
                        "name": "mock-a",
                        "model": "mock-1",
                        "base_url": openai_base,
                    },
                    {
                        "provider": "mock",
                        "name": "mock-b",
                        "model": "mock-1",
                        "base_url": openai_base,
                    },
                ],
            },
            "gpt-4o-mini": {
                "deployments": [
                    {"provider": "mock", "model": "gpt-4o-mini", "base_url": openai_base}
                ]
            },
            "claude-demo": {
                "description": "a simulated Anthropic Messages API, translated to OpenAI's shape",
                "deployments": [
                    {
                        "provider": "anthropic-mock",
                        "model": "claude-mock",
                        "base_url": anthropic_base,
                    }
                ],
            },
            "text-embedding-3-small": {
                "deployments": [
                    {"provider": "mock", "model": "text-embedding-3-small", "base_url": openai_base}
                ]
            },
        },
    }
    return parse_config(raw, source="<demo>")


async def start_demo_upstream() -> tuple[web.AppRunner, int]:
    """Serve a healthy ``brace mock`` on 127.0.0.1, on a free port."""
    from .mock import MockConfig, create_app

    runner = web.AppRunner(create_app(MockConfig()), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = getattr(site._server, "sockets", None)
    assert sockets, "the demo upstream is not listening"
    return runner, int(sockets[0].getsockname()[1])
