"""The dashboard's Keys view on a real gateway: two virtual keys created through the
admin API (one in a team with a daily hard budget, one without team or budget and
with a name full of markup), paid chat requests with each in front of ``brace mock``
(the deployment has prices), a team budget, a revoked key; then the view in headless
Chromium against what ``GET /admin/keys`` and ``GET /admin/teams`` say."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.sync_api import Page, Route

from brace.config import parse_config
from brace.gateway import Gateway
from tests.browser._fmt import fmt_usd
from tests.browser.conftest import Tab
from tests.integration.conftest import ServerThread

ADMIN_KEY = "keys-page-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TEAM = "research"
# A name that is markup: the page must show it as text, never parse it.
BETA_NAME = '<b id="injected">beta</b> & "co"'
MESSAGES = [{"role": "user", "content": "hello"}]
ALPHA_REQUESTS = 3
BETA_REQUESTS = 2


@dataclass
class Served:
    url: str
    alpha: dict[str, Any]
    beta: dict[str, Any]
    keys: dict[str, dict[str, Any]]
    """``GET /admin/keys`` after the traffic, by key id."""
    teams: dict[str, dict[str, Any]]
    """``GET /admin/teams`` after the traffic, by team."""


def usage(record: dict[str, Any], period: str) -> dict[str, Any]:
    (u,) = [u for u in record["usage"] if u["period"] == period]
    return u


async def _setup(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async with aiohttp.ClientSession() as session:

        async def admin(method: str, path: str, body: Any = None) -> dict[str, Any]:
            async with session.request(method, f"{url}{path}", json=body, headers=ADMIN) as r:
                out = await r.json()
                assert r.status in (200, 201), out
                return out  # type: ignore[no-any-return]

        async def chat(key: str) -> None:
            async with session.post(
                f"{url}/v1/chat/completions",
                json={"model": "chat", "messages": MESSAGES, "max_tokens": 8},
                headers={"Authorization": f"Bearer {key}"},
            ) as r:
                body = await r.json()
                assert r.status == 200, body

        alpha = await admin(
            "POST",
            "/admin/keys",
            {
                "name": "alpha",
                "team": TEAM,
                "models": ["chat"],
                "rpm": 600,
                "tpm": 90000,
                "budgets": [{"period": "day", "limit_usd": 0.1, "mode": "hard"}],
            },
        )
        beta = await admin("POST", "/admin/keys", {"name": BETA_NAME})
        for _ in range(ALPHA_REQUESTS):
            await chat(alpha["key"])
        for _ in range(BETA_REQUESTS):
            await chat(beta["key"])
        # the team has already spent more than its daily hard budget (red) and 90% of
        # its monthly soft one (amber)
        spent = usage(await admin("GET", f"/admin/keys/{alpha['id']}"), "day")["spent_usd"]
        await admin(
            "PUT",
            f"/admin/teams/{TEAM}",
            {
                "budgets": [
                    {"period": "day", "limit_usd": round(spent / 1.25, 6), "mode": "hard"},
                    {"period": "month", "limit_usd": round(spent / 0.9, 6), "mode": "soft"},
                ]
            },
        )
        await admin("DELETE", f"/admin/keys/{beta['id']}")
        return alpha, beta


async def _admin_get(url: str, path: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url + path, headers=ADMIN) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def served(servers: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    mock = servers.mock()
    db: Path = tmp_path_factory.mktemp("keys-page") / "brace.db"
    config = parse_config(
        {
            "server": {"host": "127.0.0.1", "admin_key": "${BRACE_ADMIN_KEY}"},
            "telemetry": {"database": str(db)},
            "models": {
                "chat": {
                    "deployments": [
                        {
                            "provider": "mock",
                            "name": "priced",
                            "model": "m",
                            "base_url": f"{mock}/v1",
                            # USD per million tokens: a few cents per request
                            "prices": {"input": 1000, "output": 2000},
                        }
                    ]
                }
            },
        },
        env={"BRACE_ADMIN_KEY": ADMIN_KEY},
    )

    async def start() -> tuple[Gateway, str]:
        gw = Gateway(config)
        port = await gw.start(host="127.0.0.1", port=0)
        servers._cleanups.append(gw.stop)
        return gw, f"http://127.0.0.1:{port}"

    _, url = servers.call(start())
    alpha, beta = servers.call(_setup(url))
    keys = servers.call(_admin_get(url, "/admin/keys"))
    teams = servers.call(_admin_get(url, "/admin/teams"))
    yield Served(
        url,
        alpha,
        beta,
        {k["id"]: k for k in keys["data"]},
        {t["team"]: t for t in teams["data"]},
    )


@pytest.fixture
def keyed(tab: Tab, served: Served) -> Tab:
    """A tab that already holds the admin key (as if the user had typed it)."""
    tab.page.add_init_script(f"sessionStorage.setItem('brace.adminKey', {ADMIN_KEY!r})")
    return tab


def open_keys(page: Page, url: str, hash_: str = "") -> None:
    page.goto(f"{url}/ui/{hash_}")
    if not hash_:
        page.click('.tabs a[data-page="keys"]')
    page.wait_for_selector("#keys-table, #keys-empty")


def row_ids(page: Page, table: str = "#keys-table") -> list[str]:
    return page.eval_on_selector_all(
        f"{table} tbody tr", "els => els.map(e => e.dataset.keyId || e.dataset.team)"
    )


def bar(page: Page, row: str, period: str) -> dict[str, Any]:
    """A budget bar: its data, text, and the spent and held segments' share of its width."""
    return page.eval_on_selector(
        f'{row} .budget[data-period="{period}"]',
        """b => {
          const m = b.querySelector('.budget-meter').getBoundingClientRect().width;
          const w = (sel) => { const e = b.querySelector(sel); return e ? e.getBoundingClientRect().width / m : 0; };
          return { level: b.dataset.level, mode: b.dataset.mode, used: +b.dataset.used,
                   text: b.innerText, spent: w('span.spent'), held: w('span.held'),
                   soft: !!b.querySelector('.badge') && b.querySelector('.badge').textContent };
        }""",
    )


