"""End-to-end tests of the ``brace`` command: real subprocesses, real loopback HTTP,
the real ``openai`` SDK.

Each ``brace`` process pays ~1 s of imports, so every process of the module (the
servers and the one-shot commands: ``check``, a ``serve``/``mock`` that must refuse
to start) is launched at once by an autouse module fixture; the tests talk to the
servers and read the one-shots' results.  Teardown kills whatever is left.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from ._cli_proc import CliProcess, Processes, wait_until

SECRET = "sk-test-SECRET123"
DEMO_MODELS = ["demo", "gpt-4o-mini", "claude-demo", "text-embedding-3-small"]
GATEWAY_LINE = r"listening on http://127\.0\.0\.1:(\d+)/v1"
MOCK_LINE = r"brace mock listening on http://127\.0\.0\.1:(\d+)"
HELLO: Any = [{"role": "user", "content": "Hello there, gateway"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "unit"],
        },
    },
}


# ----------------------------------------------------------------------------- helpers


def http_get(url: str, timeout: float = 2) -> tuple[int, Any]:
    """GET over a new connection; returns (status, parsed JSON or raw text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def refused_or_503(url: str) -> bool:
    """True if a NEW connection to ``url`` is refused/reset or answered 503."""
    try:
        status, _ = http_get(url, timeout=1)
    except (ConnectionError, urllib.error.URLError, TimeoutError, OSError):
        return True
    return status == 503


def sdk(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=10)


def words(text: str) -> str:
    """``text`` with every run of whitespace made one space (messages may be wrapped)."""
    return " ".join(text.split())


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


VALID_YAML = """\
server: {port: 0}
models:
  chat:
    deployments:
      - provider: openai
        model: gpt-4o-mini
        api_key: ${BRACE_TEST_KEY}
        rpm: 500
      - provider: ollama
        model: qwen2.5:1.5b-instruct
  embed:
    deployments:
      - provider: mock
        name: local-embed
        model: emb
        base_url: http://127.0.0.1:9/v1
"""

BAD_RPM_YAML = """\
models:
  chat:
    deployments:
      - provider: openai
        model: gpt-4o-mini
        api_key: ${BRACE_TEST_KEY}
        rpm: lots
      - provider: openai
        model: gpt-4o
        api_key: ${BRACE_TEST_KEY}
        max_concurency: 8
"""


def gateway_yaml(path: Path, mock: str, shutdown_timeout: float) -> Path:
    return write(
        path,
        f"server: {{port: 0, shutdown_timeout: {shutdown_timeout}}}\n"
        "models:\n"
        "  slow:\n"
        "    deployments:\n"
        f"      - {{provider: mock, model: mock-slow, base_url: '{mock}/v1'}}\n",
    )


# ----------------------------------------------------------------------------- fixtures


class Fleet:
    """Every ``brace`` process of this module, started together at module start.

    The long-running servers are started first; the one-shot commands run while
    the first tests use the demo gateway.  ``done(name)`` waits for a one-shot.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs = Processes()
        self.running: dict[str, CliProcess] = {}
        self.oneshots: dict[str, CliProcess] = {}
        self.files: dict[str, Path] = {}
        self._urls: dict[str, str] = {}

    def serve(self, name: str, *args: str) -> None:
        self.running[name] = self.procs.start(*args)

    def run(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.oneshots[name] = self.procs.start(*args, env=env)

    def url(self, name: str) -> str:
        """Base URL of a running server (parsed from its start-up line)."""
        if name not in self._urls:
            p = self.running[name]
            line = MOCK_LINE if p.args[0] == "mock" else GATEWAY_LINE
            self._urls[name] = f"http://127.0.0.1:{p.wait_for_line(line).group(1)}"
        return self._urls[name]

    def done(self, name: str, timeout: float = 20) -> tuple[int, CliProcess]:
        p = self.oneshots[name]
        return p.wait(timeout), p


@pytest.fixture(scope="module", autouse=True)
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    d = tmp_path_factory.mktemp("cli")
    f = Fleet(d)
    f.files = {
        "valid": write(d / "brace.yaml", VALID_YAML),
        "bad_rpm": write(d / "bad-rpm.yaml", BAD_RPM_YAML),
        "unset_env": write(
            d / "unset-env.yaml",
            "models:\n  chat:\n    deployments:\n      - provider: openai\n"
            "        model: m\n        api_key: ${BRACE_TEST_UNSET_VAR}\n",
        ),
        "inline_key": write(
            d / "inline-key.yaml",
            f"models:\n  chat:\n    deployments:\n      - provider: openai\n"
            f"        model: m\n        api_key: {SECRET}\n",
        ),
        # Longer than a terminal line: the path must still come out in one piece.
        "missing": d / ("configs-" + "x" * 60) / "does-not-exist.yaml",
        "odd_group": write(
            d / "odd-group.yaml",
            "models:\n  chat[/v2]:\n    deployments:\n      - provider: mock\n"
            "        model: m\n        base_url: http://127.0.0.1:9/v1\n",
        ),
    }
    env = {"BRACE_TEST_KEY": SECRET}
    # A port that is taken for the whole module: `serve` must refuse it cleanly.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        f.serve("demo", "serve", "--demo", "--port", "0")
        f.serve("mock_slow", "mock", "--port", "0", "--latency", "1500")
        f.serve("mock_slower", "mock", "--port", "0", "--latency", "5000")
        f.serve("mock_flaky", "mock", "--port", "0", "--profile", "flaky", "--seed", "1")
        for name, args in {
            "check_valid": ("check", "--config", str(f.files["valid"])),
            "check_bad_rpm": ("check", "--config", str(f.files["bad_rpm"])),
            "check_unset_env": ("check", "--config", str(f.files["unset_env"])),
            "check_inline_key": ("check", "--config", str(f.files["inline_key"])),
            "check_missing": ("check", "--config", str(f.files["missing"])),
            "check_odd_group": ("check", "--config", str(f.files["odd_group"])),
            "serve_bad_rpm": ("serve", "--config", str(f.files["bad_rpm"])),
            "serve_taken_port": (
                "serve",
                "--config",
                str(f.files["valid"]),
                "--port",
                str(taken.getsockname()[1]),
            ),
            "mock_bad_profile": ("mock", "--profile", "no-such-profile", "--port", "0"),
        }.items():
            f.run(name, *args, env=env)
        # The drain tests' gateways need their mocks' ports: start them as soon as known.
        for name, mock, shutdown_timeout in (
            ("drain", "mock_slow", 10),
            ("cut", "mock_slower", 0.5),
        ):
            config = gateway_yaml(d / f"{name}.yaml", f.url(mock), shutdown_timeout)
            f.serve(name, "serve", "--config", str(config))
        yield f
    finally:
        f.procs.close()
        taken.close()


@pytest.fixture(scope="module")
def demo(fleet: Fleet) -> tuple[CliProcess, str]:
    """``brace serve --demo --port 0``, shared by the demo tests (the last one stops it)."""
    return fleet.running["demo"], fleet.url("demo") + "/v1"


# ----------------------------------------------------------------------------- serve --demo


def test_demo_prints_port_and_models(demo: tuple[CliProcess, str]) -> None:
    gw, base = demo
    status, body = http_get(base.removesuffix("/v1") + "/readyz")
    assert status == 200, body
    gw.wait_for_line(r"^\s*curl ", timeout=10)  # printed just after the listening line
    lines = gw.stdout.splitlines()
    # One line each, whatever the width: scripts and log scrapers read them.
    assert f"brace gateway listening on {base} (4 models: {', '.join(DEMO_MODELS)})" in lines
    curl = [line for line in lines if line.lstrip().startswith("curl ")]
    assert len(curl) == 1 and f"{base}/chat/completions" in curl[0], gw.stdout
    assert curl[0].rstrip().endswith("}]}'"), curl[0]


def test_demo_chat_json(demo: tuple[CliProcess, str]) -> None:
    raw = sdk(demo[1]).chat.completions.with_raw_response.create(model="demo", messages=HELLO)
    assert raw.headers["x-brace-deployment"] in {"mock-a", "mock-b"}
    assert raw.headers["x-request-id"]
    resp = raw.parse()
    assert resp.model == "mock-1"  # the upstream's model name comes back
    assert resp.choices[0].message.content == "Mock reply to: Hello there, gateway"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens > 0


def test_demo_streaming_gpt_4o_mini(demo: tuple[CliProcess, str]) -> None:
    stream = sdk(demo[1]).chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert len(chunks) > 3  # really streamed, not one blob
    assert text == "Mock reply to: Hello there, gateway"
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_demo_claude_json(demo: tuple[CliProcess, str]) -> None:
    resp = sdk(demo[1]).chat.completions.create(model="claude-demo", messages=HELLO)
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == "Mock reply to: Hello there, gateway"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens > 0


def test_demo_claude_streaming(demo: tuple[CliProcess, str]) -> None:
    chunks = list(
        sdk(demo[1]).chat.completions.create(model="claude-demo", messages=HELLO, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3
    assert text == "Mock reply to: Hello there, gateway"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_demo_claude_tool_call(demo: tuple[CliProcess, str]) -> None:
    resp = sdk(demo[1]).chat.completions.create(
        model="claude-demo",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args["city"], str)
    assert args["unit"] in ("c", "f")


def test_demo_claude_tool_call_streaming(demo: tuple[CliProcess, str]) -> None:
    chunks = list(
        sdk(demo[1]).chat.completions.create(
            model="claude-demo",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    names, fragments = [], []
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            assert tc.index == 0
            if tc.function and tc.function.name:
                names.append(tc.function.name)
            if tc.function and tc.function.arguments:
                fragments.append(tc.function.arguments)
    assert names == ["get_weather"]
    args = json.loads("".join(fragments))
    assert set(args) >= {"city", "unit"} and args["unit"] in ("c", "f")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_demo_embeddings(demo: tuple[CliProcess, str]) -> None:
    client = sdk(demo[1])
    resp = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert [d.index for d in resp.data] == [0, 1]
    a, b = (d.embedding for d in resp.data)
    assert len(a) == len(b) == 1536
    assert math.isclose(math.fsum(x * x for x in a), 1.0, rel_tol=1e-6)
    assert a != b
    again = client.embeddings.create(model="text-embedding-3-small", input="alpha")
    assert again.data[0].embedding == a  # same text, same vector
    small = client.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=8)
    assert len(small.data[0].embedding) == 8


def test_demo_models_list(demo: tuple[CliProcess, str]) -> None:
    ids = {m.id for m in sdk(demo[1]).models.list()}
    assert ids == set(DEMO_MODELS)


def test_demo_sigterm_exits_zero(demo: tuple[CliProcess, str]) -> None:
    gw, base = demo
    gw.signal(signal.SIGTERM)
    assert gw.wait(10) == 0, gw.describe()
    assert "Traceback" not in gw.stderr
    assert refused_or_503(base.removesuffix("/v1") + "/readyz")


# ----------------------------------------------------------------------------- graceful shutdown


def mock_requests(mock: str) -> int:
    status, stats = http_get(f"{mock}/_mock/stats")
    assert status == 200, stats
    return int(stats["total_requests"])


def start_slow_request(pool: ThreadPoolExecutor, base: str) -> Future[Any]:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=15)
    return pool.submit(
        client.chat.completions.create,
        model="slow",
        messages=[{"role": "user", "content": "take your time"}],
    )


def test_sigterm_drains_in_flight_request(fleet: Fleet) -> None:
    gw, base, mock = fleet.running["drain"], fleet.url("drain"), fleet.url("mock_slow")
    assert http_get(f"{base}/readyz")[0] == 200
    with ThreadPoolExecutor(1) as pool:
        inflight = start_slow_request(pool, base)
        wait_until(lambda: mock_requests(mock) >= 1, 5, "the mock to receive the request")
        gw.signal(signal.SIGTERM)
        # Draining: new connections are refused (or told 503) while the request runs.
        wait_until(lambda: refused_or_503(f"{base}/readyz"), 2, "/readyz to stop answering 200")
        assert not inflight.done(), "the in-flight request ended before the drain was observed"
        resp = inflight.result(timeout=10)
    assert resp.choices[0].message.content == "Mock reply to: take your time"
    assert refused_or_503(f"{base}/readyz")
    assert gw.wait(5) == 0, gw.describe()
    assert "draining in-flight requests (up to 10.0s)" in gw.stderr  # the file's value
    assert "Traceback" not in gw.stderr


def test_sigterm_shutdown_timeout_bounds_the_drain(fleet: Fleet) -> None:
    gw, base, mock = fleet.running["cut"], fleet.url("cut"), fleet.url("mock_slower")
    with ThreadPoolExecutor(1) as pool:
        inflight = start_slow_request(pool, base)
        wait_until(lambda: mock_requests(mock) >= 1, 5, "the mock to receive the request")
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        rc = gw.wait(6)
        elapsed = time.monotonic() - t0
        with pytest.raises(openai.APIError):  # cut off, not answered after the deadline
            inflight.result(timeout=5)
    # Waiting for the upstream would take ~5 s; the 0.5 s drain plus the exit, well under.
    assert elapsed < 3.5, f"shutdown took {elapsed:.1f}s with shutdown_timeout 0.5"
    assert rc == 0, gw.describe()
    assert "draining in-flight requests (up to 0.5s)" in gw.stderr
    assert mock_requests(mock) == 1


# ----------------------------------------------------------------------------- check


def test_check_valid_lists_groups_without_the_key(fleet: Fleet) -> None:
    rc, p = fleet.done("check_valid")
    assert rc == 0, p.describe()
    lines = p.stdout.splitlines()
    assert [line for line in lines if not line.startswith(" ")] == [
        "chat",
        "embed",
        f"ok: {fleet.files['valid']}",
    ], p.stdout
    deployments = [line.strip() for line in lines if line.startswith("  - ")]
    assert len(deployments) == 3, p.stdout
    openai_dep, ollama_dep, mock_dep = deployments
    assert openai_dep.startswith("- openai/gpt-4o-mini: openai wire, http"), openai_dep
    assert openai_dep.endswith("(key set)"), openai_dep
    assert ollama_dep.startswith("- ollama/qwen2.5:1.5b-instruct: "), ollama_dep
    assert ollama_dep.endswith("(no key)"), ollama_dep
    assert mock_dep == "- local-embed: openai wire, http://127.0.0.1:9/v1 (no key)", mock_dep
    assert SECRET not in p.stdout + p.stderr
    assert "SECRET123" not in p.stdout + p.stderr


def test_check_invalid_value_names_file_and_key(fleet: Fleet) -> None:
    rc, p = fleet.done("check_bad_rpm")
    assert rc == 2, p.describe()
    err = words(p.stderr)
    assert (
        f"{fleet.files['bad_rpm']}: models.chat.deployments[0].rpm: Input should be a valid integer"
        in err
    ), err
    # Every problem is reported at once, each with its own key path.
    assert (
        f"{fleet.files['bad_rpm']}: models.chat.deployments[1].max_concurency: Extra inputs" in err
    )
    assert "Traceback" not in err
    assert p.stdout == ""


def test_check_unset_env_var_names_variable_and_key(fleet: Fleet) -> None:
    rc, p = fleet.done("check_unset_env")
    assert rc == 2, p.describe()
    err = words(p.stderr)
    assert "models.chat.deployments[0].api_key" in err, err
    assert "BRACE_TEST_UNSET_VAR is not set" in err


def test_check_inline_key_is_refused_without_echoing_it(fleet: Fleet) -> None:
    rc, p = fleet.done("check_inline_key")
    assert rc == 2, p.describe()
    err = words(p.stderr)
    assert "models.chat.deployments[0].api_key" in err, err
    assert "environment reference" in err
    assert "SECRET123" not in p.stdout + p.stderr


def test_check_missing_file_hints_demo(fleet: Fleet) -> None:
    rc, p = fleet.done("check_missing")
    assert rc == 2, p.describe()
    err = words(p.stderr)
    assert "file not found" in err, err
    assert "--demo" in err
    assert "Traceback" not in err


def test_check_missing_file_message_is_not_wrapped(fleet: Fleet) -> None:
    """Regression: rich used to wrap at 80 columns off a terminal, splitting long paths."""
    _, p = fleet.done("check_missing")
    assert f"{fleet.files['missing']}: file not found" in p.stderr, p.stderr
    assert "`brace serve --demo`" in p.stderr, p.stderr


def test_check_prints_group_names_verbatim(fleet: Fleet) -> None:
    """Regression: group names were rendered as rich markup (`[/v2]` crashed the command)."""
    rc, p = fleet.done("check_odd_group")
    assert rc == 0, p.describe()
    assert "chat[/v2]" in p.stdout
    assert "Traceback" not in p.stderr


# ----------------------------------------------------------------------------- serve errors


def test_serve_invalid_config_exits_2_without_traceback(fleet: Fleet) -> None:
    rc, p = fleet.done("serve_bad_rpm")
    assert rc == 2, p.describe()
    err = words(p.stderr)
    assert err.startswith("invalid config"), err
    assert f"{fleet.files['bad_rpm']}: models.chat.deployments[0].rpm:" in err
    assert "Traceback" not in err
    assert "listening" not in p.stdout


def test_serve_port_in_use_exits_1(fleet: Fleet) -> None:
    rc, p = fleet.done("serve_taken_port")
    assert rc == 1, p.describe()
    assert "cannot start" in p.stderr
    assert "Traceback" not in p.stderr
    assert "listening" not in p.stdout


# ----------------------------------------------------------------------------- mock


def test_mock_flaky_profile_answers_chat(fleet: Fleet) -> None:
    p, mock = fleet.running["mock_flaky"], fleet.url("mock_flaky")
    assert "(profile=flaky seed=1)" in p.stdout
    status, live = http_get(f"{mock}/_mock/config")
    assert status == 200, live
    assert (live["profile"], live["seed"]) == ("flaky", 1)
    assert live["error_rates"] == {"503": 0.1, "500": 0.02, "hang": 0.01, "stall": 0.01}
    # A stall holds the JSON body back for 30 s: the client gives up and counts it.
    client = openai.OpenAI(base_url=f"{mock}/v1", api_key="x", max_retries=0, timeout=2)
    answered, errors, stalled = 0, {}, 0
    for _ in range(6):
        try:
            resp = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        except openai.APITimeoutError:  # a stall or a hang: the mock holds the body back
            stalled += 1
        except openai.APIStatusError as exc:
            assert exc.status_code in (500, 503), exc  # the flaky profile's only statuses
            errors[str(exc.status_code)] = errors.get(str(exc.status_code), 0) + 1
        else:
            assert resp.choices[0].message.content == "Mock reply to: Hello there, gateway"
            answered += 1
    assert answered >= 3, (answered, errors, stalled)
    status, stats = http_get(f"{mock}/_mock/stats")
    assert status == 200, stats
    # What the client saw is what the mock says it injected.
    assert stats["total_requests"] == 6
    assert stats["faults"].get("stall", 0) + stats["faults"].get("hang", 0) == stalled
    assert {k: v for k, v in stats["by_status"].items() if k != "200"} == errors
    p.signal(signal.SIGTERM)
    assert p.wait(5) == 0, p.describe()


def test_mock_unknown_profile_exits_2(fleet: Fleet) -> None:
    rc, p = fleet.done("mock_bad_profile")
    assert rc == 2, p.describe()
    assert "unknown profile 'no-such-profile'" in p.stderr
    assert "flaky" in p.stderr  # lists the known ones
    assert "Traceback" not in p.stderr
    assert "listening" not in p.stdout
