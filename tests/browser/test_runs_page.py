"""The dashboard's Runs page and run view in headless Chromium, against the fake admin
API's fixture runs (``_fake_runs.py``): the list shows the API's numbers, the filters
reach the API as query parameters, the waterfall's bars sit on one time axis (measured
in the browser: a later step starts further right, parallel tool calls overlap, widths
follow durations), the failing step is highlighted with its error and deployment, and
the links lead to the request log and the request's trace."""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest
from aiohttp import web

from tests.browser import _fake, _fake_runs
from tests.browser._fmt import fmt_int, fmt_sec, fmt_usd
from tests.browser.conftest import Tab
from tests.integration.conftest import ServerThread

SHOTS = "/tmp/brace-dashboard-runs"


@pytest.fixture(scope="module")
def url(servers: ServerThread) -> str:
    async def build() -> web.Application:
        return _fake.create_app()

    return servers.serve_app(servers.call(build()))


def admin(url: str, path: str, **params: Any) -> dict[str, Any]:
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    with urllib.request.urlopen(f"{url}/admin/{path}{query}") as r:
        out: dict[str, Any] = json.loads(r.read())
        return out


def boxes(tab: Tab, selector: str) -> dict[int, dict[str, float]]:
    """The page's boxes of ``selector`` by their ``data-seq``."""
    found: list[dict[str, float]] = tab.page.eval_on_selector_all(
        selector,
        "els => els.map(e => { const b = e.getBoundingClientRect();"
        " return {seq: +e.dataset.seq, x: b.left, w: b.width, right: b.right}; })",
    )
    return {int(b["seq"]): b for b in found}


def open_run(tab: Tab, url: str, run_id: str, tenant: str) -> None:
    tab.page.goto(f"{url}/ui/#/runs/{run_id}?key={tenant}")
    tab.page.wait_for_selector("#waterfall .wf-bar")


def test_runs_list_shows_the_apis_numbers(tab: Tab, url: str) -> None:
    page = tab.page
    page.goto(f"{url}/ui/")
    page.click('.tabs a[data-page="runs"]')
    page.wait_for_selector("#runs-table tbody tr")
    assert page.get_attribute('.tabs a[data-page="runs"]', "aria-current") == "page"
    api = admin(url, "runs", limit=50)
    rows = page.eval_on_selector_all("#runs-table tbody tr", "els => els.map(e => e.dataset.runId)")
    assert rows == [r["run_id"] for r in api["data"]]  # the API's order, one page
    by_id = {r["run_id"]: r for r in api["data"]}
    for run_id in (_fake_runs.COMPLETED, _fake_runs.FAILED, _fake_runs.RUNNING):
        r = by_id[run_id]
        row = page.locator(f'#runs-table tr[data-run-id="{run_id}"]')
        cells = row.locator("td")
        assert cells.nth(0).inner_text() == r["status"]
        assert row.locator(".run-agent").inner_text() == r["agent"]
        assert row.locator(".run-key").inner_text() == r["tenant"]
        steps = row.locator(".run-steps")
        assert steps.get_attribute("data-steps") == str(r["steps"])
        assert steps.inner_text().split("\n") == [
            str(r["steps"]),
            f"{r['model_steps']} model · {r['tool_steps']} tool",
        ]
        assert float(row.locator(".run-duration").get_attribute("data-value") or 0) == (
            pytest.approx(r["duration"])
        )
        assert row.locator(".run-duration").inner_text() == fmt_sec(r["duration"])
        assert row.locator(".run-cost").inner_text() == fmt_usd(r["cost_usd"])
        assert row.locator(".run-tokens").inner_text() == (
            f"{fmt_int(r['input_tokens'])} / {fmt_int(r['output_tokens'])}"
        )
    # the completed run absorbed a retry and waited: both in its row
    completed = by_id[_fake_runs.COMPLETED]
    assert completed["retries"] == 1
    retries = page.locator(f'tr[data-run-id="{_fake_runs.COMPLETED}"] .run-retries').inner_text()
    assert retries == f"1 · {fmt_sec(completed['wait_s'])}"
    # the failed run: its cause, step and deployment
    failed = by_id[_fake_runs.FAILED]
    row = page.locator(f'tr[data-run-id="{_fake_runs.FAILED}"]')
    assert "failed" in (row.get_attribute("class") or "")
    cause = row.locator(".run-failure")
    assert cause.inner_text().split("\n") == ["overloaded", "step 3 · backup-1"]
    assert cause.locator(".failure").get_attribute("title") == failed["failure_error"]

    # two ids sharing a 26-character prefix stay apart: head and tail, never the prefix
    shown = {}
    for run_id in (_fake_runs.COMPLETED, _fake_runs.FAILED):
        link = page.locator(f'tr[data-run-id="{run_id}"] a.run-id')
        assert link.get_attribute("title") == run_id
        assert link.get_attribute("aria-label") == f"Run {run_id}"
        text = link.inner_text()
        assert text.endswith(run_id[-8:]) and text.startswith(run_id[:8])
        shown[run_id] = text
        copy = page.locator(f'tr[data-run-id="{run_id}"] button.copy')
        assert copy.get_attribute("data-copy") == run_id
    assert len(set(shown.values())) == 2

    page.screenshot(path=f"{SHOTS}-list.png")
    page.click("#runs-more")
    page.wait_for_function(
        f"() => document.querySelectorAll('#runs-table tbody tr').length === {4 + _fake_runs.FILLER}"
    )
    assert page.locator("#runs-more").is_hidden()
    assert tab.errors == []