def test_keys_listed_with_names_states_and_spend(keyed: Tab, served: Served) -> None:
    page = keyed.page
    open_keys(page, served.url)
    assert page.get_attribute('.tabs a[data-page="keys"]', "aria-current") == "page"
    alpha_id, beta_id = served.alpha["id"], served.beta["id"]
    assert row_ids(page) == [alpha_id, beta_id]  # oldest first, as the API lists them

    alpha = f'#keys-table tr[data-key-id="{alpha_id}"]'
    beta = f'#keys-table tr[data-key-id="{beta_id}"]'
    assert page.inner_text(f"{alpha} .key-name") == "alpha"
    assert page.inner_text(f"{alpha} .key-id") == alpha_id
    assert page.inner_text(f"{alpha} .key-team") == TEAM
    assert page.inner_text(f"{alpha} .key-prefix") == served.alpha["prefix"] + "…"
    assert page.inner_text(f"{alpha} .key-models") == "chat"
    assert page.inner_text(f"{alpha} .key-limits") == "600 / 90k"
    assert page.inner_text(f"{beta} .key-models") == "all"
    # the markup in the name is text: shown as typed, no element made of it
    assert page.inner_text(f"{beta} .key-name") == BETA_NAME
    assert page.locator("#injected").count() == 0

    assert page.inner_text(f"{alpha} .badge") == "active"
    badge = page.locator(f"{beta} .badge")
    assert badge.inner_text() == "revoked"
    assert "bad" in (badge.get_attribute("class") or "")
    assert served.keys[beta_id]["state"] == "revoked"
    assert "revoked 20" in page.inner_text(f"{beta} td:nth-child(4)")

    for key_id, row, n in ((alpha_id, alpha, ALPHA_REQUESTS), (beta_id, beta, BETA_REQUESTS)):
        for period in ("day", "month", "total"):
            api = usage(served.keys[key_id], period)["spent_usd"]
            assert api > 0.001 * n  # the requests cost money
            cell = page.locator(f'{row} td.spend[data-period="{period}"]')
            assert cell.inner_text() == fmt_usd(api)
            assert float(cell.get_attribute("data-usd") or "nan") == pytest.approx(api, abs=1e-12)
    # beta spent less (fewer requests at the same price)
    spent = {k: usage(v, "total")["spent_usd"] for k, v in served.keys.items()}
    assert spent[beta_id] < spent[alpha_id]

    total = sum(spent.values())
    assert page.inner_text("#keys-spend-total .stat-value") == fmt_usd(total)
    assert page.inner_text("#keys-count .stat-value") == "1 / 2"
    page.screenshot(path="/tmp/brace-dashboard-keys.png", full_page=True)
    assert keyed.errors == []


