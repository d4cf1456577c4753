"""Real agent frameworks against ``brace serve`` in front of ``brace mock``.

Each framework test module (``test_<framework>.py``) builds a small two-tool agent with
the framework's own OpenAI chat-completions model class, points it at the gateway
(``{gateway}/v1``, any API key), runs it, and checks:

- the agent finished, and its tools ran as often as the mock asked for them;
- the mock saw one chat completion per model step (``GET /_mock/stats``);
- every request the gateway received carried the run's identity (or none at all, for
  the variant that relies on conversation linking): :class:`Recorder`, a middleware
  placed on the gateway's own application, keeps what each chat request arrived with;
- the run appears in the admin API with the right steps (:func:`assert_run`): skipped
  while ``GET /admin/runs/{id}`` does not exist yet.

The frameworks are the ``agents`` extra of ``pyproject.toml``: each module starts with
``pytest.importorskip`` so that the suite skips, never errors, without them.

The snippets of ``docs/runs-frameworks.md`` are run from the file itself
(:func:`run_snippet`): the docs show exactly what the tests run.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from brace.config import parse_config
from brace.gateway import Gateway
from brace.mock import MockConfig

from ..integration.conftest import ServerThread

MODEL = "chat"
"""The gateway's model group the agents ask for (``model=`` in every snippet)."""

# --- The mock's options, in one place -------------------------------------------------
#
# Today ``brace mock`` answers a request that carries ``tools`` with ONE call of the
# first tool, and a request whose last message is a tool result with text: an agent
# makes 2 model calls and 1 tool call.  That is "agent mode" with 1 turn of 1 call.
#
# The planned agent mode (another branch) answers with tool calls for ``agent_turns``
# turns, ``agent_parallel`` calls per turn, cycling through the declared tools, then
# text.  As soon as ``MockConfig`` has these fields the tests use them: every
# expectation below follows from AGENT_MODE.  Change the names here if the mock's
# fields end up named differently.
AGENT_MODE: dict[str, Any] = {"agent_turns": 2, "agent_parallel": 2}


def mock_has_agent_mode() -> bool:
    return set(AGENT_MODE) <= set(MockConfig.model_fields)


@dataclass(frozen=True, slots=True)
class Expect:
    """What one agent run must look like, from the mock's behaviour."""

    turns: int
    """Model answers that ask for tools."""
    parallel: int
    """Tool calls in each of those answers."""

    @property
    def model_steps(self) -> int:
        return self.turns + 1  # the tool-calling answers, then the final text

    @property
    def tool_steps(self) -> int:
        return self.turns * self.parallel

    @property
    def steps(self) -> int:
        return self.model_steps + self.tool_steps


def mock_options() -> tuple[dict[str, Any], Expect]:
    """The ``MockConfig`` fields for the frameworks' upstream, and what they imply."""
    if mock_has_agent_mode():
        return dict(AGENT_MODE), Expect(AGENT_MODE["agent_turns"], AGENT_MODE["agent_parallel"])
    return {}, Expect(turns=1, parallel=1)


# --- The tools ------------------------------------------------------------------------


class Tools:
    """Two plain Python tools that count their calls; each framework wraps them its way."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_weather(self, city: str) -> str:
        """Current weather in a city."""
        self.calls.append(("get_weather", {"city": city}))
        return f"Sunny and 21 C in {city}"

    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        self.calls.append(("add", {"a": a, "b": b}))
        return a + b

    def functions(self) -> dict[str, Callable[..., Any]]:
        """Module-level-looking functions (name, docstring, annotations) over the bound
        methods: what a snippet's namespace gets as ``get_weather`` and ``add``."""

        def get_weather(city: str) -> str:
            """Current weather in a city."""
            return self.get_weather(city)

        def add(a: int, b: int) -> int:
            """Add two integers."""
            return self.add(a, b)

        return {"get_weather": get_weather, "add": add}


# --- What the gateway received -------------------------------------------------------


