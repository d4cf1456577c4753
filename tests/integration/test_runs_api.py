"""Agent runs over HTTP: the admin API (``/admin/runs``), the caller's own runs
(``/v1/runs/{id}``: tenant isolation) and ``brace runs``, over real loopback HTTP and a
real SQLite store.

The tracker is not wired yet: runs and steps are submitted straight to the store (the
route apps' store, or a real gateway's ``telemetry.store``), or emitted on a real
gateway's event bus (the hub's subscription).
"""

from __future__ import annotations

import re
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import typer
from aiohttp import web
from typer.testing import CliRunner

from brace import runs_cli
from brace.config import parse_config
from brace.gateway import Gateway
from brace.gateway.routes import logs, runs
from brace.runs import RunRecord, RunUpdated, StepRecord, StepUpdated
from brace.runs_cli import follow_lines, register_cli
from brace.store.requests import SQLiteStore
from brace.telemetry.record import AttemptRecord, RequestRecord

from .conftest import ServerThread

NOW = time.time()
MASTER = "test-master-key-0123456789"
LONG_ID = "run-0f8e2d4c-1111-2222-3333-444455556666"


def run(run_id: str, tenant: str = "key_a", **kw: Any) -> RunRecord:
    fields: dict[str, Any] = {"started_at": NOW - 60, "last_activity": NOW - 50}
    fields.update(kw)
    return RunRecord(tenant=tenant, run_id=run_id, **fields)


def step(run_id: str, seq: int, tenant: str = "key_a", **kw: Any) -> StepRecord:
    fields: dict[str, Any] = {"kind": "model", "name": "gpt", "status": "ok"}
    fields.update(kw)
    fields.setdefault("started_at", NOW - 61 + seq)
    return StepRecord(tenant=tenant, run_id=run_id, seq=seq, **fields)


# a failed support run: model (asks for two tools) → two tools → model fails
STORY = run(
    "run-story",
    agent="support-bot",
    status="failed",
    last_activity=NOW - 10,
    ended_at=NOW - 10,
    steps=4,
    model_steps=2,
    tool_steps=2,
    failed_steps=1,
    input_tokens=1200,
    output_tokens=300,
    cost_usd=0.01,
    retries=2,
    wait_s=1.3,
    failure_step=4,
    failure_class="rate_limited",
    failure_deployment="gpt-a",
    failure_error="upstream answered 429",
    request_ids=["brq-1", "brq-2"],
)
STORY_STEPS = [
    step(
        "run-story",
        1,
        duration=1.2,
        request_id="brq-1",
        deployment="gpt-b",
        input_tokens=1200,
        output_tokens=300,
        cost_usd=0.01,
        tool_calls=2,
        queue_wait=0.2,
    ),
    step("run-story", 2, kind="tool", name="get_weather", duration=0.3, opened_by="brq-1"),
    step("run-story", 3, kind="tool", name="lookup_order", duration=0.4, opened_by="brq-1"),
    step(
        "run-story",
        4,
        status="failed",
        duration=2.4,
        request_id="brq-2",
        deployment="gpt-a",
        error_class="rate_limited",
        error="upstream answered 429",
        attempts=3,
        retries=2,
        retry_wait=1.3,
    ),
]
OTHERS = [
    run("run-done", agent="coder", status="completed", last_activity=NOW - 20),
    run("run-busy", tenant="key_b", agent="Coder-2", last_activity=NOW - 30),
    run(LONG_ID, tenant="master", agent="support-bot", last_activity=NOW - 40),
    run("run-old", agent="coder", status="abandoned", last_activity=NOW - 7200),
    # the same run id under two tenants
    run("run-twice", tenant="key_a", last_activity=NOW - 3600),
    run("run-twice", tenant="key_b", last_activity=NOW - 3601),
]


@dataclass(slots=True)
class LinkedRequest(RequestRecord):
    """A request record with the ``run_id`` the tracker will add."""

    run_id: str | None = None


def request(i: int, run_id: str | None) -> LinkedRequest:
    return LinkedRequest(
        request_id=f"req-{i}",
        trace_id=f"{i:032x}",
        span_id=f"{i:016x}",
        parent_span_id=None,
        operation="chat",
        model="gpt",
        started_at=NOW - i,
        duration=0.1,
        status=200,
        attempts=[AttemptRecord("gpt-a", "gpt", "openai", 0.0, 0.1, None, 200)],
        run_id=run_id,
    )


