"""The dashboard on a real gateway in front of ``brace mock``, with a real SQLite request
log: traffic (a failed-over request among it), then the overview, the request log, the
trace of the failed-over request, spend, and the admin key flow."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from brace.config import parse_config
from brace.gateway import Gateway
from brace.gateway.routes import admin, chat, logs, models, ui
from brace.telemetry.hub import Telemetry
from tests.browser.conftest import Tab
from tests.integration.conftest import ServerThread

ADMIN_KEY = "dashboard-test-key"
FAILOVER_ID = "failover-0001"
MESSAGES = [{"role": "user", "content": "hello"}]


def dep(name: str, mock: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "mock", "name": name, "model": "m", "base_url": f"{mock}/v1", **extra}


@dataclass
class Served:
    url: str
    gateway: Gateway


def _wired(gw: Gateway) -> bool:
    paths = {r.canonical for r in gw.app.router.resources()}
    return "/ui/{asset}" in paths and "/admin/overview" in paths


async def _start(gw: Gateway, servers: ServerThread) -> str:
    """Start ``gw``.  Until gateway/app.py wires the telemetry hub and the ``logs`` and
    ``ui`` routes, assemble the same app here from the real route modules."""
    if _wired(gw):
        port = await gw.start(host="127.0.0.1", port=0)
        return f"http://127.0.0.1:{port}"
    await gw.engine.start()
    if getattr(gw, "telemetry", None) is None:
        gw.telemetry = Telemetry(gw.config, gw.engine)  # type: ignore[attr-defined]
    await gw.telemetry.start()  # type: ignore[attr-defined]
    app = web.Application()
    chat.setup(app, gw)
    models.setup(app, gw)
    admin.setup(app, gw)
    logs.setup(app, gw)
    ui.setup(app, gw)
    models.setup_fallback(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()

    async def stop() -> None:
        await runner.cleanup()
        await gw.telemetry.aclose()  # type: ignore[attr-defined]
        await gw.engine.aclose()

    servers._cleanups.append(stop)
    return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


async def _traffic(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        tenants = {}
        for name in ("tenant-a", "tenant-b"):  # two virtual keys: two tenants
            async with session.post(
                f"{url}/admin/keys",
                json={"name": name},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ) as resp:
                assert resp.status == 201, await resp.text()
                tenants[name] = (await resp.json())["key"]

        async def call(model: str, rid: str, key: str = "tenant-a") -> int:
            key = tenants[key]
            async with session.post(
                f"{url}/v1/chat/completions",
                json={"model": model, "messages": MESSAGES, "max_tokens": 8},
                headers={"x-request-id": rid, "Authorization": f"Bearer {key}"},
            ) as resp:
                await resp.read()
                return resp.status

        # the first request meets the failing deployment first (weight), then fails over
        assert await call("chat", FAILOVER_ID) == 200
        for i in range(6):
            assert await call("mini", f"mini-{i}", key="tenant-b") == 200
        for i in range(3):
            await call("chat", f"chat-{i}")
        assert await call("broken", "broken-0") >= 500


@pytest.fixture(scope="module")
def served(servers: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    flaky = servers.mock()
    steady = servers.mock()
    db: Path = tmp_path_factory.mktemp("dashboard") / "brace.db"
    config = parse_config(
        {
            "server": {"host": "127.0.0.1", "admin_key": "${BRACE_ADMIN_KEY}"},
            "telemetry": {"database": str(db)},
            "models": {
                "chat": {
                    "deployments": [
                        dep("flaky", flaky, headers={"x-mock-fault": "503"}, weight=100),
                        dep("steady", steady, weight=0.01),
                    ]
                },
                "mini": {"deployments": [dep("mini-1", steady)]},
                "broken": {
                    "deployments": [dep("broken-1", flaky, headers={"x-mock-fault": "500"})]
                },
            },
        },
        env={"BRACE_ADMIN_KEY": ADMIN_KEY},
    )
    gw = Gateway(config)
    url = servers.call(_start(gw, servers))
    servers.call(_traffic(url))
    servers.call(gw.telemetry.store.flush())  # type: ignore[attr-defined]
    yield Served(url, gw)


@pytest.fixture
def keyed(tab: Tab, served: Served) -> Tab:
    """A tab that already holds the admin key (as if the user had typed it)."""
    tab.page.add_init_script(f"sessionStorage.setItem('brace.adminKey', {ADMIN_KEY!r})")
    return tab


def test_pages_render_with_gateway_data(keyed: Tab, served: Served) -> None:
    page = keyed.page
    page.goto(f"{served.url}/ui/")
    page.wait_for_selector("#headline")
    headline = page.inner_text("#headline")
    assert "absorbed" in headline and "surfaced" in headline, headline
    assert int(page.inner_text("#stat-requests .stat-value")) == 11
    # the charts hold the traffic: bars with a height, latency points, spend
    answered = page.eval_on_selector_all(
        'rect.bar[data-series="ok"]', "els => els.map(e => +e.dataset.value)"
    )
    assert sum(answered) == 10  # 11 requests, 1 surfaced error (the broken group)
    assert (
        page.locator('rect.bar[data-series="absorbed"], rect.bar[data-series^="absorbed:"]').count()
        >= 1
    )
    assert page.locator('circle.point[data-series="p99"]').count() >= 1
    assert page.locator("#cause-table tr[data-cause]").count() >= 2  # overloaded, server_error

    page.click('.tabs a[data-page="deployments"]')
    page.wait_for_selector('tr[data-deployment="flaky"]')
    assert page.locator('tr[data-deployment="steady"] .badge').first.inner_text() == "closed"
    assert page.locator(".limiter .badge").inner_text() == "local"

    page.click('.tabs a[data-page="spend"]')
    page.wait_for_selector("#spend-table tbody tr")
    assert set(
        page.eval_on_selector_all("#spend-table tbody tr", "e => e.map(x => x.dataset.key)")
    ) == {"chat", "mini", "broken"}
    assert keyed.errors == []


def test_request_log_filters_and_the_failed_over_trace(keyed: Tab, served: Served) -> None:
    page = keyed.page
    page.goto(f"{served.url}/ui/#/requests")
    page.wait_for_selector("#requests-table tbody tr")
    assert page.locator("#requests-table tbody tr").count() == 11

    page.fill("#f-model", "mini")
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => document.querySelectorAll('#requests-table tbody tr').length === 6"
    )
    page.fill("#f-model", "")
    page.select_option("#f-error_class", "server_error")
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => document.querySelectorAll('#requests-table tbody tr').length === 1"
    )
    assert page.get_attribute("#requests-table tbody tr", "data-request-id") == "broken-0"

    page.click("text=Clear")
    page.wait_for_function(
        "() => document.querySelectorAll('#requests-table tbody tr').length === 11"
    )
    page.fill("#f-q", FAILOVER_ID)
    page.press("#f-q", "Enter")
    page.wait_for_function(
        "() => document.querySelectorAll('#requests-table tbody tr').length === 1"
    )
    page.click(f'#requests-table a[title="{FAILOVER_ID}"]')
    page.wait_for_selector("rect.attempt")
    bars = page.eval_on_selector_all(
        "rect.attempt", "els => els.map(e => [e.dataset.deployment, e.dataset.errorClass])"
    )
    assert bars == [["flaky", "overloaded"], ["steady", ""]]
    labels = page.eval_on_selector_all(
        "svg.timeline text.label", "els => els.map(e => e.textContent)"
    )
    assert any("flaky" in t and "overloaded 503" in t for t in labels), labels
    assert "1 absorbed" in page.inner_text("#trace-facts")
    # the failover went at once to the other deployment: it waited 0 ms; the first, no retry
    waited = page.eval_on_selector_all(
        "table.attempts tbody td.waited", "els => els.map(e => e.textContent)"
    )
    assert waited == ["–", "0 ms"]
    page.screenshot(path="/tmp/brace-dashboard-trace.png")
    assert keyed.errors == []


def test_admin_key_is_asked_refused_then_accepted(tab: Tab, served: Served) -> None:
    page = tab.page
    page.goto(f"{served.url}/ui/")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    page.fill("#key-input", "wrong-key")
    page.click("#key-submit")
    page.wait_for_selector("#key-error:not([hidden])")
    assert "Wrong admin key" in page.inner_text("#key-error")
    page.screenshot(path="/tmp/brace-dashboard-key.png")
    assert dialog.is_visible()
    page.fill("#key-input", ADMIN_KEY)
    page.click("#key-submit")
    dialog.wait_for(state="hidden")
    page.wait_for_selector("#headline")
    assert int(page.inner_text("#stat-requests .stat-value")) == 11
    assert page.evaluate("() => sessionStorage.getItem('brace.adminKey')") == ADMIN_KEY
    # the only console errors are the refused (401) fetches
    assert tab.unexpected_errors("401") == []


def test_overview_screenshot(keyed: Tab, served: Served) -> None:
    page = keyed.page
    page.goto(f"{served.url}/ui/#/overview")
    page.wait_for_selector("svg.chart rect.bar")
    page.screenshot(path="/tmp/brace-dashboard-overview.png", full_page=True)
    page.goto(f"{served.url}/ui/#/deployments")
    page.wait_for_selector("table.deployments")
    page.screenshot(path="/tmp/brace-dashboard-deployments.png")
    assert keyed.errors == []
