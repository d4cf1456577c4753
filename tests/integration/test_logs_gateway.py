"""End to end: a real gateway in front of ``brace mock`` records each request in its
SQLite request log, the admin API reads it back, and stopping the gateway flushes
the writer."""

from __future__ import annotations

import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from brace.gateway import Gateway
from brace.gateway.routes import logs

from .conftest import ServerThread

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def admin_url(servers: ServerThread, gw: Gateway, url: str) -> str:
    """Where the gateway's request-log routes answer: the gateway itself once
    ``gateway/app.py`` mounts them, else a side app over the same gateway."""
    if any(
        r.resource and r.resource.canonical == "/admin/requests" for r in gw.app.router.routes()
    ):
        return url
    app = web.Application()
    logs.setup(app, gw)
    return servers.serve_app(app)


def call(
    url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Any:
    data = orjson.dumps(body) if body is not None else None
    req = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return orjson.loads(resp.read())


def test_gateway_requests_land_in_the_log(servers: ServerThread, tmp_path: Path) -> None:
    mock = servers.mock()
    db = tmp_path / "gateway-log.db"
    gw, url = servers.gateway(
        {
            "telemetry": {"store": "sqlite", "database": str(db)},
            "models": {
                "gpt": {
                    "deployments": [
                        {
                            "provider": "mock",
                            "name": "gpt-a",
                            "model": "m",
                            "base_url": f"{mock}/v1",
                        }
                    ]
                }
            },
        }
    )
    if getattr(gw.telemetry, "store", None) is None:
        pytest.skip("the gateway's telemetry did not open a store")
    admin = admin_url(servers, gw, url)
    answer = call(
        f"{url}/v1/chat/completions",
        {"model": "gpt", "messages": [{"role": "user", "content": "hello log"}]},
        {
            "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
            "Authorization": "Bearer sk-caller-secret",
        },
    )
    assert answer["choices"]

    deadline = time.monotonic() + 5
    while True:
        rows = call(f"{admin}/admin/requests?model=gpt")["data"]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(rows) == 1
    row = rows[0]
    assert row["trace_id"] == TRACE and row["parent_span_id"] == "00f067aa0ba902b7"
    assert row["status"] == 200 and row["deployment"] == "gpt-a" and row["error_class"] is None
    assert row["attempts_count"] == 1 and row["input_tokens"]

    one = call(f"{admin}/admin/requests/{row['request_id']}")
    assert [a["deployment"] for a in one["attempts"]] == ["gpt-a"]
    assert one["content"] is None  # capture_content is off
    assert [r["request_id"] for r in call(f"{admin}/admin/traces/{TRACE}")["data"]] == [
        row["request_id"]
    ]
    stats = call(f"{admin}/admin/store")
    assert stats["written"] == 1 and stats["dropped"] == 0

    # a second request, then a stop: the writer flushes before the gateway is gone
    call(
        f"{url}/v1/chat/completions",
        {"model": "gpt", "messages": [{"role": "user", "content": "again"}]},
    )
    servers.call(gw.stop())
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 2
    finally:
        conn.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("gateway-log.db*"))
    assert b"gpt-a" in stored
    assert b"sk-caller-secret" not in stored and b"hello log" not in stored