def app_for(store: SQLiteStore | None) -> web.Application:
    config = parse_config(
        {
            "server": {"host": "127.0.0.1"},
            "models": {"gpt": {"deployments": [{"provider": "mock", "model": "m"}]}},
        },
        env={},
    )
    gateway: Any = SimpleNamespace(config=config, telemetry=SimpleNamespace(store=store))
    app = web.Application()
    runs.setup(app, gateway)
    logs.setup(app, gateway)
    return app


class Runs:
    """A started SQLite store holding the runs above, behind the route apps (and one
    with the store off)."""

    def __init__(self, servers: ServerThread, path: Path) -> None:
        self.servers = servers
        self.store = SQLiteStore(path)

        async def build() -> None:
            await self.store.start()
            for r in [STORY, *OTHERS]:
                self.store.submit_run(r)
            for s in STORY_STEPS:
                self.store.submit_step(s)
            self.store.submit(request(1, "run-story"))
            self.store.submit(request(2, None))
            await self.store.flush()

        servers.call(build())
        self.url = servers.serve_app(app_for(self.store))
        self.off_url = servers.serve_app(app_for(None))


@pytest.fixture(scope="module")
def stored(servers: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    r = Runs(servers, tmp_path_factory.mktemp("runs") / "runs.db")
    try:
        yield r
    finally:
        servers.call(r.store.aclose())


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def ids(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["tenant"], r["run_id"]) for r in body["data"]]


# ----------------------------------------------------------------------------- admin API


def test_list_is_newest_activity_first_with_filters_and_pages(stored: Runs) -> None:
    status, body = get(f"{stored.url}/admin/runs")
    assert status == 200 and body["object"] == "list" and body["next_cursor"] is None
    assert ids(body) == [
        ("key_a", "run-story"),
        ("key_a", "run-done"),
        ("key_b", "run-busy"),
        ("master", LONG_ID),
        ("key_a", "run-twice"),
        ("key_b", "run-twice"),
        ("key_a", "run-old"),
    ]
    story = body["data"][0]
    assert story["status"] == "failed" and story["steps"] == 4 and story["duration"] == 50.0
    assert story["request_ids"] == ["brq-1", "brq-2"] and story["agent"] == "support-bot"

    def listed(query: str) -> list[str]:
        status, found = get(f"{stored.url}/admin/runs?{query}")
        assert status == 200, found
        return [r["run_id"] for r in found["data"]]

    assert listed("status=failed") == ["run-story"]
    assert listed("agent=coder") == ["run-done", "run-old"]
    assert listed("key=key_b") == ["run-busy", "run-twice"]
    assert listed("key=master") == [LONG_ID]
    assert listed(f"since={NOW - 35}") == ["run-story", "run-done", "run-busy"]
    assert listed("until=2h") == ["run-old"]  # last active more than 2 h ago
    assert listed("q=run-t") == ["run-twice", "run-twice"]  # a run id prefix
    assert listed("q=coder") == ["run-done", "run-busy", "run-old"]  # agent, any case

    seen: list[tuple[str, str]] = []
    cursor = ""
    while True:
        _, page = get(f"{stored.url}/admin/runs?limit=3" + (f"&before={cursor}" if cursor else ""))
        seen += ids(page)
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids(body)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("before=bogus", "before"),
        ("since=yesterday", "since"),
        ("until=-3", "until"),
    ],
)
def test_bad_list_params_are_400_naming_the_param(stored: Runs, query: str, param: str) -> None:
    status, body = get(f"{stored.url}/admin/runs?{query}")
    assert status == 400, body
    assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"


def test_one_run_with_its_ordered_steps(stored: Runs) -> None:
    status, got = get(f"{stored.url}/admin/runs/run-story")
    assert status == 200
    assert got["tenant"] == "key_a" and got["status"] == "failed" and got["step_count"] == 4
    assert got["failure_step"] == 4 and got["failure_class"] == "rate_limited"
    steps = got["steps"]
    assert [(s["seq"], s["kind"], s["name"]) for s in steps] == [
        (1, "model", "gpt"),
        (2, "tool", "get_weather"),
        (3, "tool", "lookup_order"),
        (4, "model", "gpt"),
    ]
    first, last = steps[0], steps[3]
    assert (first["input_tokens"], first["output_tokens"], first["cost_usd"]) == (1200, 300, 0.01)
    assert first["request_id"] == "brq-1" and steps[1]["opened_by"] == "brq-1"
    assert last["status"] == "failed" and last["error_class"] == "rate_limited"
    assert (last["retries"], last["retry_wait"]) == (2, 1.3)
    assert "tenant" not in first and "run_id" not in first

    # a run id under one tenant needs no key; asked with another key it is missing
    status, _ = get(f"{stored.url}/admin/runs/run-story?key=key_a")
    assert status == 200
    status, missing = get(f"{stored.url}/admin/runs/run-story?key=key_b")
    assert status == 404 and missing["error"]["param"] == "run_id"
    status, missing = get(f"{stored.url}/admin/runs/nope")
    assert status == 404 and missing["error"]["code"] == "not_found"


