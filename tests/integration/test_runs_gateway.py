"""Agent runs end to end: the real ``openai`` SDK drives an agent loop through
``brace serve`` against ``brace mock`` playing the agent's model; the run, its model
and tool steps, failures and tenants are read back from the admin and caller APIs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import aiohttp
import openai
import pytest

from brace.config import parse_config

from .conftest import ServerThread

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "add", "parameters": {"type": "object", "properties": {}}},
    },
]


def _step(
    client: openai.OpenAI, model: str, messages: list[Any], headers: dict[str, str], stream: bool
) -> tuple[str, dict[str, Any]]:
    """One model call: its request id and the assistant message to append."""
    create = client.chat.completions
    if not stream:
        raw = create.with_raw_response.create(
            model=model, messages=messages, tools=TOOLS, extra_headers=headers
        )
        return raw.headers["x-request-id"], raw.parse().choices[0].message.model_dump(
            exclude_none=True
        )
    parts: dict[int, dict[str, str]] = {}
    with create.with_streaming_response.create(
        model=model, messages=messages, tools=TOOLS, stream=True, extra_headers=headers
    ) as resp:
        rid = resp.headers["x-request-id"]
        for chunk in resp.parse():
            deltas = (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []
            for d in deltas:
                p = parts.setdefault(d.index, {"id": "", "name": "", "args": ""})
                p["id"] = d.id or p["id"]
                if d.function is not None:
                    p["name"] += d.function.name or ""
                    p["args"] += d.function.arguments or ""
    if not parts:
        return rid, {"role": "assistant", "content": "done"}
    calls = [
        {"id": p["id"], "type": "function", "function": {"name": p["name"], "arguments": p["args"]}}
        for _, p in sorted(parts.items())
    ]
    return rid, {"role": "assistant", "content": None, "tool_calls": calls}


def agent_loop(
    client: openai.OpenAI,
    model: str,
    headers: dict[str, str] | None = None,
    *,
    stream: bool = False,
    max_turns: int = 10,
) -> tuple[list[str], int]:
    """A plain agent loop: call the model, run every tool it asks for, send the results,
    until a final answer.  Returns the request ids and the number of tool calls run."""
    messages: list[Any] = [{"role": "user", "content": "weather in Oslo, then add 2 and 2"}]
    request_ids: list[str] = []
    tools_run = 0
    for _ in range(max_turns):
        rid, message = _step(client, model, messages, headers or {}, stream)
        request_ids.append(rid)
        messages.append(message)
        calls = message.get("tool_calls") or []
        if not calls:
            return request_ids, tools_run
        for call in calls:
            tools_run += 1
            messages.append(
                {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"ok": True})}
            )
    raise AssertionError("the agent never finished")


def get_json(url: str, key: str | None = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_run(base: str, run_id: str, *, status: str | None = None, key: str | None = None) -> Any:
    """The run from the admin API once its rows are written (the writer batches)."""
    deadline = time.monotonic() + 10
    while True:
        code, body = get_json(f"{base}/admin/runs/{run_id}", key)
        if code == 200 and (status is None or body["status"] == status):
            return body
        assert time.monotonic() < deadline, (code, body)
        time.sleep(0.1)


@pytest.fixture(scope="module")
def env(servers: ServerThread) -> tuple[str, str]:
    mock = servers.mock(agent_turns=2, agent_parallel=2, seed=3)
    _, url = servers.gateway(
        {
            "models": {
                "chat": {"deployments": [{"provider": "mock", "model": "m", "base_url": f"{mock}/v1"}]},
                "claude": {"deployments": [{"provider": "anthropic-mock", "model": "claude-mock", "base_url": mock}]},
            },
            "telemetry": {"store": "sqlite"},
        }
    )  # fmt: skip
    return url, mock


def client(url: str, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{url}/v1", api_key=kw.pop("api_key", "unused"), max_retries=0, **kw
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_named_agent_run_has_its_model_and_parallel_tool_steps(
    env: tuple[str, str], stream: bool
) -> None:
    url, _ = env
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    rids, tools_run = agent_loop(
        client(url),
        "chat",
        {"x-brace-run-id": run_id, "x-brace-agent": "weather-bot"},
        stream=stream,
    )
    assert len(rids) == 3 and tools_run == 4  # 2 turns x 2 parallel calls, then the answer
    run = wait_run(url, run_id, status="completed")
    assert (run["agent"], run["linked_by"], run["tenant"]) == ("weather-bot", "header", "local")
    assert (run["model_steps"], run["tool_steps"]) == (3, 4)
    assert run["request_ids"] == rids
    steps = run["steps"]
    assert [s["kind"] for s in steps] == ["model", "tool", "tool", "model", "tool", "tool", "model"]
    assert all(s["status"] == "ok" for s in steps)
    assert {s["name"] for s in steps if s["kind"] == "tool"} == {"get_weather", "add"}
    first_tools = steps[1:3]
    assert first_tools[0]["started_at"] == first_tools[1]["started_at"]  # parallel
    assert all(t["opened_by"] == rids[0] and t["closed_by"] == rids[1] for t in first_tools)
    assert steps[0]["request_id"] == rids[0] and steps[0]["input_tokens"] > 0
    assert run["input_tokens"] == sum(s["input_tokens"] or 0 for s in steps)
    # the request log links back to the run
    code, row = get_json(f"{url}/admin/requests/{rids[1]}")
    assert code == 200 and row["run_id"] == run_id


def test_an_unmodified_agent_is_found_by_its_conversation(env: tuple[str, str]) -> None:
    url, _ = env
    rids, _ = agent_loop(client(url), "chat")
    deadline = time.monotonic() + 10
    while True:
        code, row = get_json(f"{url}/admin/requests/{rids[-1]}")
        if code == 200 and row.get("run_id"):
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.1)
    run = wait_run(url, row["run_id"], status="completed")
    assert run["linked_by"] == "conversation" and run["request_ids"] == rids
    assert (run["model_steps"], run["tool_steps"]) == (3, 4)


def test_an_anthropic_translated_group_gives_the_same_run(env: tuple[str, str]) -> None:
    url, _ = env
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    rids, tools_run = agent_loop(client(url), "claude", {"x-brace-run-id": run_id})
    run = wait_run(url, run_id, status="completed")
    assert tools_run == 4 and (run["model_steps"], run["tool_steps"]) == (3, 4)
    assert run["request_ids"] == rids
    assert all(s["tool_type"] == "function" for s in run["steps"] if s["kind"] == "tool")


def test_a_run_that_fails_midway_shows_the_step_and_its_cause(servers: ServerThread) -> None:
    mock = servers.mock(agent_turns=3, seed=5)
    _, url = servers.gateway(
        {"models": {"solo": {"deployments": [{"provider": "mock", "name": "only", "model": "m", "base_url": f"{mock}/v1"}]}}}
    )  # fmt: skip
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    c = client(url)
    messages: list[Any] = [{"role": "user", "content": "go"}]
    headers = {"x-brace-run-id": run_id}
    for _ in range(2):
        msg = (
            c.chat.completions.create(
                model="solo", messages=messages, tools=TOOLS, extra_headers=headers
            )
            .choices[0]
            .message
        )
        messages.append(msg.model_dump(exclude_none=True))
        for call in msg.tool_calls or []:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "ok"})

    async def outage() -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{mock}/_mock/config", json={"profile": "outage"}) as r,
        ):
            assert r.status == 200

    servers.call(outage())
    with pytest.raises(openai.APIStatusError) as err:
        c.chat.completions.create(
            model="solo", messages=messages, tools=TOOLS, extra_headers=headers
        )
    assert err.value.status_code >= 500
    run = wait_run(url, run_id, status="failed")
    failing = run["steps"][run["failure_step"] - 1]
    assert failing["kind"] == "model" and failing["status"] == "failed"
    assert run["failure_step"] == 5  # model, tool, model, tool, then the failed model step
    assert run["failure_class"] == failing["error_class"] and run["failure_class"]
    assert run["failure_deployment"] == "only"


def test_runs_are_scoped_to_the_key(servers: ServerThread) -> None:
    mock = servers.mock(agent_turns=1, seed=9)
    raw = {
        "server": {"admin_key": "${BRACE_ADMIN_KEY}"},
        "models": {"chat": {"deployments": [{"provider": "mock", "model": "m", "base_url": f"{mock}/v1"}]}},
        "telemetry": {"database": f"{servers.tmp}/scoped.db"},
    }  # fmt: skip
    _, url = servers.gateway(parse_config(raw, env={"BRACE_ADMIN_KEY": "master-secret"}))

    def create_key(name: str) -> str:
        import urllib.request

        req = urllib.request.Request(
            f"{url}/admin/keys", data=json.dumps({"name": name}).encode(), method="POST",
            headers={"Authorization": "Bearer master-secret", "content-type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.loads(resp.read())["key"])

    key_a, key_b = create_key("a"), create_key("b")
    run_id = "shared-name"
    agent_loop(client(url, api_key=key_a), "chat", {"x-brace-run-id": run_id})
    agent_loop(client(url, api_key=key_b), "chat", {"x-brace-run-id": run_id})
    deadline = time.monotonic() + 10
    while True:
        code_a, run_a = get_json(f"{url}/v1/runs/{run_id}", key_a)
        if code_a == 200 and run_a["status"] == "completed":
            break
        assert time.monotonic() < deadline, (code_a, run_a)
        time.sleep(0.1)
    code_b, run_b = get_json(f"{url}/v1/runs/{run_id}", key_b)
    assert code_b == 200 and run_a["tenant"] != run_b["tenant"]  # two runs, one name
    assert run_a["model_steps"] == 2 and run_b["model_steps"] == 2
    key_c = create_key("c")
    code_c, body_c = get_json(f"{url}/v1/runs/{run_id}", key_c)
    assert code_c == 404 and body_c["error"]["code"]  # another key neither reads nor joins
    code, listing = get_json(f"{url}/admin/runs?q={run_id}", "master-secret")
    assert code == 200 and len([r for r in listing["data"] if r["run_id"] == run_id]) == 2


def test_a_bad_run_header_is_a_400_naming_it(env: tuple[str, str]) -> None:
    url, _ = env
    with pytest.raises(openai.BadRequestError) as err:
        client(url).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-brace-run-id": "not ok"},
        )  # fmt: skip
    assert err.value.body["param"] == "x-brace-run-id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        client(url).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-brace-run-idd": "r"},
        )  # fmt: skip
    assert err.value.body["param"] == "x-brace-run-idd"  # type: ignore[index]
