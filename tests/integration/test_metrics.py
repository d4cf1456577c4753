"""``GET /metrics`` on a real gateway in front of ``brace mock``, over loopback HTTP."""

from __future__ import annotations

from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from brace.config import BraceConfig, parse_config
from brace.gateway import Gateway
from brace.gateway.routes import metrics as metrics_route
from brace.telemetry.hub import Telemetry

from .conftest import ServerThread

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
Samples = list[tuple[str, dict[str, str], float]]


def dep(name: str, mock: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "mock", "name": name, "model": "m", "base_url": f"{mock}/v1", **extra}


def serve(servers: ServerThread, config: BraceConfig | dict[str, Any]) -> tuple[Gateway, str, str]:
    """A gateway, its URL and the URL serving its ``/metrics``.

    Once ``Gateway`` builds its :class:`Telemetry` and mounts the metrics route, the
    gateway serves ``/metrics`` itself; until then the test attaches both here.
    """
    gw, url = servers.gateway(config)
    if getattr(gw, "telemetry", None) is not None:
        return gw, url, url
    telemetry = Telemetry(gw.config, gw.engine)
    servers.call(telemetry.start())
    cast(Any, gw).telemetry = telemetry
    app = web.Application()
    metrics_route.setup(app, gw)
    return gw, url, servers.serve_app(app)


def parse(text: str) -> Samples:
    return [
        (s.name, dict(s.labels), s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [v for n, lab, v in samples if n == name and lab == labels]
    assert len(found) == 1, (name, labels, [(n, lab) for n, lab, _ in samples if n == name])
    return found[0]


async def chat(s: aiohttp.ClientSession, url: str, model: str, *, stream: bool = False) -> int:
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    async with s.post(f"{url}/v1/chat/completions", json=body) as r:
        await r.read()
        return r.status


async def test_metrics_show_traffic_and_the_absorbed_503(servers: ServerThread) -> None:
    bad = servers.mock(retry_after_seconds=0.01)
    good = servers.mock()
    faulty = {"x-mock-fault": "503"}
    _, url, metrics_url = serve(
        servers,
        {
            "telemetry": {"enabled": False},  # no request log, no tracer: metrics only
            "models": {
                "gpt": {
                    "deployments": [dep("bad", bad, headers=faulty)],
                    "fallbacks": [{"to": "backup"}],
                    "retry": {"max_attempts": 1},
                },
                "backup": {"deployments": [dep("good", good)]},
                "down": {
                    "deployments": [dep("down", bad, headers=faulty)],
                    "retry": {"max_attempts": 2, "backoff_base": 0.01},
                },
            },
        },
    )
    async with aiohttp.ClientSession() as s:
        assert [await chat(s, url, "gpt") for _ in range(3)] == [200, 200, 200]
        assert await chat(s, url, "gpt", stream=True) == 200
        assert await chat(s, url, "down") >= 500
        async with s.get(f"{metrics_url}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()

    samples = parse(text)
    ok = {"model": "gpt", "group": "backup", "deployment": "good", "status": "200"}
    assert value(samples, "brace_requests_total", **ok, error_class="none", stream="false") == 3
    assert value(samples, "brace_requests_total", **ok, error_class="none", stream="true") == 1

    # every request to gpt failed once on "bad" (a 503) and the caller never saw it
    failed = [
        (lab["error_class"], lab["status"], v)
        for n, lab, v in samples
        if n == "brace_attempts_total" and lab["deployment"] == "bad"
    ]
    assert len(failed) == 1
    cls, status, attempts = failed[0]
    assert (cls, status, attempts) == ("overloaded", "503", 4)
    absorbed = {"model": "gpt", "error_class": cls, "outcome": "absorbed"}
    assert value(samples, "brace_errors_total", **absorbed) == 4
    hop = {"from_model": "gpt", "to_model": "backup", "error_class": cls}
    assert value(samples, "brace_fallbacks_total", **hop) == 4

    # "down" has nowhere to go: one retry, then the caller sees the error
    surfaced = [
        (lab["model"], lab["error_class"], v)
        for n, lab, v in samples
        if n == "brace_errors_total" and lab["outcome"] == "surfaced"
    ]
    assert surfaced == [("down", cls, 1)]
    down = {"group": "down", "deployment": "down"}
    assert value(samples, "brace_attempts_total", **down, error_class=cls, status="503") == 2
    assert value(samples, "brace_retries_total", **down, error_class=cls) == 1

    good_labels = {"model": "gpt", "group": "backup", "deployment": "good"}
    assert value(samples, "brace_time_to_first_token_seconds_count", **good_labels) == 1
    assert (
        value(samples, "brace_request_duration_seconds_count", **good_labels, stream="false") == 3
    )
    assert value(samples, "brace_tokens_total", **good_labels, type="input") > 0

    # state read at scrape time
    states = {lab["deployment"]: v for n, lab, v in samples if n == "brace_breaker_state"}
    assert set(states) == {"bad", "good", "down"} and set(states.values()) <= {0.0, 1.0, 2.0}
    assert value(samples, "brace_queue_depth", model="gpt") == 0
    assert value(samples, "brace_limiter_mode", backend="local", mode="local") == 1
    headroom = {"group": "backup", "deployment": "good"}
    assert value(samples, "brace_limiter_concurrency_limit", **headroom) > 0

    # nothing identifying a request or a caller
    assert "req_" not in text and "tenant" not in text and "hello" not in text


async def test_metrics_need_the_admin_key_when_one_is_set(servers: ServerThread) -> None:
    mock = servers.mock()
    config = parse_config(
        {
            "server": {"admin_key": "${BRACE_ADMIN_KEY}"},
            "telemetry": {"enabled": False},
            "models": {"gpt": {"deployments": [dep("a", mock)]}},
        },
        env={"BRACE_ADMIN_KEY": "s3cret-admin"},
    )
    _, _, metrics_url = serve(servers, config)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{metrics_url}/metrics") as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "invalid_admin_key"
        headers = {"Authorization": "Bearer s3cret-admin"}
        async with s.get(f"{metrics_url}/metrics", headers=headers) as r:
            assert r.status == 200
            text = await r.text()
    assert "s3cret" not in text
    assert any(n == "brace_limiter_mode" for n, _, _ in parse(text))


@pytest.mark.parametrize("header", [None, "Bearer wrong"])
async def test_metrics_open_without_admin_key_on_loopback(
    servers: ServerThread, header: str | None
) -> None:
    mock = servers.mock()
    _, _, metrics_url = serve(
        servers,
        {"telemetry": {"enabled": False}, "models": {"gpt": {"deployments": [dep("a", mock)]}}},
    )
    headers = {"Authorization": header} if header else {}
    async with aiohttp.ClientSession() as s, s.get(f"{metrics_url}/metrics", headers=headers) as r:
        assert r.status == 200