def test_a_run_id_of_several_tenants_needs_the_key(stored: Runs) -> None:
    status, body = get(f"{stored.url}/admin/runs/run-twice")
    assert status == 400
    assert body["error"]["param"] == "key"
    assert "2 tenants" in body["error"]["message"] and "key=" in body["error"]["message"]
    status, one = get(f"{stored.url}/admin/runs/run-twice?key=key_b")
    assert status == 200 and one["tenant"] == "key_b" and one["steps"] == []


def test_the_request_log_links_to_runs(stored: Runs) -> None:
    status, body = get(f"{stored.url}/admin/requests?run_id=run-story")
    assert status == 200
    assert [(r["request_id"], r["run_id"]) for r in body["data"]] == [("req-1", "run-story")]
    _, one = get(f"{stored.url}/admin/requests/req-2")
    assert one["run_id"] is None


def test_store_off_is_503(stored: Runs) -> None:
    for path in ("/admin/runs", "/admin/runs/run-story"):
        status, body = get(stored.off_url + path)
        assert status == 503 and body["error"]["code"] == "request_log_off"


# ----------------------------------------------------------------------------- a real gateway


@pytest.fixture(scope="module")
def gateway(servers: ServerThread) -> tuple[Gateway, str]:
    dep = {"provider": "mock", "model": "m", "base_url": f"{servers.mock()}/v1"}
    config = parse_config(
        {
            "server": {"admin_key": "${BRACE_ADMIN_KEY}"},
            "telemetry": {"database": f"{servers.tmp}/runs-gw.db"},
            "models": {"gpt": {"deployments": [dep]}},
        },
        env={"BRACE_ADMIN_KEY": MASTER},
    )
    return servers.gateway(config)


def call(url: str, key: str) -> tuple[int, Any]:
    return get(url, {"Authorization": f"Bearer {key}"})


def create_key(url: str, name: str) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{url}/admin/keys",
        data=orjson.dumps({"name": name}),
        method="POST",
        headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        created: dict[str, Any] = orjson.loads(resp.read())
    return created


def test_a_caller_reads_its_own_runs_only(
    servers: ServerThread, gateway: tuple[Gateway, str]
) -> None:
    gw, url = gateway
    a, b = create_key(url, "agent-a"), create_key(url, "agent-b")
    store = gw.telemetry.store
    assert store is not None

    async def seed() -> None:
        store.submit_run(run("shared-id", tenant=a["id"], agent="a-bot"))
        store.submit_step(step("shared-id", 1, tenant=a["id"]))
        store.submit_run(run("master-run", tenant="master"))
        await store.flush()

    servers.call(seed())
    status, mine = call(f"{url}/v1/runs/shared-id", a["key"])
    assert status == 200 and mine["tenant"] == a["id"] and len(mine["steps"]) == 1
    # another key: exactly what a missing run answers
    status, theirs = call(f"{url}/v1/runs/shared-id", b["key"])
    status_missing, missing = call(f"{url}/v1/runs/no-such-run", b["key"])
    assert status == status_missing == 404
    assert theirs["error"]["code"] == missing["error"]["code"] == "not_found"
    assert theirs["error"]["param"] == missing["error"]["param"] == "run_id"
    # the master key is a tenant of its own
    assert call(f"{url}/v1/runs/shared-id", MASTER)[0] == 404
    assert call(f"{url}/v1/runs/master-run", MASTER)[0] == 200
    assert call(f"{url}/v1/runs/master-run", a["key"])[0] == 404
    # no key: 401 before anything is read
    status, denied = get(f"{url}/v1/runs/shared-id")
    assert status == 401 and denied["error"]["code"] == "missing_api_key"
    # the admin API reads every tenant
    status, listed = call(f"{url}/admin/runs?key={a['id']}", MASTER)
    assert status == 200 and [r["run_id"] for r in listed["data"]] == ["shared-id"]


