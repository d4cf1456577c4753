"""Agent runs: identity at the door, conversation links, the tracker's steps and
statuses, and the ``runs`` slot over JSON and streamed answers (fake clock, no network)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from brace.config import RunsConfig
from brace.errors import BadRequest, Overloaded
from brace.events import EventBus
from brace.runs import (
    RunPolicy,
    RunStatusChanged,
    RunTracker,
    RunUpdated,
    StepUpdated,
    read_run,
    run_context,
)
from brace.runs._identity import current_run
from brace.runs._link import answer_key, continuation_key
from brace.stack import Request, Response, RunRef, StreamResponse, collect_stream, sse_frame

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


class Wall:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    def __init__(self, bus: EventBus) -> None:
        self.runs: dict[tuple[str, str], Any] = {}
        self.steps: dict[tuple[str, str, int], Any] = {}
        self.statuses: list[RunStatusChanged] = []
        bus.subscribe(self)

    def __call__(self, event: Any) -> None:
        if isinstance(event, RunUpdated):
            self.runs[(event.run.tenant, event.run.run_id)] = event.run
        elif isinstance(event, StepUpdated):
            s = event.step
            self.steps[(s.tenant, s.run_id, s.seq)] = s
        elif isinstance(event, RunStatusChanged):
            self.statuses.append(event)

    def steps_of(self, run_id: str, tenant: str = "local") -> list[Any]:
        return [s for (t, r, _), s in sorted(self.steps.items()) if (t, r) == (tenant, run_id)]


def answer(*calls: tuple[str, str], text: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": '{"a": 1}'}}
            for cid, name in calls
        ]
    return message


def response(message: dict[str, Any]) -> Response:
    body = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    return Response(orjson.dumps(body))


class Setup:
    def __init__(self, **config: Any) -> None:
        self.bus = EventBus()
        self.rec = Recorder(self.bus)
        self.wall = Wall()
        self.tracker = RunTracker(RunsConfig(**config), events=self.bus, wall=self.wall)
        self.policy = RunPolicy(self.tracker, cost=lambda req, res: 0.001)
        self.answers: list[Any] = []
        self.calls = 0
        self.handler = self.policy.wrap(self._inner)

    async def _inner(self, req: Request) -> Response | StreamResponse:
        self.calls += 1
        self.wall.t += 2.0  # the model takes 2 s
        nxt = self.answers.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        if callable(nxt):
            return nxt()  # type: ignore[no-any-return]
        return response(nxt)

    async def call(
        self, messages: list[dict[str, Any]], run: RunRef | None = None, *, tools: bool = True
    ) -> Request:
        body: dict[str, Any] = {"model": "g", "messages": messages}
        if tools:
            body["tools"] = TOOLS
        req = Request("chat", "g", body, request_id=f"r{self.calls + 1}")
        req.state.owner = "local"
        req.state.run = run
        result = await self.handler(req)
        if isinstance(result, StreamResponse):
            await collect_stream(result)
        return req


USER = {"role": "user", "content": "weather in Paris and Oslo?"}


# ----------------------------------------------------------------------------- identity


def test_headers_name_the_run_and_body_metadata_is_cleaned() -> None:
    body = {"metadata": {"brace_run_id": "r-1", "brace_agent": "bot", "user": "x"}}
    ref = read_run({}, body, "key_a")
    assert ref is not None and (ref.id, ref.tenant, ref.agent, ref.linked_by) == (
        "r-1",
        "key_a",
        "bot",
        "body",
    )
    assert body == {"metadata": {"user": "x"}}  # Brace's keys never go upstream
    body = {"metadata": {"brace_run_id": "r-1"}}
    ref = read_run({"x-brace-run-id": "from-header"}, body, "t")
    assert ref is not None and ref.id == "from-header" and ref.linked_by == "header"
    assert "metadata" not in body
    assert read_run({"x-other": "1"}, {}, "t") is None


@pytest.mark.parametrize(
    ("headers", "body", "param"),
    [
        ({"x-brace-run-id": "has space"}, {}, "x-brace-run-id"),
        ({"x-brace-run-id": "x" * 129}, {}, "x-brace-run-id"),
        ({"x-brace-run-id": "-starts-badly"}, {}, "x-brace-run-id"),
        ({"x-brace-run-idd": "r"}, {}, "x-brace-run-idd"),
        ({"x-brace-agent": "bot"}, {}, "x-brace-agent"),
        ({"x-brace-run-id": "r", "x-brace-agent": "a" * 65}, {}, "x-brace-agent"),
        ({"x-brace-run-id": "r", "x-brace-run-step": "bad\nlabel"}, {}, "x-brace-run-step"),
        ({}, {"metadata": {"brace_run_id": 7}}, "metadata.brace_run_id"),
        ({}, {"metadata": {"brace_run": "r"}}, "metadata.brace_run"),
    ],
)
def test_bad_run_identity_is_a_400_naming_the_header(
    headers: dict[str, str], body: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as err:
        read_run(headers, body, "t")
    assert err.value.param == param and err.value.http_status == 400


async def test_client_run_context_is_a_contextvar() -> None:
    assert current_run() is None
    with run_context("ctx-1", agent="researcher") as ctx:
        assert current_run() is ctx and ctx.agent == "researcher"
    assert current_run() is None
    with pytest.raises(BadRequest), run_context("bad id"):
        pass


# ----------------------------------------------------------------------------- links


def test_a_resent_conversation_finds_the_answer_it_continues() -> None:
    sent = [USER]
    ans = answer(("call_1", "get_weather"), text="Let me check")
    key = answer_key("local", sent, ans)
    # the client resends the answer with content null and reformatted arguments
    resent = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"a":1}'},
            }
        ],
    }
    nxt = [USER, resent, {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    assert continuation_key("local", nxt) == key
    assert continuation_key("other-tenant", nxt) != key  # scoped to the tenant
    edited = [{"role": "user", "content": "edited"}, resent]
    assert continuation_key("local", edited) != key
    assert continuation_key("local", [USER]) is None  # continues nothing


# ----------------------------------------------------------------------------- tracker


async def test_an_agent_loop_is_one_run_with_model_and_tool_steps() -> None:
    s = Setup()
    ref = RunRef("run-1", "local", "header", agent="bot")
    s.answers = [answer(("c1", "get_weather"), ("c2", "get_weather")), answer(text="done")]
    await s.call([USER], ref)
    s.wall.t += 1.5  # the tools run
    history = [
        USER,
        answer(("c1", "get_weather"), ("c2", "get_weather")),
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {
            "role": "tool",
            "tool_call_id": "c2",
            "content": [{"type": "text", "text": "x"}],
            "is_error": True,
        },
    ]
    await s.call(history, RunRef("run-1", "local", "header"))
    steps = s.rec.steps_of("run-1")
    assert [(st.seq, st.kind, st.name, st.status) for st in steps] == [
        (1, "model", "g", "ok"),
        (2, "tool", "get_weather", "ok"),
        (3, "tool", "get_weather", "error"),
        (4, "model", "g", "ok"),
    ]
    assert steps[0].duration == 2.0 and steps[0].tool_calls == 2
    assert steps[1].duration == 1.5 and steps[1].result_bytes == len("sunny")
    assert steps[1].opened_by == "r1" and steps[1].closed_by == "r2"
    assert steps[1].started_at == steps[2].started_at  # parallel calls are parallel steps
    run = s.rec.runs[("local", "run-1")]
    assert run.status == "completed" and run.agent == "bot"
    assert (run.steps, run.model_steps, run.tool_steps) == (4, 2, 2)
    assert run.input_tokens == 20 and run.cost_usd == pytest.approx(0.002)
    assert run.request_ids == ["r1", "r2"]
    assert [(c.old, c.new) for c in s.rec.statuses] == [(None, "running"), ("running", "completed")]


async def test_an_unmodified_agent_is_linked_by_its_conversation() -> None:
    s = Setup()
    first = answer(("c1", "get_weather"))
    s.answers = [first, answer(text="done")]
    r1 = await s.call([USER])  # no identity at all: its tool calls start a run
    assert r1.state.run is not None and r1.state.run.linked_by == "conversation"
    run_id = r1.state.run.id
    r2 = await s.call([USER, first, {"role": "tool", "tool_call_id": "c1", "content": "ok"}])
    assert r2.state.run is not None and r2.state.run.id == run_id
    assert [st.kind for st in s.rec.steps_of(run_id)] == ["model", "tool", "model"]
    assert s.rec.runs[("local", run_id)].status == "completed"


async def test_requests_without_run_or_tools_pay_nothing() -> None:
    s = Setup()
    s.answers = [answer(text="hi")]
    req = await s.call([USER], tools=False)
    assert req.state.run is None and not s.rec.runs and not s.rec.steps
    s.answers = [answer(text="no tool call")]
    await s.call([USER])  # tools offered, none asked for: not an agent loop
    assert not s.rec.runs


async def test_a_failed_step_fails_the_run_with_its_cause_and_a_retry_revives_it() -> None:
    s = Setup()
    ref = RunRef("run-f", "local", "header")
    s.answers = [answer(("c1", "t")), Overloaded("busy", deployment="dep-a")]
    await s.call([USER], ref)
    with pytest.raises(Overloaded):
        await s.call(
            [USER, answer(("c1", "t")), {"role": "tool", "tool_call_id": "c1", "content": "x"}], ref
        )
    run = s.rec.runs[("local", "run-f")]
    assert run.status == "failed" and run.failure_step == 3
    assert (run.failure_class, run.failure_deployment) == ("overloaded", "dep-a")
    assert s.rec.steps_of("run-f")[-1].status == "failed"
    s.answers = [answer(text="done")]
    await s.call([USER], ref)
    assert s.rec.runs[("local", "run-f")].status == "completed"


async def test_idle_runs_are_abandoned_and_open_tool_steps_unfinished() -> None:
    s = Setup(idle_timeout=60)
    s.answers = [answer(("c1", "t"))]
    await s.call([USER], RunRef("run-i", "local", "header"))
    s.wall.t += 30
    s.tracker.sweep()
    assert s.rec.runs[("local", "run-i")].status == "running"
    s.wall.t += 31
    s.tracker.sweep()
    assert s.rec.runs[("local", "run-i")].status == "abandoned"
    assert s.rec.steps_of("run-i")[-1].status == "unfinished"
    assert len(s.tracker) == 0


async def test_runs_in_memory_are_bounded() -> None:
    s = Setup(max_active=2)
    for i in range(3):
        s.answers = [answer(("c", "t"))]
        await s.call([USER], RunRef(f"run-{i}", "local", "header"))
    assert len(s.tracker) == 2 and s.tracker.evicted == 1
    assert s.rec.runs[("local", "run-0")].status == "abandoned"


async def test_tenants_do_not_share_runs() -> None:
    s = Setup()
    s.answers = [answer(("c1", "t")), answer(("c2", "t"))]
    await s.call([USER], RunRef("same", "key_a", "header"))
    await s.call([USER], RunRef("same", "key_b", "header"))
    assert s.rec.runs[("key_a", "same")].steps == 2
    assert s.rec.runs[("key_b", "same")].steps == 2


# ----------------------------------------------------------------------------- streams


def stream_with_calls() -> StreamResponse:
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "s1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]},
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 1,
                                "id": "s2",
                                "type": "function",
                                "function": {"name": "add", "arguments": "{}"},
                            }
                        ]
                    },
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]

    async def gen() -> Any:
        for c in chunks:
            yield sse_frame([orjson.dumps(c)])

    return StreamResponse(gen())


async def test_a_streamed_answer_opens_its_tool_steps_when_it_ends() -> None:
    s = Setup()
    s.answers = [stream_with_calls]
    req = await s.call([USER], RunRef("run-s", "local", "header"))
    steps = s.rec.steps_of("run-s")
    assert [(st.kind, st.name, st.tool_call_id) for st in steps] == [
        ("model", "g", None),
        ("tool", "get_weather", "s1"),
        ("tool", "add", "s2"),
    ]
    assert steps[0].status == "ok" and req.state.run is not None


async def test_a_streamed_first_step_starts_a_linked_run() -> None:
    s = Setup()
    s.answers = [stream_with_calls]
    r1 = await s.call([USER])
    assert r1.state.run is not None
    resent = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "s1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"a":1}'},
            },
            {"id": "s2", "type": "function", "function": {"name": "add", "arguments": "{}"}},
        ],
    }
    s.answers = [answer(text="done")]
    r2 = await s.call(
        [
            USER,
            resent,
            {"role": "tool", "tool_call_id": "s1", "content": "1"},
            {"role": "tool", "tool_call_id": "s2", "content": "2"},
        ]
    )
    assert r2.state.run is not None and r2.state.run.id == r1.state.run.id
    assert s.rec.runs[("local", r1.state.run.id)].status == "completed"
