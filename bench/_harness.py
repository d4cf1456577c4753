"""What the bench scripts share to measure: subprocesses, /proc accounting, wrk, load.

Reporting a run (metadata, tables, docs/benchmarks.md) is `_report.py`.

Everything here is standard library (except `load()`, which imports aiohttp when it is
called); it runs under the project venv's Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
BRACE = ROOT / ".venv" / "bin" / "brace"
AUTH = "Bearer sk-bench"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A server started as its own process group, logging to a file."""

    name: str
    argv: list[str]
    env: dict[str, str | None] | None = None
    """Added to the environment; ``None`` removes a variable."""
    cwd: Path | None = None
    log_path: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS / f"{self.name}.log"
        log = self.log_path.open("wb")
        merged = {**os.environ, **(self.env or {})}
        env = {k: v for k, v in merged.items() if v is not None}
        self.popen = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, url: str, timeout: float) -> None:
        """Poll ``url`` until it answers 200; fail early if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {url} after {timeout}s:\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``grace``."""
        if self.popen is None:
            return
        pgid = self.popen.pid
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Workers a server forked may outlive it: clean the group up in every case.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (via /proc/PID/task/TID/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    todo += [
                        int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()
                    ]
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process tree (all threads), in seconds."""
    ticks = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / _CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) summed over the process tree, in MB (2**20 bytes)."""
    kb = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kb += int(line.split()[1])
    return kb / 1024


# ----------------------------------------------------------------------------- requests


def chat_body(stream: bool) -> bytes:
    return json.dumps(
        {
            "model": "chat",
            "messages": [{"role": "user", "content": "Say hello."}],
            "stream": stream,
        }
    ).encode()


def check_answer(url: str, stream: bool) -> None:
    """One real request: 200 and a well-formed answer, else raise."""
    req = urllib.request.Request(
        url,
        data=chat_body(stream),
        headers={"Content-Type": "application/json", "Authorization": AUTH},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read()
    if status != 200:
        raise RuntimeError(f"{url} answered {status}: {data[:500]!r}")
    if stream:
        events = [e for e in data.split(b"\n\n") if e.startswith(b"data: ")]
        if events[-1:] != [b"data: [DONE]"] or len(events) < 3:
            raise RuntimeError(f"{url}: malformed stream ({len(events)} events): {data[:300]!r}")
    else:
        answer = json.loads(data)
        if not answer.get("choices"):
            raise RuntimeError(f"{url}: no choices in answer: {data[:300]!r}")


# ----------------------------------------------------------------------------- wrk

_LUA = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{auth}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


def wrk(url: str, *, stream: bool, concurrency: int, duration: float) -> dict[str, Any]:
    """Run ``wrk -t1 -cN -dDs --latency`` with a POST body; return its numbers.

    ``errors`` adds up non-2xx/3xx answers, socket errors and timeouts: a cell with
    errors is reported as failed, never as throughput.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_LUA.format(body=chat_body(stream).decode(), auth=AUTH))
        script = f.name
    try:
        argv = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            script,
            url,
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    finally:
        os.unlink(script)
    match = re.search(r"^WRKJSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    r: dict[str, Any] = json.loads(match.group(1))
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    r["ok_requests"] = r["requests"] - r["status"]
    r["rps"] = r["ok_requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    r["concurrency"] = concurrency
    r["stream"] = stream
    return r


# ----------------------------------------------------------------------------- a quiet machine


def wait_quiet(max_wait: float, threshold: float = 1.0) -> float:
    """Wait up to ``max_wait`` s for the 1-min load average to drop below ``threshold``.

    Returns the load average when measuring starts (other work skews every number).
    """
    deadline = time.monotonic() + max_wait
    load = os.getloadavg()[0]
    if load >= threshold and max_wait > 0:
        print(f"load average {load:.2f}: waiting up to {max_wait:.0f} s for a quieter machine")
    while load >= threshold and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    return load


# ----------------------------------------------------------------------------- scenario runs
# Shared by failover.py and ratelimit.py: mocks with faults or limits, Brace and LiteLLM
# started from a config dict, and an aiohttp load generator (aiohttp is imported lazily:
# it is in the project venv, and everything above stays standard library).

LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_ENV: dict[str, str | None] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: no cost-map download at start-up
    "LITELLM_LOG": "ERROR",
    "LITELLM_TELEMETRY_DISABLED": "true",
    "DATABASE_URL": None,
}
LITELLM_GENERAL = {
    "master_key": "sk-bench",
    "disable_spend_logs": True,
    "disable_error_logs": True,
}
WORK = RESULTS / "work"


def _write_config(name: str, config: dict[str, Any]) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def start_mock(
    name: str, args: list[str], config: dict[str, Any] | None = None
) -> tuple[Proc, str]:
    """``brace mock`` on a free port with CLI ``args`` (and a ``--config`` file of
    MockConfig fields); returns the process and its ``/v1`` base URL."""
    port = free_port()
    argv = [str(BRACE), "mock", "--port", str(port), *args]
    if config:
        argv += ["--config", str(_write_config(name, config))]
    proc = Proc(name, argv).start()
    try:
        proc.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=20)
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port}/v1"


def _mock_root(base: str) -> str:
    return base.removesuffix("/v1")


def mock_stats(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{_mock_root(base)}/_mock/stats", timeout=10) as resp:
        stats: dict[str, Any] = json.loads(resp.read())
    return stats


def mock_reset(base: str) -> None:
    req = urllib.request.Request(f"{_mock_root(base)}/_mock/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def get_json(url: str, timeout: float = 10) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": AUTH})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def start_brace(name: str, models: dict[str, Any]) -> tuple[Proc, str]:
    """``brace serve`` with ``models`` on a free loopback port; returns the process and
    its base URL (``http://127.0.0.1:PORT``)."""
    port = free_port()
    config = {"server": {"host": "127.0.0.1", "port": port}, "models": models}
    argv = [str(BRACE), "serve", "--config", str(_write_config(name, config))]
    proc = Proc(name, [*argv, "--log-level", "warning"]).start()
    try:
        proc.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=30)
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port}"


def start_litellm(name: str, config: dict[str, Any]) -> tuple[Proc, str]:
    """LiteLLM's proxy (bench/.venv-litellm, one worker) with ``config`` on a free
    loopback port; returns the process and its base URL."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        raise RuntimeError("bench/.venv-litellm is missing: run `bash bench/setup.sh`")
    port = free_port()
    argv = [str(exe), "--config", str(_write_config(name, config))]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = Proc(name, argv, env=LITELLM_ENV).start()
    try:
        proc.wait_ready(f"http://127.0.0.1:{port}/health/readiness", timeout=120)
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port}"


@dataclass
class LoadResult:
    """What a client saw: one entry per request, in the order they were issued."""

    statuses: list[int | str]
    """HTTP status, or the exception's class name, or ``"not sent"`` / ``"unfinished"``
    for requests the run's time limit cut off."""
    latencies: list[float]
    """Seconds, for requests that got an answer (any status)."""
    wall: float
    """First send to last answer (or to the time limit)."""
    timed_out: bool
    samples: dict[str, str] = field(default_factory=dict)
    """The first answer body (up to 300 bytes) seen for each non-200 status."""

    @property
    def errors(self) -> int:
        return sum(1 for s in self.statuses if s != 200)

    def error_kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.statuses:
            if s != 200:
                out[str(s)] = out.get(str(s), 0) + 1
        return out


def load(
    url: str,
    bodies: list[bytes],
    *,
    concurrency: int,
    time_limit: float,
    request_timeout: float = 60.0,
) -> LoadResult:
    """POST every body to ``url`` with ``concurrency`` workers on one aiohttp session.

    Bounded: each request by ``request_timeout``, the whole run by ``time_limit``
    (requests still running or not yet sent are reported as such, never dropped).
    """
    import asyncio

    import aiohttp

    n = len(bodies)
    statuses: list[int | str] = ["not sent"] * n
    latencies: list[float] = []
    next_i = 0
    first = last = 0.0
    samples: dict[str, str] = {}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_i, last
        while next_i < n:
            i, next_i = next_i, next_i + 1
            statuses[i] = "unfinished"
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=bodies[i]) as resp:
                    data = await resp.read()
                    statuses[i] = resp.status
                    if resp.status != 200:
                        samples.setdefault(str(resp.status), data[:300].decode(errors="replace"))
            except TimeoutError:
                statuses[i] = "client timeout"
            except aiohttp.ClientError as exc:
                statuses[i] = type(exc).__name__
            t1 = time.perf_counter()
            latencies.append(t1 - t0)
            last = max(last, t1)

    async def run() -> bool:
        nonlocal first
        headers = {"Content-Type": "application/json", "Authorization": AUTH}
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=request_timeout)
        async with aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout
        ) as session:
            first = time.perf_counter()
            tasks = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
            done, pending = await asyncio.wait(tasks, timeout=time_limit)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                task.result()  # a bug in the worker surfaces here
            return bool(pending)

    timed_out = asyncio.run(run())
    end = time.perf_counter() if timed_out else (last or time.perf_counter())
    return LoadResult(statuses, latencies, end - first, timed_out, samples)
