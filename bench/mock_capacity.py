"""How many requests per second ``brace mock`` answers on this machine.

Starts a healthy mock (no latency, 20 chunks per stream) in a subprocess through its real
CLI entry point, then drives it at concurrency 64 for a few seconds with ``wrk`` (or, if
``wrk`` is missing, an aiohttp load generator, which is itself slower than the mock) and
prints requests per second for JSON and for streamed chat completions.

    .venv/bin/python bench/mock_capacity.py [--duration 5] [--connections 64] [--aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROMPT = "Write one sentence about the sea, please."
MESSAGES = json.dumps([{"role": "user", "content": PROMPT}], separators=(",", ":"))
JSON_BODY = '{"model":"gpt-4o-mini","messages":' + MESSAGES + "}"
STREAM_BODY = (
    '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},'
    '"messages":' + MESSAGES + "}"
)
SERVER = """
import sys, typer
from brace.mock import register_cli
app = typer.Typer()
app.callback()(lambda: None)
register_cli(app)
app(["mock", *sys.argv[1:]])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mock(port: int, use_aiohttp: bool) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", SERVER, "--port", str(port), "--chunks", "20"]
    if use_aiohttp:
        argv.append("--aiohttp")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("brace mock did not start")


def run_wrk(url: str, body: str, seconds: float, connections: int) -> tuple[float, int]:
    script = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{body}]]\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", handle.name, url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    Path(handle.name).unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if errors:
        print("   ", errors.group(0))
    return rate, int(bad.group(1)) if bad else 0


async def _python_load(url: str, body: str, seconds: float, connections: int) -> tuple[float, int]:
    import aiohttp

    done = bad = 0
    deadline = time.monotonic() + seconds
    data = body.encode()
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done, bad
            while time.monotonic() < deadline:
                async with session.post(url, data=data, headers=headers) as resp:
                    await resp.read()
                    done += 1
                    bad += resp.status != 200

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return done / (time.monotonic() - start), bad


def run_python(url: str, body: str, seconds: float, connections: int) -> tuple[float, int]:
    return asyncio.run(_python_load(url, body, seconds, connections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--aiohttp", action="store_true", help="measure the aiohttp transport")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    run = run_wrk if loadgen == "wrk" else run_python
    seconds = int(args.duration) if loadgen == "wrk" else args.duration

    port = free_port()
    proc = start_mock(port, args.aiohttp)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    transport = "aiohttp" if args.aiohttp else "fast"
    print(
        f"brace mock capacity: {transport} transport, concurrency {args.connections}, "
        f"{seconds}s per run, load generator {loadgen}"
    )
    try:
        run(url, JSON_BODY, 1, args.connections)  # warm-up
        for label, body in (("JSON", JSON_BODY), ("stream (20 chunks)", STREAM_BODY)):
            rate, bad = run(url, body, seconds, args.connections)
            print(f"  {label:<20} {rate:>9,.0f} req/s   non-200: {bad}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mock/stats") as resp:
            print("  mock stats:", resp.read().decode()[:200])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        print(f"  mock exited with status {code} after SIGINT")


if __name__ == "__main__":
    main()
