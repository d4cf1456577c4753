"""The dashboard against a fake admin API with exact fixture data (``_fake.py``):
charts drawn from the numbers, filters, search, paging, the trace view, spend."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.browser import _fake
from tests.browser.conftest import Tab
from tests.integration.conftest import ServerThread


def _serve(servers: ServerThread, **kwargs: object) -> str:
    async def build() -> web.Application:
        return _fake.create_app(**kwargs)  # type: ignore[arg-type]

    return servers.serve_app(servers.call(build()))


@pytest.fixture(scope="module")
def url(servers: ServerThread) -> str:
    return _serve(servers)


@pytest.fixture(scope="module")
def split_url(servers: ServerThread) -> str:
    return _serve(servers, split=True)


def _bars(tab: Tab, selector: str) -> list[dict[str, str]]:
    result: list[dict[str, str]] = tab.page.eval_on_selector_all(
        selector,
        "els => els.map(e => ({series: e.dataset.series, t: e.dataset.t, value: e.dataset.value,"
        " height: e.getAttribute('height'), y: e.getAttribute('y')}))",
    )
    return result


def test_every_page_renders_without_console_errors(tab: Tab, url: str) -> None:
    page = tab.page
    page.goto(f"{url}/ui")  # redirected to /ui/
    assert page.url.endswith("/ui/")
    page.wait_for_selector("#headline")
    for name, ready in [
        ("deployments", "table.deployments"),
        ("requests", "#requests-table tbody tr"),
        ("requests/req-0007", "rect.attempt"),
        ("spend", "#spend-table tbody tr"),
        ("overview", "#headline"),
    ]:
        if "/" in name:
            page.goto(f"{url}/ui/#/{name}")
        else:
            page.click(f'.tabs a[data-page="{name}"]')
        page.wait_for_selector(ready)
        assert page.locator("#page-error").count() == 0, name
    assert page.get_attribute('.tabs a[data-page="overview"]', "aria-current") == "page"
    assert tab.errors == []


def test_overview_charts_are_drawn_from_the_data(tab: Tab, url: str) -> None:
    page = tab.page
    page.goto(f"{url}/ui/#/overview")
    page.wait_for_selector("#headline")
    assert page.inner_text("#headline") == (
        "57 failures absorbed, 3 surfaced to clients. Most were rate limited (88.3%)."
    )
    assert page.inner_text("#stat-requests .stat-value") == "305"
    # traffic: one answered bar per bucket with requests; their values are requests - surfaced
    answered = _bars(tab, 'svg.chart rect.bar[data-series="ok"]')
    expected = sorted(r - sum(s.values()) for _, r, s, *_ in _fake._TRAFFIC)
    assert sorted(float(b["value"]) for b in answered) == expected
    assert all(float(b["height"]) > 0 for b in answered)
    # failures by cause (the log gives only the combined count per cause)
    causes = _bars(tab, 'svg.chart rect.bar[data-series^="cause:"]')
    assert sum(float(b["value"]) for b in causes) == 60
    assert {b["series"] for b in causes} == {
        "cause:rate_limited",
        "cause:server_error",
        "cause:timeout",
    }
    # absorbed vs surfaced: absorbed drawn below the zero line
    absorbed = _bars(tab, 'rect.bar[data-series="absorbed"]')
    surfaced = _bars(tab, 'rect.bar[data-series="surfaced"]')
    assert sum(float(b["value"]) for b in absorbed) == 57
    assert sum(float(b["value"]) for b in surfaced) == 3
    assert min(float(b["y"]) for b in absorbed) > max(float(b["y"]) for b in surfaced)
    # latency: a point per bucket with samples, for p50 and p99
    assert page.locator('circle.point[data-series="p50"]').count() == len(_fake._TRAFFIC)
    assert page.locator('circle.point[data-series="p99"]').count() == len(_fake._TRAFFIC)
    assert page.locator("polyline.line").count() == 2
    # spend per bucket
    spend = _bars(tab, 'rect.bar[data-series="cost"]')
    assert sorted(float(b["value"]) for b in spend) == sorted(c for *_, c in _fake._TRAFFIC)
    # axes are labelled
    assert page.locator("svg.chart text.tick").count() > 20
    assert page.locator("svg.chart text.axis-title", has_text="requests").count() == 1
    assert page.locator("#cause-table tbody tr").count() == 3
    assert tab.errors == []


def test_overview_splits_causes_into_absorbed_and_surfaced(tab: Tab, split_url: str) -> None:
    page = tab.page
    page.goto(f"{split_url}/ui/#/overview")
    page.wait_for_selector("#headline")
    absorbed = _bars(tab, 'rect.bar[data-series^="absorbed:"]')
    surfaced = _bars(tab, 'rect.bar[data-series^="surfaced:"]')
    total = lambda bars, s: sum(float(b["value"]) for b in bars if b["series"] == s)  # noqa: E731
    assert total(absorbed, "absorbed:rate_limited") == 52
    assert total(surfaced, "surfaced:rate_limited") == 1
    assert total(absorbed, "absorbed:server_error") == 4
    assert total(surfaced, "surfaced:server_error") == 1
    # one chart does it all: no separate absorbed-vs-surfaced chart
    assert page.locator('rect.bar[data-series="absorbed"]').count() == 0
    row = page.locator('#cause-table tr[data-cause="rate_limited"] td')
    assert row.all_inner_texts()[:2] == ["52", "1"]
    assert tab.errors == []


def test_overview_refreshes_every_five_seconds(tab: Tab, url: str) -> None:
    page = tab.page
    hits: list[str] = []
    page.on("request", lambda r: hits.append(r.url) if "/admin/overview" in r.url else None)
    page.clock.install()  # a fake clock for the page's timers: no 5 s sleep here
    page.goto(f"{url}/ui/#/overview")
    page.wait_for_selector("#headline")
    assert len(hits) == 1
    page.clock.run_for(4000)
    page.wait_for_timeout(200)
    assert len(hits) == 1
    page.clock.run_for(1100)
    page.wait_for_function("() => document.querySelector('#headline') !== null")
    page.wait_for_timeout(300)
    assert len(hits) == 2
    page.click('.tabs a[data-page="spend"]')  # leaving the page stops its refresh
    page.wait_for_selector("#spend-table")
    page.clock.run_for(10_000)
    page.wait_for_timeout(200)
    assert len(hits) == 2


def test_deployments_show_health_headroom_queue_and_limiter(tab: Tab, url: str) -> None:
    page = tab.page
    page.goto(f"{url}/ui/#/deployments")
    page.wait_for_selector("table.deployments")
    a = page.locator('tr[data-deployment="chat-a"]')
    assert "open" in a.locator(".badge.bad").inner_text()
    assert "retry in" in a.inner_text()
    assert "450 / 500" in a.inner_text()  # effective vs learned rpm
    assert "3 / 4" in a.inner_text()  # in flight / concurrency limit
    assert page.locator('tr[data-deployment="chat-b"] .badge.ok').inner_text() == "closed"
    assert page.locator('tr[data-deployment="backup-1"] .badge.warn').inner_text() == "half-open"
    assert page.inner_text('.admission[data-group="chat"] .queue-depth') == "5"
    assert page.locator(".limiter .badge.warn").inner_text() == "degraded"
    assert tab.errors == []


def _rows(tab: Tab) -> list[str]:
    ids: list[str] = tab.page.eval_on_selector_all(
        "#requests-table tbody tr", "els => els.map(e => e.dataset.requestId)"
    )
    return ids


def test_request_log_filters_search_paging_and_trace(tab: Tab, url: str) -> None:
    page = tab.page
    page.goto(f"{url}/ui/#/requests")
    page.wait_for_selector("#requests-table tbody tr")
    assert len(_rows(tab)) == 50
    page.click("#load-more")
    page.wait_for_function(
        "() => document.querySelectorAll('#requests-table tbody tr').length === 75"
    )
    assert page.locator("#load-more").is_hidden()

    page.fill("#f-model", "embed")
    page.click("button[type=submit]")
    page.wait_for_function("() => location.hash.includes('model=embed')")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#requests-table tbody tr')].length === 19"
    )
    assert all(r in {f"req-{i:04d}" for i in range(2, 75, 4)} for r in _rows(tab))

    page.fill("#f-model", "")
    page.select_option("#f-status", "error")
    page.click("button[type=submit]")
    page.wait_for_function("() => location.hash.includes('status=error')")
    page.wait_for_function(
        "() => document.querySelectorAll('#requests-table tbody tr').length === 8"
    )
    assert page.locator("#requests-table tbody tr.failed").count() == 8

    page.click("text=Clear")
    page.wait_for_function(
        "() => document.querySelectorAll('#requests-table tbody tr').length === 50"
    )
    page.fill("#f-q", "req-0007")
    page.press("#f-q", "Enter")
    page.wait_for_function(
        "() => document.querySelectorAll('#requests-table tbody tr').length === 1"
    )
    assert _rows(tab) == ["req-0007"]

    page.click('#requests-table tbody tr[data-request-id="req-0007"] td:nth-child(3)')
    page.wait_for_selector("rect.attempt")
    bars = page.eval_on_selector_all(
        "rect.attempt",
        "els => els.map(e => [e.dataset.deployment, e.dataset.errorClass, e.dataset.fallback,"
        " +e.getAttribute('x'), +e.getAttribute('width')])",
    )
    assert [b[:3] for b in bars] == [["chat-a", "overloaded", "0"], ["backup-1", "", "1"]]
    assert bars[1][3] > bars[0][3] + bars[0][4]  # the second attempt starts after the first
    assert page.locator("text=↪ fallback to backup").count() == 1
    facts = page.inner_text("#trace-facts")
    assert "107 / 27" in facts and "$0.00080" in facts and "200 ms" in facts
    page.click("text=← Back to requests")
    page.wait_for_selector("#requests-table tbody tr")
    assert page.input_value("#f-q") == "req-0007"
    assert tab.errors == []


def test_unknown_request_says_so(tab: Tab, url: str) -> None:
    page = tab.page
    page.goto(f"{url}/ui/#/requests/nope")
    page.wait_for_selector("text=No request nope in the log")
    # the 404 of the record is the only console message
    assert tab.unexpected_errors("404") == []


def test_spend_by_model_key_and_day(tab: Tab, url: str) -> None:
    page = tab.page
    page.goto(f"{url}/ui/#/spend")
    page.wait_for_selector("#spend-table tbody tr")
    assert page.locator("#spend-table tbody tr").count() == 3
    assert page.locator("svg.chart rect.bar").count() == 3
    assert page.inner_text("#spend-table tfoot").split("\t")[1] == "75"
    page.get_by_role("radio", name="Key", exact=True).check()
    page.wait_for_function("() => document.querySelectorAll('#spend-table tbody tr').length === 2")
    assert set(
        page.eval_on_selector_all("#spend-table tbody tr", "e => e.map(x => x.dataset.key)")
    ) == {
        "tenant-a",
        "tenant-b",
    }
    page.get_by_role("radio", name="Day", exact=True).check()
    page.wait_for_selector("#spend-table tbody tr")
    assert (
        page.locator("svg.chart rect.bar").count() == page.locator("#spend-table tbody tr").count()
    )
    assert tab.errors == []
