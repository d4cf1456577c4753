"""The request log's admin API and the ``brace logs`` / ``brace trace`` commands, over
real loopback HTTP against a real SQLite store.

The routes are mounted on a small aiohttp app with a stand-in gateway (``config`` and
``telemetry.store``), served from the module's server thread; the CLI runs in process
(typer's CliRunner) and, for ``--follow``, as a real subprocess stopped with SIGINT.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import typer
from aiohttp import web
from typer.testing import CliRunner

from brace.config import parse_config
from brace.gateway.routes import logs
from brace.logs_cli import register_cli
from brace.store.requests import SQLiteStore
from brace.telemetry.record import AttemptRecord, RequestRecord

from .conftest import ServerThread

ADMIN_KEY = "adm-secret-key"
NOW = time.time()


def rec(i: int, **kw: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "request_id": f"req-{i:04d}",
        "trace_id": f"{i:032x}",
        "span_id": f"{i:016x}",
        "parent_span_id": None,
        "operation": "chat",
        "model": "gpt",
        "group": "gpt",
        "started_at": NOW - 30 * i - 1,
        "duration": 0.2,
        "status": 200,
        "deployment": "gpt-a",
        "provider": "openai",
        "input_tokens": 12,
        "output_tokens": 3,
        "cost_usd": 0.0002,
        "tenant": ["t1", "t2"][i % 2],
        "attempts": [AttemptRecord("gpt-a", "gpt", "openai", 0.0, 0.2, None, 200)],
    }
    fields.update(kw)
    return RequestRecord(**fields)


STORY = rec(
    1,
    trace_id="ab" * 16,
    model="gpt",
    group="claude",
    deployment="claude-b",
    duration=1.2,
    ttft=0.4,
    fallback=["gpt", "claude"],
    hedged=True,
    attempts=[
        AttemptRecord("gpt-a", "gpt", "openai", 0.0, 0.1, "rate_limited", 429),
        AttemptRecord("gpt-b", "gpt", "openai", 0.15, 0.2, "server_error", 500, retry_delay=0.05),
        AttemptRecord("claude-a", "claude", "anthropic", 0.4, 0.8, None, 200),
        AttemptRecord("claude-b", "claude", "anthropic", 0.6, 0.5, None, 200, hedge=True),
    ],
)
FAILED = rec(
    2,
    status=502,
    error_class="server_error",
    error="upstream answered 500",
    attempts=[AttemptRecord("gpt-a", "gpt", "openai", 0.0, 0.3, "server_error", 500)],
)
NEXT_STEP = rec(3, trace_id="ab" * 16, model="embed", group="embed", deployment="emb-1")


def seed() -> list[RequestRecord]:
    return [STORY, FAILED, NEXT_STEP, *(rec(i) for i in range(4, 12))]


class Log:
    """A started SQLite store on the server thread, behind two route apps: one open
    (loopback, no key) and one that needs the admin key; plus one with the store off."""

    def __init__(self, servers: ServerThread, path: Path) -> None:
        self.servers = servers
        self.store = SQLiteStore(path)

        async def build() -> tuple[web.Application, web.Application, web.Application]:
            await self.store.start()
            for r in seed():
                self.store.submit(r)
            await self.store.flush()
            return (
                self._app(self.store, admin_key=False),
                self._app(self.store, admin_key=True),
                self._app(None, admin_key=False),
            )

        open_app, keyed_app, off_app = servers.call(build())
        self.url = servers.serve_app(open_app)
        self.keyed_url = servers.serve_app(keyed_app)
        self.off_url = servers.serve_app(off_app)

    @staticmethod
    def _app(store: SQLiteStore | None, *, admin_key: bool) -> web.Application:
        server: dict[str, Any] = {"host": "127.0.0.1"}
        if admin_key:
            server["admin_key"] = "${BRACE_ADMIN_KEY}"
        config = parse_config(
            {
                "server": server,
                "models": {"gpt": {"deployments": [{"provider": "mock", "model": "m"}]}},
            },
            # $BRACE_ADMIN_KEY alone makes it the master key: only the keyed app sees it
            env={"BRACE_ADMIN_KEY": ADMIN_KEY} if admin_key else {},
        )
        gateway: Any = SimpleNamespace(config=config, telemetry=SimpleNamespace(store=store))
        app = web.Application()
        logs.setup(app, gateway)
        return app

    def submit(self, record: RequestRecord) -> None:
        async def go() -> None:
            self.store.submit(record)
            await self.store.flush()

        self.servers.call(go())

    def close(self) -> None:
        self.servers.call(self.store.aclose())


@pytest.fixture(scope="module")
def log(servers: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    lg = Log(servers, tmp_path_factory.mktemp("logs") / "log.db")
    try:
        yield lg
    finally:
        lg.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


# ----------------------------------------------------------------------------- routes


def test_list_filters_and_pages(log: Log) -> None:
    status, body = get(f"{log.url}/admin/requests")
    assert status == 200 and body["object"] == "list" and body["next_cursor"] is None
    assert [r["request_id"] for r in body["data"]] == [f"req-{i:04d}" for i in range(1, 12)]
    assert "content" not in body["data"][0]

    _, errors = get(f"{log.url}/admin/requests?status=error")
    assert [r["request_id"] for r in errors["data"]] == ["req-0002"]
    _, by_model = get(f"{log.url}/admin/requests?model=embed")
    assert [r["request_id"] for r in by_model["data"]] == ["req-0003"]
    _, by_q = get(f"{log.url}/admin/requests?q={'ab' * 8}")
    assert [r["request_id"] for r in by_q["data"]] == ["req-0001", "req-0003"]
    _, recent = get(f"{log.url}/admin/requests?since={NOW - 100}")
    assert [r["request_id"] for r in recent["data"]] == ["req-0001", "req-0002", "req-0003"]
    _, tenant = get(f"{log.url}/admin/requests?tenant=t1&error_class=server_error")
    assert [r["request_id"] for r in tenant["data"]] == ["req-0002"]

    seen: list[str] = []
    cursor = ""
    while True:
        _, page = get(f"{log.url}/admin/requests?limit=4" + (f"&before={cursor}" if cursor else ""))
        seen += [r["request_id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"req-{i:04d}" for i in range(1, 12)]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("status=teapot", "status"),
        ("before=bogus", "before"),
        ("since=yesterday", "since"),
        ("until=-1", "until"),
    ],
)
def test_bad_list_params_are_400_naming_the_param(log: Log, query: str, param: str) -> None:
    status, body = get(f"{log.url}/admin/requests?{query}")
    assert status == 400
    assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"


def test_one_request_and_its_trace(log: Log) -> None:
    status, one = get(f"{log.url}/admin/requests/req-0001")
    assert status == 200
    assert one["fallback"] == ["gpt", "claude"] and one["group"] == "claude"
    assert [a["deployment"] for a in one["attempts"]] == ["gpt-a", "gpt-b", "claude-a", "claude-b"]
    assert one["attempts"][3]["hedge"] is True and one["absorbed"] == 2
    assert [a["retry_delay"] for a in one["attempts"]] == [None, 0.05, None, None]
    status, missing = get(f"{log.url}/admin/requests/nope")
    assert status == 404 and missing["error"]["code"] == "not_found"
    assert missing["error"]["param"] == "request_id"

    status, trace = get(f"{log.url}/admin/traces/{'ab' * 16}")
    assert status == 200 and trace["trace_id"] == "ab" * 16
    assert [r["request_id"] for r in trace["data"]] == ["req-0003", "req-0001"]  # oldest first
    assert [len(r["attempts"]) for r in trace["data"]] == [1, 4]
    status, _ = get(f"{log.url}/admin/traces/{'0' * 32}")
    assert status == 404


def test_spend_overview_and_store_stats(log: Log) -> None:
    status, spend = get(f"{log.url}/admin/spend?group_by=model")
    assert status == 200 and spend["group_by"] == "model"
    assert {r["key"]: r["requests"] for r in spend["rows"]} == {"gpt": 10, "embed": 1}
    assert spend["total"]["input_tokens"] == 12 * 11
    status, bad = get(f"{log.url}/admin/spend?group_by=week")
    assert status == 400 and bad["error"]["param"] == "group_by"

    status, view = get(f"{log.url}/admin/overview?window_s=3600&bucket_s=120")
    assert status == 200 and len(view["buckets"]) == 30
    totals = view["totals"]
    assert totals["requests"] == 11
    assert totals["errors_surfaced"] == 1 and totals["errors_absorbed"] == 2
    assert totals["by_cause"] == {"rate_limited": 1, "server_error": 2}
    status, bad = get(f"{log.url}/admin/overview?bucket_s=0")
    assert status == 400 and bad["error"]["param"] == "bucket_s"

    status, stats = get(f"{log.url}/admin/store")
    assert status == 200 and stats["engine"] == "sqlite"
    assert stats["written"] >= 11 and stats["dropped"] == 0 and stats["last_error"] is None


def test_store_off_is_503(log: Log) -> None:
    for path in ("/admin/requests", "/admin/requests/x", "/admin/spend", "/admin/store"):
        status, body = get(log.off_url + path)
        assert status == 503
        assert body["error"]["message"] == "the request log is off (telemetry.store: off)"
        assert body["error"]["code"] == "request_log_off"


def test_admin_key_is_required_when_set(log: Log) -> None:
    status, body = get(f"{log.keyed_url}/admin/requests")
    assert status == 401 and body["error"]["code"] == "invalid_admin_key"
    status, body = get(
        f"{log.keyed_url}/admin/requests/req-0001", {"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert status == 200 and body["request_id"] == "req-0001"


def test_a_failing_store_answers_503(servers: ServerThread, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "broken.db")
    servers.call(store.start())
    try:
        import sqlite3

        conn = sqlite3.connect(tmp_path / "broken.db")
        conn.execute("DROP TABLE attempts")
        conn.execute("DROP TABLE requests")
        conn.commit()
        conn.close()
        app = Log._app(store, admin_key=False)
        url = servers.serve_app(app)
        status, body = get(f"{url}/admin/requests")
        assert status == 503 and body["error"]["code"] == "request_log_unavailable"
        assert "OperationalError" in body["error"]["message"]
    finally:
        servers.call(store.aclose())


# ----------------------------------------------------------------------------- the CLI


def cli() -> typer.Typer:
    app = typer.Typer()
    register_cli(app)
    return app


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli(), list(args), env={"COLUMNS": "220", **(env or {})})
    return result.exit_code, result.output


def test_logs_shows_a_table_of_recent_requests(log: Log) -> None:
    code, out = run("logs", "--url", log.url, "--limit", "3")
    assert code == 0, out
    lines = [line for line in out.splitlines() if "req-" in line]
    assert [line.split()[2] for line in lines] == [
        "req-0003",
        "req-0002",
        "req-0001",
    ]  # newest last
    assert "502 server_error" in out
    assert "fallback gpt>claude" in out and "hedged" in out and "2 absorbed" in out

    code, out = run("logs", "--url", log.url, "--status", "error")
    assert code == 0 and [ln.split()[2] for ln in out.splitlines() if "req-" in ln] == ["req-0002"]
    code, out = run("logs", "--url", log.url, "--model", "embed", "--error-class", "server_error")
    assert code == 0 and "no request in the log yet" in out


def test_logs_reports_http_and_connection_errors(log: Log) -> None:
    code, out = run("logs", "--url", log.keyed_url)
    assert code == 1 and "401" in out and "admin_key" in out
    code, out = run("logs", "--url", log.keyed_url, env={"BRACE_ADMIN_KEY": ADMIN_KEY})
    assert code == 0 and "req-0001" in out
    code, out = run(
        "logs", "--url", log.keyed_url, "--admin-key-env", "MY_KEY", env={"MY_KEY": ADMIN_KEY}
    )
    assert code == 0 and "req-0001" in out
    code, out = run("logs", "--url", log.off_url)
    assert code == 1 and "503 the request log is off" in out
    code, out = run("logs", "--url", "http://127.0.0.1:1")
    assert code == 1 and "cannot reach the gateway" in out


def test_trace_draws_the_attempt_timeline(log: Log) -> None:
    code, out = run("trace", "req-0001", "--url", log.url)
    assert code == 0, out
    assert "gpt → claude" in out and "ttft 400 ms" in out and "fallback gpt > claude" in out
    attempts = [line for line in out.splitlines() if "█" in line]
    assert len(attempts) == 4
    assert "gpt-a" in attempts[0] and "429 rate_limited" in attempts[0]
    assert "gpt-b" in attempts[1] and "retry after 50 ms" in attempts[1]
    assert "claude-a" in attempts[2] and "fallback → claude" in attempts[2]
    assert "claude-b" in attempts[3] and "hedge" in attempts[3] and "200 ok" in attempts[3]
    # the bars start where the attempts start: later attempts start further right
    starts = [line.index("█") for line in attempts]
    assert starts == sorted(starts) and starts[0] < starts[2]
    # the other request of the trace is listed
    assert "2 requests" in out and "req-0003" in out

    code, out = run("trace", "ab" * 16, "--url", log.url)  # a trace id works too
    assert code == 0 and "req-0001" in out and "req-0003" in out
    code, out = run("trace", "nope", "--url", log.url)
    assert code == 1 and "404" in out


def test_logs_follow_prints_new_requests_and_exits_on_ctrl_c(log: Log) -> None:
    code = (
        "import typer; from brace.logs_cli import register_cli; "
        "app = typer.Typer(); register_cli(app); app()"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "logs",
            "--url",
            log.url,
            "--follow",
            "--interval",
            "0.1",
            "--limit",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "220"},
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def wait_for(text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if text in line:
                return line
        raise AssertionError(f"{text!r} never printed")

    try:
        wait_for("req-0001")
        log.submit(rec(90, started_at=time.time()))
        # a long request that started earlier but ended (and was stored) later
        log.submit(rec(91, started_at=time.time() - 60, status=429, error_class="rate_limited"))
        line = wait_for("req-0091")
        assert "429 rate_limited" in line
        wait_for("req-0090")  # printed after req-0091: oldest first
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