def test_budget_bars_show_use_of_each_budget(keyed: Tab, served: Served) -> None:
    page = keyed.page
    open_keys(page, served.url)
    alpha = f'#keys-table tr[data-key-id="{served.alpha["id"]}"]'
    beta = f'#keys-table tr[data-key-id="{served.beta["id"]}"]'

    # alpha: a daily hard budget, used in part (green), nothing for month or total
    api = usage(served.keys[served.alpha["id"]], "day")
    assert api["limit_usd"] == 0.1 and 0.1 < api["used"] < 0.8
    b = bar(page, alpha, "day")
    assert b["spent"] == pytest.approx(api["used"], abs=0.015)
    assert b["held"] == 0
    assert (b["level"], b["mode"], b["soft"]) == ("ok", "hard", False)
    assert fmt_usd(api["spent_usd"]) + " of $0.100" in b["text"]
    assert "resets in" in b["text"]
    assert page.locator(f"{alpha} .budget").count() == 1
    assert page.inner_text(f"{beta} td.budgets") == "no budget"

    # the team row, with its budgets: daily hard over 100% (red), monthly soft at 90% (amber)
    assert row_ids(page, "#teams-table") == [TEAM]
    team = f'#teams-table tr[data-team="{TEAM}"]'
    assert page.inner_text(f"{team} th") == TEAM
    assert page.inner_text(f"{team} td:nth-child(2)") == "1"
    team_api = served.teams[TEAM]
    assert [(b["period"], b["mode"]) for b in team_api["budgets"]] == [
        ("day", "hard"),
        ("month", "soft"),
    ]
    for period in ("day", "month", "total"):
        assert page.inner_text(f'{team} td.spend[data-period="{period}"]') == fmt_usd(
            usage(team_api, period)["spent_usd"]
        )
    day, month = usage(team_api, "day"), usage(team_api, "month")
    assert day["used"] > 1 and 0.8 < month["used"] < 1
    b = bar(page, team, "day")
    assert (b["level"], b["soft"]) == ("hot", False)
    assert b["spent"] == pytest.approx(1.0, abs=0.01)  # full, not beyond
    assert fmt_usd(day["limit_usd"]) in b["text"]
    b = bar(page, team, "month")
    assert (b["level"], b["soft"]) == ("warm", "soft")
    assert b["spent"] == pytest.approx(month["used"], abs=0.015)
    assert page.locator(f"{team} .budget").count() == 2
    # the colours: red, amber, green
    colors = page.eval_on_selector_all(
        ".budget-meter span.spent", "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert sorted(colors) == sorted(
        ["rgb(47, 158, 110)", "rgb(194, 52, 52)", "rgb(224, 160, 48)"]
    ), colors
    page.screenshot(path="/tmp/brace-dashboard-keys-budgets.png", full_page=True)
    assert keyed.errors == []