@dataclass(slots=True)
class Seen:
    """One chat request as the gateway received it."""

    headers: dict[str, str]
    """Lower-cased names."""
    body: dict[str, Any]
    status: int = 0
    request_id: str | None = None
    """The gateway's ``x-request-id`` for it (the run's ``request_ids`` hold these)."""


@dataclass
class Recorder:
    seen: list[Seen] = field(default_factory=list)

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return await handler(request)
        # aiohttp keeps the body it read: the route's own request.read() gets it again
        raw = await request.read()
        entry = Seen({k.lower(): v for k, v in request.headers.items()}, orjson.loads(raw))
        self.seen.append(entry)
        response = await handler(request)
        entry.status = response.status
        entry.request_id = response.headers.get("x-request-id")
        return response


class Stack:
    """``brace mock`` and a gateway in front of it, with a :class:`Recorder` on the
    gateway's application."""

    def __init__(self, servers: ServerThread) -> None:
        self.servers = servers
        options, self.expect = mock_options()
        self.mock_url = servers.mock(**options)
        self.recorder = Recorder()
        config = parse_config(
            {
                "models": {
                    MODEL: {
                        "deployments": [
                            {
                                "provider": "mock",
                                "model": "gpt-4o-mini",
                                "base_url": f"{self.mock_url}/v1",
                            }
                        ]
                    }
                },
                "telemetry": {"database": str(Path(servers.tmp) / "brace-frameworks.db")},
            },
            env={},
        )

        async def start() -> tuple[Gateway, int]:
            gw = Gateway(config)
            gw.app.middlewares.append(self.recorder.middleware)  # before start: not frozen yet
            return gw, await gw.start(host="127.0.0.1", port=0)

        self.gateway, port = servers.call(start())
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"

    def reset(self) -> None:
        """Forget what the mock and the recorder saw (between tests of one module)."""
        http_json("POST", f"{self.mock_url}/_mock/reset")
        self.recorder.seen.clear()

    def mock_chat_calls(self) -> int:
        stats = http_json("GET", f"{self.mock_url}/_mock/stats")
        return int(stats["by_endpoint"].get("/v1/chat/completions", 0))

    def close(self) -> None:
        self.servers.call(self.gateway.stop())


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    servers = ServerThread()
    built: Stack | None = None
    try:
        built = Stack(servers)
        yield built
    finally:
        if built is not None:
            built.close()
        servers.close()


@pytest.fixture
def gateway(stack: Stack, request: pytest.FixtureRequest) -> Stack:
    """The module's stack, with the mock's counters and the recorder emptied.  A test
    parametrized with ``admin=True`` (:data:`ADMIN`) is skipped before its agent runs
    while the gateway has no ``GET /admin/runs``."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("admin"):
        _skip_if_no_route(*_admin_get(stack, "/admin/runs/probe"))
    stack.reset()
    return stack


@pytest.fixture
def tools() -> Tools:
    return Tools()


# --- Checks ----------------------------------------------------------------------------


def http_json(method: str, url: str) -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as res:
        return orjson.loads(res.read())


IDENTITY_HEADERS = ("x-brace-run-id", "x-brace-agent", "x-brace-run-step")


def check_agent_run(
    stack: Stack,
    tools: Tools,
    *,
    headers: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> list[Seen]:
    """What holds today for one finished agent run: tool and model call counts, and the
    identity on every request (``headers`` / body ``metadata``; neither: no identity)."""
    expect = stack.expect
    assert len(tools.calls) == expect.tool_steps, tools.calls
    if expect.tool_steps >= 2:  # the mock cycles through the declared tools
        assert {name for name, _ in tools.calls} == {"get_weather", "add"}, tools.calls
    assert stack.mock_chat_calls() == expect.model_steps
    seen = stack.recorder.seen
    assert len(seen) == expect.model_steps, [s.body.get("messages") for s in seen]
    for s in seen:
        assert s.status == 200
        assert s.body["model"] == MODEL
        assert {t["function"]["name"] for t in s.body.get("tools") or []} == {
            "get_weather",
            "add",
        }
        sent = {k: v for k, v in s.headers.items() if k in IDENTITY_HEADERS}
        assert sent == (headers or {}), s.headers
        body_meta = s.body.get("metadata") or {}
        assert {k: v for k, v in body_meta.items() if k.startswith("brace_")} == (metadata or {})
    return seen


# --- Agent runs in the admin API (needs the lead's branch) ------------------------------
#
# GET /admin/runs/{run_id}: the run's fields (RunRecord.to_dict(): run_id, agent, status,
# linked_by, model_steps, tool_steps, trace_id...) plus ``steps``, each with ``kind``
# ("model" | "tool"), ``name``, ``status``.  Until that route is merged the gateway's
# fallback answers "404 no route for GET ...": assert_run then skips, and only then.


def _admin_get(stack: Stack, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"{stack.url}{path}", timeout=10) as res:
            return res.status, orjson.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"{}")


def _admin_poll(
    stack: Stack, path: str, ready: Callable[[Any], bool], timeout: float = 5.0
) -> tuple[int, Any]:
    """``GET path`` until ``ready(body)`` or ``timeout``: the request log and the run
    records are written off the hot path, a moment after the answer."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = _admin_get(stack, path)
        if _no_route(status, body) or (status == 200 and ready(body)):
            return status, body
        if time.monotonic() > deadline:  # a 404 for the run itself: not written yet, or never
            return status, body
        time.sleep(0.05)