def test_the_hub_writes_run_and_step_events(
    servers: ServerThread, gateway: tuple[Gateway, str]
) -> None:
    gw, url = gateway
    store = gw.telemetry.store
    assert store is not None

    async def emit() -> None:
        gw.engine.events.emit(RunUpdated(run("from-events", tenant="master", steps=1)))
        gw.engine.events.emit(StepUpdated(step("from-events", 1, tenant="master")))
        gw.engine.events.emit(RunUpdated(run("from-events", tenant="master", status="completed")))
        await store.flush()

    servers.call(emit())
    status, got = call(f"{url}/admin/runs/from-events", MASTER)
    assert status == 200 and got["status"] == "completed" and len(got["steps"]) == 1


def test_local_mode_runs_belong_to_local(servers: ServerThread) -> None:
    dep = {"provider": "mock", "model": "m", "base_url": f"{servers.mock()}/v1"}
    config = parse_config(
        {
            "telemetry": {"database": f"{servers.tmp}/runs-local.db"},
            "models": {"gpt": {"deployments": [dep]}},
        },
        env={},
    )
    gw, url = servers.gateway(config)
    store = gw.telemetry.store
    assert store is not None

    async def seed() -> None:
        store.submit_run(run("mine", tenant="local"))
        store.submit_run(run("keyed", tenant="key_x"))
        await store.flush()

    servers.call(seed())
    assert get(f"{url}/v1/runs/mine")[0] == 200
    assert get(f"{url}/v1/runs/keyed")[0] == 404


# ----------------------------------------------------------------------------- the CLI


def cli() -> typer.Typer:
    app = typer.Typer()
    register_cli(app)
    return app


def brace_runs(*args: str, columns: int = 80) -> tuple[int, str]:
    result = CliRunner().invoke(cli(), ["runs", *args], env={"COLUMNS": str(columns)})
    return result.exit_code, result.output


def test_runs_list_and_show_json_are_the_admin_api(stored: Runs) -> None:
    code, out = brace_runs("list", "--url", stored.url, "--json", "--status", "failed")
    assert code == 0, out
    assert [r["run_id"] for r in orjson.loads(out)["data"]] == ["run-story"]
    code, out = brace_runs("show", "run-twice", "--key", "key_a", "--url", stored.url, "--json")
    assert code == 0, out
    assert orjson.loads(out)["tenant"] == "key_a"
    code, out = brace_runs("show", "run-twice", "--url", stored.url)
    assert code == 1 and "400" in out and "key=" in out
    code, out = brace_runs("list", "--url", stored.off_url)
    assert code == 1 and "503" in out


def test_runs_list_reads_at_80_columns_with_whole_ids(stored: Runs) -> None:
    code, out = brace_runs("list", "--url", stored.url, "--limit", "4")
    assert code == 0, out
    lines = out.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), out
    assert LONG_ID in out and "run-story" in out  # never cut
    # newest last: the most recently active run is the last one listed
    assert out.rindex("run-story") > out.rindex("run-busy") > out.index(LONG_ID)
    assert "support-bot" in out and "failed" in out


def test_runs_show_draws_the_steps_and_the_failure(stored: Runs) -> None:
    code, out = brace_runs("show", "run-story", "--url", stored.url)
    assert code == 0, out
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    assert "run run-story" in lines[0] and "key key_a" in lines[0] and "support-bot" in lines[0]
    assert "failed at step 4: rate_limited on gpt-a: upstream answered 429" in out
    rows = [line for line in lines if line.lstrip(" ▶").startswith("+")]
    assert len(rows) == 4
    assert "model gpt" in rows[0] and "1200/300" in rows[0] and "0.01000" in rows[0]
    # tool steps are nested under the model step that asked for them
    assert rows[1].index("tool") > rows[0].index("model")
    assert "get_weather" in rows[1] and "lookup_order" in rows[2]
    assert rows[3].startswith("▶") and "failed" in rows[3]
    # offsets from the run's start, and the waits and retries of the failed step
    assert rows[0].split()[0] == "+0.00s" and rows[3].split()[1] == "+3.00s"
    tail = out[out.index(rows[3]) :]
    assert "2 retries (waited 1.30s)" in tail and "upstream answered 429" in tail
    assert "queued 0.20s" in out and "2 tool calls" in out