def test_filters_by_team_and_state(keyed: Tab, served: Served) -> None:
    page = keyed.page
    alpha_id, beta_id = served.alpha["id"], served.beta["id"]
    open_keys(page, served.url)
    assert page.eval_on_selector_all("#k-team option", "els => els.map(e => e.value)") == [
        "",
        TEAM,
    ]

    page.select_option("#k-team", TEAM)
    page.wait_for_function("() => document.querySelectorAll('#keys-table tbody tr').length === 1")
    assert row_ids(page) == [alpha_id]
    assert "team=research" in page.evaluate("location.hash")
    assert page.input_value("#k-team") == TEAM
    assert row_ids(page, "#teams-table") == [TEAM]

    page.select_option("#k-state", "revoked")
    page.wait_for_selector("#keys-empty")
    assert "No key matches" in page.inner_text("#keys-empty")
    assert page.locator("#keys-table").count() == 0

    page.select_option("#k-team", "")
    page.wait_for_selector("#keys-table")
    assert row_ids(page) == [beta_id]
    assert page.evaluate("location.hash") == "#/keys?state=revoked"

    # a filtered view can be shared: the filters come from the URL
    open_keys(page, served.url, "#/keys?state=active")
    assert row_ids(page) == [alpha_id]
    assert page.input_value("#k-state") == "active"
    assert keyed.errors == []


def test_held_spend_and_empty_state(keyed: Tab, served: Served) -> None:
    """What the traffic above cannot show at rest: spend held by requests in flight, and
    a gateway without keys.  The real answers, changed on the way to the page."""
    page = keyed.page
    alpha_id = served.alpha["id"]

    def with_held(route: Route) -> None:
        body = route.fetch().json()
        for k in body["data"]:
            if k["id"] == alpha_id:
                usage(k, "day")["held_usd"] = 0.02  # a fifth of the $0.10 budget
        route.fulfill(json=body)

    def soft_overspent(route: Route) -> None:
        body = route.fetch().json()
        for t in body["data"]:
            month = usage(t, "month")
            month["spent_usd"] = month["limit_usd"] * 1.5
            month["used"] = 1.5
        route.fulfill(json=body)

    page.route("**/admin/keys", with_held)
    page.route("**/admin/teams", soft_overspent)
    open_keys(page, served.url)
    alpha = f'#keys-table tr[data-key-id="{alpha_id}"]'
    api = usage(served.keys[alpha_id], "day")
    b = bar(page, alpha, "day")
    assert b["spent"] == pytest.approx(api["used"], abs=0.015)
    assert b["held"] == pytest.approx(0.2, abs=0.015)
    assert "+$0.020 held" in b["text"]
    # lighter than the spent part
    opacity = page.eval_on_selector(
        f'{alpha} .budget[data-period="day"] span.held', "e => +getComputedStyle(e).opacity"
    )
    assert opacity < 1
    assert "+$0.020 held" in page.inner_text(f'{alpha} td.spend[data-period="day"]')
    # a soft budget over 100% does not refuse: amber, not red
    b = bar(page, f'#teams-table tr[data-team="{TEAM}"]', "month")
    assert (b["level"], b["soft"], b["spent"]) == ("warm", "soft", pytest.approx(1.0, abs=0.01))
    assert "150%" in b["text"]

    empty = json.dumps({"object": "list", "data": []})
    page.unroute("**/admin/keys")
    page.unroute("**/admin/teams")
    page.route("**/admin/keys", lambda r: r.fulfill(body=empty, content_type="application/json"))
    page.route("**/admin/teams", lambda r: r.fulfill(body=empty, content_type="application/json"))
    page.reload()
    page.wait_for_selector("#keys-empty")
    text = page.inner_text("#keys-empty")
    assert "No keys yet" in text
    assert "brace keys create NAME" in text and "POST /admin/keys" in text
    assert "local mode" in text
    assert page.locator("#keys-table, #teams-table").count() == 0
    assert "No teams" in page.inner_text("#teams-empty")
    assert page.inner_text("#keys-count .stat-value") == "0 / 0"
    page.screenshot(path="/tmp/brace-dashboard-keys-empty.png")
    assert keyed.errors == []