def test_runs_filters_go_to_the_api(tab: Tab, url: str) -> None:
    page = tab.page
    asked: list[dict[str, str]] = []

    def on_request(request: Any) -> None:
        parsed = urllib.parse.urlsplit(request.url)
        if parsed.path == "/admin/runs":
            asked.append(dict(urllib.parse.parse_qsl(parsed.query)))

    page.on("request", on_request)
    page.goto(f"{url}/ui/#/runs?agent=research-bot")
    page.wait_for_selector("#runs-table tbody tr")
    assert asked[-1] == {"agent": "research-bot", "limit": "50"}
    assert page.input_value("#r-agent") == "research-bot"
    assert set(
        page.eval_on_selector_all("#runs-table tbody tr", "e => e.map(x => x.dataset.runId)")
    ) == {_fake_runs.RUNNING, _fake_runs.COMPLETED}

    page.fill("#r-agent", "")
    page.select_option("#r-status", "failed")
    page.fill("#r-key", "key_beta")
    page.fill("#r-q", "run_01JD4X8")
    page.click("form.filters button[type=submit]")
    page.wait_for_function("() => location.hash.includes('status=failed')")
    page.wait_for_function("() => document.querySelectorAll('#runs-table tbody tr').length === 1")
    assert asked[-1] == {"status": "failed", "key": "key_beta", "q": "run_01JD4X8", "limit": "50"}
    assert "key=key_beta" in page.evaluate("location.hash")

    page.click("text=Clear")
    page.wait_for_function("() => location.hash === '#/runs'")
    page.select_option("#r-within", "3600")
    before = time.time()
    page.click("form.filters button[type=submit]")
    page.wait_for_function("() => location.hash.includes('within=3600')")
    page.wait_for_function("() => document.querySelectorAll('#runs-table tbody tr').length === 4")
    since = float(asked[-1]["since"])
    assert before - 3600 - 5 < since < time.time() - 3600 + 1
    assert tab.errors == []