def test_follow_prints_new_runs_and_status_changes() -> None:
    seen: dict[tuple[str, str], str] = {}
    first = [run("r1", agent="bot").to_dict()]
    assert len(follow_lines(first, seen)) == 2  # the first poll (follow prints none)
    assert follow_lines(first, seen) == []
    moved = [{**first[0], "status": "failed", "failure_class": "rate_limited"}]
    new = [run(LONG_ID, tenant="key_0123456789abcdef", last_activity=NOW).to_dict()]
    lines = follow_lines(moved + new, seen)
    assert "running → [bold red]failed[/]  run r1  key key_a" in lines[0]
    assert lines[1].split() == ["agent", "bot", "0", "steps", "10.0s", "$0.00000", "rate_limited"]
    # ids that do not fit beside the change go whole on a line of their own
    assert lines[2].startswith(time.strftime("%H:%M:%S", time.localtime(NOW)) + "  new ")
    assert lines[3].split() == ["run", LONG_ID, "key", "key_0123456789abcdef"]
    assert len(lines) == 5


# ----------------------------------------------------------------------------- the doc

DOC = (Path(__file__).resolve().parents[2] / "docs" / "runs-api.md").read_text()
STORE_DOC = (Path(__file__).resolve().parents[2] / "docs" / "store.md").read_text()
_TIMES = ("started_at", "last_activity", "ended_at")
_CLOCK = re.compile(r"\d\d-\d\d \d\d:\d\d:\d\d|\d\d:\d\d:\d\d")


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def timeless(value: Any) -> Any:
    """``value`` without its wall-clock times (the examples were made at another time)."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k not in _TIMES}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def clockless(text: str) -> list[str]:
    return [_CLOCK.sub("<time>", line).rstrip() for line in text.strip("\n").splitlines()]


def test_the_docs_json_is_what_the_api_answers(stored: Runs) -> None:
    listed, detail, ambiguous = (orjson.loads(b) for b in blocks(DOC, "json"))
    _, page = get(f"{stored.url}/admin/runs?status=failed")
    assert timeless(listed) == timeless(page["data"][0])
    _, one = get(f"{stored.url}/admin/runs/run-story")
    shown = len(detail["steps"])  # the doc shows the first steps
    assert shown >= 2 and timeless(detail) == timeless({**one, "steps": one["steps"][:shown]})
    _, twice = get(f"{stored.url}/admin/runs/run-twice")
    assert ambiguous == twice
    # and store.md's writer counters are the store's
    counters = next(orjson.loads(b) for b in blocks(STORE_DOC, "json") if '"coalesced"' in b)
    assert set(counters) == set(stored.store.stats())


def test_the_docs_commands_print_what_the_doc_shows(
    stored: Runs, servers: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = []
    for block in blocks(DOC, "console"):
        command, *output = block.splitlines()
        assert command.startswith("$ brace runs ")
        examples.append((shlex.split(command[2:])[2:], "\n".join(output)))
    assert [args[0] for args, _ in examples] == ["list", "show", "follow"]
    for args, shown in examples[:2]:
        code, out = brace_runs(*args, "--url", stored.url)
        assert code == 0, out
        assert clockless(out) == clockless(shown)

    # follow: its own store; between the two polls a run fails and another starts
    store = SQLiteStore(tmp_path / "follow.db")
    servers.call(store.start())
    try:
        url = servers.serve_app(app_for(store))

        async def put(*records: RunRecord) -> None:
            for r in records:
                store.submit_run(r)
            await store.flush()

        servers.call(put(run("run-a", agent="support-bot", steps=1)))
        polls = iter(
            [
                put(
                    run(
                        "run-a",
                        agent="support-bot",
                        status="failed",
                        steps=3,
                        last_activity=NOW - 5,
                        cost_usd=0.004,
                        failure_class="rate_limited",
                    ),
                    run(LONG_ID, tenant="key_0123456789abcdef", agent="coder", last_activity=NOW),
                )
            ]
        )

        def sleep(_: float) -> None:
            step_ = next(polls, None)
            if step_ is None:
                raise KeyboardInterrupt
            servers.call(step_)

        monkeypatch.setattr(runs_cli, "time", SimpleNamespace(sleep=sleep))
        args, shown = examples[2]
        code, out = brace_runs(*args, "--url", url)
        assert code == 0, out
        assert clockless(out) == clockless(shown)
    finally:
        servers.call(store.aclose())
