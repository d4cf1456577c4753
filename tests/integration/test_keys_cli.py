"""End-to-end tests of ``brace keys`` and ``brace serve --allow-unauthenticated``: the
real CLI in subprocesses, against a real gateway on loopback (``server.admin_key``
set), checked with the real ``openai`` SDK.

Each ``brace`` process pays ~1.5 s of imports, so the two ``serve`` runs start
when the module starts, the key commands run as processes one after another, and
the cases that only check an option's parsing or an error line run the same typer
app in-process (``CliRunner``).
"""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from brace.cli import app
from brace.config import parse_config
from brace.gateway import Gateway

from ._cli_proc import CliProcess, Processes
from .conftest import ServerThread

ADMIN = "sk-admin-TESTMASTER-0123456789"
HELLO: Any = [{"role": "user", "content": "hi"}]
KEY_LINE = re.compile(r"^\s+(sk-brace-[A-Za-z0-9_-]{43})\s*$", re.M)
WIDE = {"COLUMNS": "250"}  # rich tables and typer's error box: no wrapping in tests


def words(text: str) -> str:
    """``text`` without typer's box borders, every run of whitespace made one space."""
    return " ".join(text.replace("│", " ").split())


@dataclass
class Env:
    gateway: Gateway
    url: str
    procs: Processes
    oneshots: dict[str, CliProcess]
    tmp: Path

    def start(self, *args: str, admin: str | None = ADMIN) -> CliProcess:
        return self.procs.start(*args, env={**WIDE, "BRACE_ADMIN_KEY": admin or ""})

    def keys(self, *args: str, admin: str | None = ADMIN) -> tuple[int, CliProcess]:
        """Run ``brace keys ARGS --url <gateway>`` to the end."""
        p = self.start("keys", *args, "--url", self.url, admin=admin)
        rc = p.wait(20)
        assert ADMIN not in p.stdout + p.stderr  # the master key is never printed
        return rc, p

    def done(self, name: str) -> tuple[int, CliProcess]:
        p = self.oneshots[name]
        return p.wait(20), p

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the admin API directly (set-up and checks that do not go through the CLI)."""
        req = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def invoke(self, *args: str, admin: str | None = ADMIN) -> tuple[int, str, str]:
        """Run ``brace ARGS`` in-process: (exit code, stdout, stderr)."""
        result = CliRunner().invoke(app, list(args), env={**WIDE, "BRACE_ADMIN_KEY": admin or ""})
        assert ADMIN not in result.stdout + result.stderr
        return result.exit_code, result.stdout, result.stderr

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=10)


def serve_yaml(path: Path, db: Path) -> Path:
    """A gateway with one mock deployment and no admin key (local mode)."""
    path.write_text(
        "server: {port: 0}\n"
        f"telemetry: {{database: '{db}'}}\n"
        "models:\n"
        "  chat:\n"
        "    deployments:\n"
        "      - {provider: mock, model: m, base_url: 'http://127.0.0.1:9/v1'}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def env(servers: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("keys-cli")
    procs = Processes()
    try:
        mock = servers.mock()
        deployment = {"provider": "mock", "model": "m", "base_url": f"{mock}/v1"}
        cfg = parse_config(
            {
                "server": {"admin_key": "${BRACE_ADMIN_KEY}"},
                "telemetry": {"database": str(tmp / "gateway.db")},
                "models": {
                    "chat": {"deployments": [deployment]},
                    "other": {"deployments": [deployment]},
                },
            },
            env={"BRACE_ADMIN_KEY": ADMIN},
        )
        gw, url = servers.gateway(cfg)
        local = serve_yaml(tmp / "local.yaml", tmp / "local.db")
        allowed = serve_yaml(tmp / "allowed.yaml", tmp / "allowed.db")
        no_key = {**WIDE, "BRACE_ADMIN_KEY": ""}
        oneshots = {
            "serve_exposed": procs.start(
                "serve", "--config", str(local), "--host", "0.0.0.0", env=no_key
            ),
            "serve_allowed": procs.start(
                "serve",
                "--config",
                str(allowed),
                "--host",
                "0.0.0.0",
                "--allow-unauthenticated",
                env=no_key,
            ),
            "wrong_key": procs.start(
                "keys", "list", "--url", url, env={**WIDE, "BRACE_ADMIN_KEY": "sk-admin-wrong"}
            ),
        }
        yield Env(gw, url, procs, oneshots, tmp)
    finally:
        procs.close()


@pytest.fixture(scope="module")
def created(env: Env) -> tuple[str, str, CliProcess]:
    """``brace keys create`` of a key scoped to ``chat``: (id, key, the process)."""
    rc, p = env.keys(
        "create",
        "ci-bot",
        "--team",
        "ml",
        "--model",
        "chat",
        "--rpm",
        "50",
        "--budget",
        "day:5",
        "--budget",
        "total:20:soft",
        "--expires-in",
        "30d",
        "--meta",
        "owner=alice",
    )
    assert rc == 0, p.describe()
    keys = KEY_LINE.findall(p.stdout)
    assert len(keys) == 1, p.stdout  # printed once
    m = re.search(r"created key (key_[0-9a-f]{16}) \(ci-bot\)", p.stdout)
    assert m, p.stdout
    return m.group(1), keys[0], p


# ----------------------------------------------------------------------------- keys


def test_create_prints_the_key_once_and_it_works_in_scope(
    env: Env, created: tuple[str, str, CliProcess]
) -> None:
    key_id, key, p = created
    out = words(p.stdout)
    assert "only time the key is shown: it cannot be shown again" in out, out
    assert "propagation: 1/1 gateway instances confirmed" in out, out
    record = env.gateway.keys.ring.get(key_id)
    assert record is not None
    assert (record.name, record.team, record.rpm) == ("ci-bot", "ml", 50)
    assert record.models == frozenset({"chat"})
    assert record.metadata == {"owner": "alice"}
    assert [(b.period, b.limit_usd, b.mode) for b in record.budgets] == [
        ("day", 5.0, "hard"),
        ("total", 20.0, "soft"),
    ]
    assert record.expires_at is not None
    assert abs(record.expires_at - record.created_at - 30 * 86_400) < 5

    client = env.sdk(key)
    resp = client.chat.completions.create(model="chat", messages=HELLO)
    assert resp.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="other", messages=HELLO)
    assert denied.value.status_code == 403


def test_list_shows_the_key_active_with_budget_use(
    env: Env, created: tuple[str, str, CliProcess]
) -> None:
    key_id, key, _ = created
    rc, p = env.keys("list", "--team", "ml")
    assert rc == 0, p.describe()
    rows = [line for line in p.stdout.splitlines() if key_id in line]
    assert len(rows) == 1, p.stdout
    row = words(rows[0])
    assert row.startswith(f"{key_id} ci-bot ml {key[:13]}… chat 50/- active 20"), row
    assert re.search(r"day \$[\d.]+/\$5\.00 \(\d+%\), total \$[\d.]+/\$20\.00 \(\d+%\) soft", row)
    assert key not in p.stdout  # only the prefix, never the key


def test_update_changes_rpm(env: Env) -> None:
    made = env.admin("POST", "/admin/keys", {"name": "to-update", "rpm": 10, "models": ["chat"]})
    rc, p = env.keys("update", made["id"], "--rpm", "7", "--clear-models", "--no-expiry")
    assert rc == 0, p.describe()
    assert "rpm/tpm  7/-" in p.stdout, p.stdout
    assert "propagation: 1/1" in p.stdout
    record = env.gateway.keys.ring.get(made["id"])
    assert record is not None and record.rpm == 7 and record.models is None


def test_revoke_refuses_the_key_when_the_command_returns(env: Env) -> None:
    made = env.admin("POST", "/admin/keys", {"name": "to-revoke"})
    client = env.sdk(made["key"])
    assert client.chat.completions.create(model="other", messages=HELLO).choices
    rc, p = env.keys("revoke", made["id"])
    assert rc == 0, p.describe()
    assert f"revoked key {made['id']} (to-revoke)" in p.stdout, p.stdout
    assert "propagation: 1/1 gateway instances confirmed" in p.stdout
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="other", messages=HELLO)
    assert refused.value.status_code == 401
    assert "revoked" in str(refused.value)
    rc, out, err = env.invoke("keys", "list", "--state", "revoked", "--json", "--url", env.url)
    assert rc == 0, err
    assert [k["id"] for k in json.loads(out)["data"]] == [made["id"]]


def test_team_budget_then_teams_lists_it(env: Env) -> None:
    rc, p = env.keys("team-budget", "research", "--budget", "day:2", "--budget", "month:50:soft")
    assert rc == 0, p.describe()
    assert "team research: day $0.00/$2.00 (0%), month $0.00/$50.00 (0%) soft" in p.stdout
    rc, p = env.keys("teams")
    assert rc == 0, p.describe()
    rows = [words(line) for line in p.stdout.splitlines() if line.startswith("research")]
    assert rows == ["research 0 day $0.00/$2.00 (0%), month $0.00/$50.00 (0%) soft"], p.stdout


def test_wrong_admin_key_exits_1_with_the_api_message(env: Env) -> None:
    rc, p = env.done("wrong_key")
    assert rc == 1, p.describe()
    assert p.stderr.strip() == (
        "brace keys list: 401 admin routes need Authorization: Bearer <server.admin_key>"
    )
    assert "sk-admin-wrong" not in p.stdout + p.stderr


def test_api_errors_are_one_line_and_exit_1(env: Env) -> None:
    rc, out, err = env.invoke("keys", "show", "key_nope", "--url", env.url)
    assert (rc, out, err) == (1, "", "brace keys show: 404 no key with id 'key_nope'\n")
    rc, out, err = env.invoke("keys", "update", "key_nope", "--rpm", "3", "--url", env.url)
    assert (rc, err) == (1, "brace keys update: 404 no key with id 'key_nope'\n")
    # a value the CLI lets through and the API refuses: the API's message
    rc, out, err = env.invoke("keys", "create", "x", "--model", "nope", "--url", env.url)
    assert rc == 1 and err.startswith("brace keys create: 400 models: 'nope' is not a model"), err
    rc, out, err = env.invoke("keys", "list", "--url", env.url, "--admin-key-env", "BRACE_NO_VAR")
    assert rc == 1 and err.endswith("<server.admin_key> ($BRACE_NO_VAR is not set)\n"), err


def test_unreachable_gateway_exits_1(env: Env) -> None:
    rc, out, err = env.invoke("keys", "list", "--url", "http://127.0.0.1:1")
    assert rc == 1 and out == "", out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("brace keys list: cannot reach the gateway at http://127.0.0.1:1:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["create", "x", "--budget", "x"],
            "Invalid value for '--budget': 'x': expected PERIOD:USD[:MODE] with PERIOD day, "
            "month or total and MODE hard or soft",
        ),
        (["create", "x", "--budget", "week:5"], "unknown period 'week'"),
        (["create", "x", "--budget", "day:-1"], "must be a finite USD value >= 0"),
        (["create", "x", "--budget", "day:5:strict"], "unknown mode 'strict'"),
        (
            ["create", "x", "--expires-in", "soon"],
            "Invalid value for '--expires-in': 'soon': expected a duration such as 30d",
        ),
        (["create", "x", "--expires-at", "tomorrow"], "expected an ISO 8601 time"),
        (["create", "x", "--meta", "owner"], "expected KEY=VALUE"),
        (["create", "x", "--priority", "urgent"], "'urgent' is not one of"),
        (["create", "x", "--rpm", "0"], "Invalid value for '--rpm'"),
        (
            ["create", "x", "--expires-in", "1d", "--expires-at", "2030-01-01"],
            "give --expires-in or --expires-at, not both",
        ),
        (["update", "key_x"], "nothing to change"),
        (["update", "key_x", "--model", "a", "--clear-models"], "--clear-models contradicts"),
        (["update", "key_x", "--clear", "name"], "expected one of team, rpm, tpm"),
        (["team-budget", "t"], "give --budget PERIOD:USD[:MODE] (repeat it) or --clear-budgets"),
    ],
)
def test_bad_option_values_exit_2_with_the_expected_form(
    env: Env, args: list[str], message: str
) -> None:
    # --url points nowhere: a value that parsed would end with exit 1, not 2
    rc, out, err = env.invoke("keys", *args, "--url", "http://127.0.0.1:1")
    assert rc == 2, (out, err)
    assert message in words(err), err


def test_parsed_values_reach_the_api(env: Env) -> None:
    rc, out, err = env.invoke(
        "keys",
        "create",
        "parsed",
        "--expires-at",
        "2030-01-02T03:04:05Z",
        "--budget",
        "month:$2.5:SOFT",
        "--priority",
        "batch",
        "--json",
        "--url",
        env.url,
    )
    assert rc == 0, err
    made = json.loads(out)
    assert made["key"].startswith("sk-brace-")
    assert made["expires_at"] == "2030-01-02T03:04:05Z"
    assert made["budgets"] == [{"period": "month", "limit_usd": 2.5, "mode": "soft"}]
    assert made["priority"] == "batch"
    rc, out, err = env.invoke(
        "keys", "update", made["id"], "--expires-in", "12h", "--clear", "priority", "--url", env.url
    )
    assert rc == 0, err
    record = env.gateway.keys.ring.get(made["id"])
    assert record is not None and record.priority is None and record.expires_at is not None
    assert abs(record.expires_at - record.updated_at - 12 * 3600) < 5
    rc, out, err = env.invoke("keys", "list", "--state", "revoked", "--json", "--url", env.url)
    assert rc == 0 and made["id"] not in {k["id"] for k in json.loads(out)["data"]}


# ----------------------------------------------------------------------------- serve


def test_serve_local_mode_on_all_interfaces_exits_2(env: Env) -> None:
    rc, p = env.done("serve_exposed")
    assert rc == 2, p.describe()
    errors = [line for line in p.stderr.splitlines() if line.startswith("cannot start:")]
    assert len(errors) == 1, p.stderr
    assert "refusing to serve 0.0.0.0 in local mode" in errors[0]
    assert "--allow-unauthenticated" in errors[0]
    assert "Traceback" not in p.stderr
    assert "listening" not in p.stdout


def test_serve_allow_unauthenticated_starts(env: Env) -> None:
    p = env.oneshots["serve_allowed"]
    port = p.wait_for_line(r"listening on http://0\.0\.0\.0:(\d+)/v1", timeout=20).group(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
        assert resp.status == 200
    models = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="anything", max_retries=0, timeout=5
    ).models.list()
    assert [m.id for m in models] == ["chat"]  # served without any key
    # ...but --host 0.0.0.0 is server.host: no admin API there without an admin key
    # (it used to answer, key creation included, when only the bind address changed)
    with pytest.raises(urllib.error.HTTPError) as off:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/keys", timeout=5)
    assert off.value.code == 403
    assert "admin API is off on a non-loopback address" in off.value.read().decode()
    p.signal(signal.SIGTERM)
    assert p.wait(10) == 0, p.describe()
    assert "NON-LOOPBACK" in p.stderr  # the loud warning
    assert "Traceback" not in p.stderr