def test_waterfall_places_steps_in_time(tab: Tab, url: str) -> None:
    page = tab.page
    open_run(tab, url, _fake_runs.COMPLETED, "key_alpha")
    api = admin(url, f"runs/{_fake_runs.COMPLETED}", key="key_alpha")
    steps = {s["seq"]: s for s in api["steps"]}
    bars = boxes(tab, "#waterfall .wf-bar")
    assert sorted(bars) == sorted(steps)
    # later steps start further right; bars as long as their steps (one scale for all)
    order = sorted(steps, key=lambda n: steps[n]["started_at"])
    for a, b in itertools.pairwise(order):
        if steps[b]["started_at"] > steps[a]["started_at"] + 0.1:
            assert bars[b]["x"] > bars[a]["x"]
    track = page.locator("#step-1 .wf-track").bounding_box()
    assert track is not None
    scale = {n: bars[n]["w"] / steps[n]["duration"] for n in steps}
    assert max(scale.values()) - min(scale.values()) < 1.5
    # the time axis starts at the run's start
    t0 = api["started_at"]
    for n, s in steps.items():
        assert bars[n]["x"] - track["x"] == pytest.approx(
            (s["started_at"] - t0) * scale[1], abs=1.5
        )
    # the two tool calls the first answer asked for ran in parallel: their bars overlap
    assert bars[2]["x"] < bars[3]["right"] and bars[3]["x"] < bars[2]["right"]
    # the next model step started after both came back
    assert bars[4]["x"] >= max(bars[2]["right"], bars[3]["right"])

    # step 4 waited for capacity, then before its retry: hatched lead-in segments
    queue = page.locator("#step-4 .seg.queue").bounding_box()
    retry = page.locator("#step-4 .seg.retry").bounding_box()
    assert queue is not None and retry is not None
    assert queue["x"] == pytest.approx(bars[4]["x"], abs=0.5)
    assert queue["width"] == pytest.approx(bars[4]["w"] * 0.4 / 2.0, abs=1)
    assert retry["x"] == pytest.approx(queue["x"] + queue["width"], abs=0.5)
    assert retry["width"] == pytest.approx(bars[4]["w"] * 0.5 / 2.0, abs=1)
    meta = page.inner_text("#step-4 .step-meta")
    for part in (
        "backup-1",
        "2 attempts",
        "↻ 1 retry",
        "↪ chat → backup",
        "waited 400 ms for capacity · 500 ms before retries",
    ):
        assert part in meta

    # tool steps sit indented under the model step that asked for them
    indent = page.eval_on_selector_all(
        "#waterfall .step-name", "els => els.map(e => parseFloat(getComputedStyle(e).paddingLeft))"
    )
    kinds = [steps[n]["kind"] for n in sorted(steps)]
    by_kind = {k: [v for kk, v in zip(kinds, indent, strict=True) if kk == k] for k in kinds}
    assert min(by_kind["tool"]) > max(by_kind["model"])

    # per-step tokens and cost; the header's totals are the API's
    for n, s in steps.items():
        if s["kind"] == "model":
            assert page.inner_text(f"#step-{n} .step-cost") == fmt_usd(s["cost_usd"])
            assert page.inner_text(f"#step-{n} .step-tokens") == (
                f"{fmt_int(s['input_tokens'])} / {fmt_int(s['output_tokens'])}"
            )
    assert page.inner_text("#run-cost .stat-value") == fmt_usd(api["cost_usd"])
    assert page.inner_text("#run-tokens .stat-value") == (
        f"{fmt_int(api['input_tokens'])} / {fmt_int(api['output_tokens'])}"
    )
    assert page.inner_text("#run-duration .stat-value") == fmt_sec(api["duration"])
    assert page.inner_text("#run-steps .stat-value") == (
        f"{api['step_count']} ({api['model_steps']} · {api['tool_steps']})"
    )
    assert page.inner_text("#run-retries .stat-value") == "1"
    assert page.inner_text("#run-wait .stat-value") == fmt_sec(api["wait_s"])
    assert page.inner_text("#run-trace-id") == api["trace_id"]

    # a tool error is shown but does not fail the run: amber, not the failure highlight
    assert page.locator("#waterfall tr.failing").count() == 0
    assert page.locator("#run-failure").count() == 0
    assert "tool raised: timeout" in page.inner_text('tr.step-error[data-seq="5"]')

    # links: the model step's log entry and trace, the tool step's requests
    assert page.get_attribute("#step-1 a.step-trace", "href") == "#/requests/req-run-a1"
    assert page.get_attribute("#step-1 a.step-log", "href") == "#/requests?q=req-run-a1"
    assert page.get_attribute("#step-2 a.step-opened", "href") == "#/requests/req-run-a1"
    assert page.get_attribute("#step-2 a.step-closed", "href") == "#/requests/req-run-a4"
    page.screenshot(path=f"{SHOTS}-completed.png", full_page=True)
    page.click("#step-4 a.step-log")
    page.wait_for_function("() => location.hash === '#/requests?q=req-run-a4'")
    assert page.input_value("#f-q") == "req-run-a4"
    # the fake request log does not hold the runs' requests: its 404 is expected
    assert tab.unexpected_errors("404") == []


def test_failing_step_is_highlighted_with_its_error_and_deployment(tab: Tab, url: str) -> None:
    page = tab.page
    open_run(tab, url, _fake_runs.FAILED, "key_beta")
    api = admin(url, f"runs/{_fake_runs.FAILED}", key="key_beta")
    assert api["failure_step"] == 3
    assert page.eval_on_selector_all("#waterfall tr.step-row.failing", "e => e.map(x => x.id)") == [
        "step-3"
    ]
    row = page.locator("#step-3")
    red_bg = "rgb(251, 230, 230)"  # --bad-bg
    assert row.locator("td").first.evaluate("e => getComputedStyle(e).backgroundColor") == red_bg
    assert (
        page.locator("#step-1 td").first.evaluate("e => getComputedStyle(e).backgroundColor")
        != red_bg
    )
    bar = row.locator(".wf-bar")
    assert "s-failed" in (bar.get_attribute("class") or "")
    work = row.locator(".seg.work").evaluate(
        "e => getComputedStyle(e.parentElement).backgroundColor"
    )
    assert work == "rgb(194, 52, 52)"  # --bad
    error = page.locator('tr.step-error.failing[data-seq="3"]')
    text = error.inner_text()
    assert "Step 3 failed the run" in text
    assert api["failure_class"] in text and api["failure_error"] in text
    assert error.locator(".step-error-deployment").inner_text() == api["failure_deployment"]
    banner = page.inner_text("#run-failure")
    assert "Failed at step 3 (model chat)" in banner
    assert "overloaded" in banner and "backup-1" in banner and api["failure_error"] in banner
    # its retries, waits and fallback are on the row; the waits as hatched segments
    meta = page.inner_text("#step-3 .step-meta")
    for part in ("3 attempts", "↻ 2 retries", "waited 1.20 s for capacity · 2.50 s before retries"):
        assert part in meta
    b = bar.bounding_box()
    queue = row.locator(".seg.queue").bounding_box()
    retry = row.locator(".seg.retry").bounding_box()
    assert b is not None and queue is not None and retry is not None
    assert queue["width"] == pytest.approx(b["width"] * 1.2 / 6.5, abs=1)
    assert retry["width"] == pytest.approx(b["width"] * 2.5 / 6.5, abs=1)
    assert page.inner_text("#run-summary").startswith("failed")
    page.screenshot(path=f"{SHOTS}-failed.png", full_page=True)
    page.click("text=Show the step")
    assert page.evaluate("document.activeElement.id") == "step-3"
    assert tab.errors == []