def _no_route(status: int, body: Any) -> bool:
    message = str((body.get("error") or {}).get("message", "")) if isinstance(body, dict) else ""
    return status == 404 and message.startswith("no route for")


def _skip_if_no_route(status: int, body: Any) -> None:
    if _no_route(status, body):
        pytest.skip("agent runs not merged yet (GET /admin/runs has no route)")


def assert_run(
    stack: Stack,
    run_id: str,
    *,
    agent: str | None = None,
    linked_by: str | None = None,
) -> dict[str, Any]:
    """The run ``run_id`` is in the admin API, completed, with the model and tool steps
    the mock asked for, and every model request as a span of the run's trace."""
    expect = stack.expect
    status, run = _admin_poll(
        stack,
        f"/admin/runs/{run_id}",
        lambda r: r.get("status") == "completed" and len(r.get("steps") or ()) == expect.steps,
    )
    _skip_if_no_route(status, run)
    assert status == 200, run
    steps = run["steps"]
    kinds = [s["kind"] for s in steps]
    assert kinds.count("model") == expect.model_steps, steps
    assert kinds.count("tool") == expect.tool_steps, steps
    assert run["model_steps"] == expect.model_steps
    assert run["tool_steps"] == expect.tool_steps
    assert all(s["status"] == "ok" for s in steps), steps
    assert {s["name"] for s in steps if s["kind"] == "model"} == {MODEL}
    assert {s["name"] for s in steps if s["kind"] == "tool"} <= {"get_weather", "add"}
    assert run["status"] == "completed", run
    if agent is not None:
        assert run["agent"] == agent
    if linked_by is not None:
        assert run["linked_by"] == linked_by
    # the same requests the recorder saw, in order
    assert run["request_ids"] == [s.request_id for s in stack.recorder.seen]
    # as spans: every model step is a request of the run's trace
    if run.get("trace_id"):
        status, trace = _admin_poll(
            stack,
            f"/admin/traces/{run['trace_id']}",
            lambda t: {r["request_id"] for r in t["data"]} >= set(run["request_ids"]),
        )
        assert status == 200, trace
        assert {r["request_id"] for r in trace["data"]} >= set(run["request_ids"])
    return run