def test_running_and_unfinished_steps_reach_now_and_the_runs_end(tab: Tab, url: str) -> None:
    page = tab.page
    open_run(tab, url, _fake_runs.RUNNING, "key_alpha")
    bars = boxes(tab, "#waterfall .wf-bar")
    assert "open" in (page.get_attribute("#step-3 .wf-bar", "class") or "")
    assert "open" not in (page.get_attribute("#step-2 .wf-bar", "class") or "")
    now = page.locator("#step-3 .now-line").bounding_box()
    assert now is not None
    assert bars[3]["right"] == pytest.approx(now["x"], abs=2)  # drawn to now
    assert bars[2]["x"] < bars[3]["right"] and bars[3]["x"] < bars[2]["right"]  # parallel
    assert page.inner_text("#step-3 .step-duration") == "–"
    assert page.inner_text("#step-3 .wf-label") == "running…"
    page.screenshot(path=f"{SHOTS}-running.png", full_page=True)

    # an abandoned run: the tool call never answered ends with the run (its idle timeout)
    open_run(tab, url, _fake_runs.ABANDONED, "key_beta")
    api = admin(url, f"runs/{_fake_runs.ABANDONED}", key="key_beta")
    bar = boxes(tab, "#waterfall .wf-bar")[2]
    track = page.locator("#step-2 .wf-track").bounding_box()
    last_tick = page.locator("#waterfall .wf-tick").last.inner_text()
    assert track is not None
    axis = float(last_tick.removesuffix(" s"))
    end = (api["ended_at"] - api["started_at"]) / axis
    assert bar["right"] == pytest.approx(track["x"] + end * track["width"], abs=2)
    assert page.inner_text("#step-2 td:nth-child(3)") == "unfinished"
    assert tab.errors == []


def test_refresh_the_list_and_a_running_run_not_a_finished_one(tab: Tab, url: str) -> None:
    page = tab.page
    hits: list[str] = []
    page.on(
        "request",
        lambda r: (
            hits.append(urllib.parse.urlsplit(r.url).path) if "/admin/runs" in r.url else None
        ),
    )
    page.clock.install()  # the page's timers on a fake clock: no sleeping here
    page.goto(f"{url}/ui/#/runs")
    page.wait_for_selector("#runs-table tbody tr")
    page.clock.run_for(5100)
    page.wait_for_function("() => document.querySelectorAll('#runs-table tbody tr').length > 0")
    page.wait_for_timeout(300)
    assert hits.count("/admin/runs") == 2
    finished = f"/admin/runs/{_fake_runs.COMPLETED}"
    page.goto(f"{url}/ui/#/runs/{_fake_runs.COMPLETED}?key=key_alpha")
    page.wait_for_selector("#waterfall .wf-bar")
    page.clock.run_for(11_000)
    page.wait_for_timeout(300)
    assert hits.count(finished) == 1  # a finished run is read once
    running = f"/admin/runs/{_fake_runs.RUNNING}"
    page.goto(f"{url}/ui/#/runs/{_fake_runs.RUNNING}?key=key_alpha")
    page.wait_for_selector("#waterfall .wf-bar")
    page.clock.run_for(5100)
    page.wait_for_timeout(300)
    assert hits.count(running) == 2
    assert tab.errors == []


def test_unknown_run_says_so(tab: Tab, url: str) -> None:
    page = tab.page
    page.goto(f"{url}/ui/#/runs/nope?key=key_alpha")
    page.wait_for_selector("text=No run nope for key key_alpha")
    assert tab.unexpected_errors("404") == []