def run_of_request(stack: Stack, request_id: str) -> str:
    """The id of the run that holds ``request_id`` (for runs that sent no identity):
    assumes ``GET /admin/runs`` lists runs as ``{"data": [run, ...]}`` like the other
    admin lists, newest first."""
    status, listing = _admin_poll(
        stack,
        "/admin/runs?limit=50",
        lambda page: any(request_id in (r.get("request_ids") or ()) for r in page["data"]),
    )
    _skip_if_no_route(status, listing)
    assert status == 200, listing
    for run in listing["data"]:
        if request_id in (run.get("request_ids") or []):
            return str(run["run_id"])
    raise AssertionError(f"no run holds request {request_id}: {listing['data']}")


def assert_unidentified_run(stack: Stack) -> dict[str, Any]:
    """An agent that sent no identity still makes one run: its requests are linked by
    the conversation (each continues the run's last answer)."""
    first = stack.recorder.seen[0].request_id
    assert first is not None
    return assert_run(stack, run_of_request(stack, first), linked_by="conversation")


# --- The docs' snippets ------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "runs-frameworks.md"
DOC_URL = "http://127.0.0.1:4000/v1"
"""The gateway address the snippets show (``brace serve``'s default); the tests put
their own gateway's address in its place, and change nothing else."""
_SNIPPET = re.compile(r"<!-- snippet: ([\w-]+) -->\n```python\n(.*?)```", re.S)


def snippets() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _SNIPPET.finditer(DOC.read_text())}


def run_snippet(names: list[str], stack: Stack, **given: Any) -> dict[str, Any]:
    """Run the snippets ``names`` of docs/runs-frameworks.md, in order and in one
    namespace, against ``stack``'s gateway, with ``given`` (the tools, ``run_id``...)
    defined; returns the namespace."""
    found = snippets()
    namespace: dict[str, Any] = {"__name__": "snippet", **given}
    for name in names:
        source = found[name]
        source = source.replace(DOC_URL, stack.base_url)
        exec(compile(source, f"{DOC.name}:{name}", "exec"), namespace)
    return namespace


# --- One agent run per way of tagging it ---------------------------------------------

AGENT = "weather-bot"
"""The agent name the snippets send (``x-brace-agent``)."""
VARIANTS = ("header", "body", "none")
"""How a run is tagged: ``x-brace-run-id`` header, ``metadata.brace_run_id``, nothing."""
ADMIN = pytest.mark.parametrize("admin", [False, True], ids=["run", "in_admin_api"])
"""Each test twice: the checks that hold today (``run``), then also the run in the admin
API (``in_admin_api``: skipped until agent runs are merged), so that a skip never hides
a pass."""


def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex}"


def run_headers(run_id: str) -> dict[str, str]:
    """The identity headers the snippets send."""
    return {"x-brace-run-id": run_id, "x-brace-agent": AGENT}


def check_variant(stack: Stack, tools: Tools, variant: str, run_id: str) -> list[Seen]:
    """:func:`check_agent_run` for a run tagged the ``variant`` way."""
    if variant == "header":
        return check_agent_run(stack, tools, headers=run_headers(run_id))
    if variant == "body":
        return check_agent_run(stack, tools, metadata={"brace_run_id": run_id})
    return check_agent_run(stack, tools)


def run_variant(
    stack: Stack, tools: Tools, names: list[str], variant: str
) -> tuple[dict[str, Any], str]:
    """Run the snippets ``names`` as one agent run tagged the ``variant`` way and check
    what holds today (:func:`check_variant`); returns the snippets' namespace (for the
    framework's own checks of its result) and the run id given to them."""
    run_id = new_run_id()
    namespace = run_snippet(names, stack, run_id=run_id, **tools.functions())
    check_variant(stack, tools, variant, run_id)
    return namespace, run_id


def assert_variant_run(stack: Stack, run_id: str, variant: str) -> dict[str, Any]:
    """The run in the admin API (:func:`assert_run`), found by its id, or by its
    requests when it sent none; skipped until agent runs are merged."""
    if variant == "none":
        return assert_unidentified_run(stack)
    return assert_run(
        stack, run_id, agent=AGENT if variant == "header" else None, linked_by=variant
    )
