"""What observability costs: Brace's throughput with telemetry off vs on, and the
request-log writer's sustained rows per second (SQLite and PostgreSQL).

    .venv/bin/python bench/telemetry.py [--duration 6] [--rows 20000] [--no-doc]

1. The same ``brace serve`` in front of one ``brace mock``, JSON at concurrency 64
   (wrk), in four configurations, run in rotating rounds (best of N per config, so a
   burst of other work on the machine does not decide the ranking):
   ``off`` (``telemetry.enabled: false``: no request log, no tracer; the in-memory
   Prometheus counters stay on, as they always do), ``metrics`` (``store: off``: the
   same thing reached the other way, a check on the noise), ``sqlite`` (the default:
   metrics + the SQLite request log), ``sqlite+otlp`` (plus OpenTelemetry spans for
   every request, exported over OTLP/HTTP to a local sink) and ``sqlite+otlp 10%``
   (``trace_sample_ratio: 0.1``).  ``bench/micro.py`` measures the cost of the records
   and metrics themselves, in-process.
2. The writer alone: ``--rows`` records submitted as fast as possible to a started
   store with a queue large enough to hold them all, timed until ``aclose()`` has
   written everything: rows per second the writer sustains before it would drop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    BRACE,
    Proc,
    _write_config,
    cpu_seconds,
    free_port,
    start_mock,
    wrk,
)
from _report import machine, publish, table, utc_now

PG_URL = os.environ.get("BRACE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def start_brace_config(name: str, config: dict[str, Any]) -> tuple[Proc, str]:
    port = free_port()
    config = {**config, "server": {"host": "127.0.0.1", "port": port}}
    argv = [str(BRACE), "serve", "--config", str(_write_config(name, config))]
    proc = Proc(name, [*argv, "--log-level", "warning"]).start()
    try:
        proc.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=30)
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port}"


async def _otlp_sink(port: int, stop: asyncio.Event) -> None:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await stop.wait()
    await runner.cleanup()


def throughput(duration: float, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best req/s and least CPU µs per request (the gateway's process tree) per config."""
    mock, mock_url = start_mock("tel-mock", ["--latency", "0"])
    sink_port = free_port()
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    import threading

    sink = threading.Thread(target=loop.run_until_complete, args=(_otlp_sink(sink_port, stop),))
    sink.start()
    tmp = Path(tempfile.mkdtemp(prefix="brace-bench-tel-"))
    models = {"chat": {"deployments": [{"provider": "mock", "model": "m", "base_url": mock_url}]}}
    configs = {
        "off": {"telemetry": {"enabled": False}},
        "metrics": {"telemetry": {"store": "off"}},
        "sqlite": {"telemetry": {"store": "sqlite", "database": str(tmp / "brace.db")}},
        "sqlite+otlp": {
            "telemetry": {
                "store": "sqlite",
                "database": str(tmp / "brace-otlp.db"),
                "otlp_endpoint": f"http://127.0.0.1:{sink_port}/v1/traces",
            }
        },
        "sqlite+otlp 10%": {
            "telemetry": {
                "store": "sqlite",
                "database": str(tmp / "brace-otlp-sampled.db"),
                "otlp_endpoint": f"http://127.0.0.1:{sink_port}/v1/traces",
                "trace_sample_ratio": 0.1,
            }
        },
    }
    procs: dict[str, tuple[Proc, str]] = {}
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    try:
        for name, extra in configs.items():
            tag = name.replace("+", "-").replace(" ", "-").replace("%", "pct")
            procs[name] = start_brace_config(f"tel-{tag}", {"models": models, **extra})
        for _proc, url in procs.values():  # warm-up
            wrk(f"{url}/v1/chat/completions", stream=False, concurrency=64, duration=1)
        for _ in range(rounds):
            for name, (proc, url) in procs.items():
                cpu0 = cpu_seconds(proc.pid)
                r = wrk(
                    f"{url}/v1/chat/completions", stream=False, concurrency=64, duration=duration
                )
                used = cpu_seconds(proc.pid) - cpu0
                if r["errors"]:
                    raise RuntimeError(f"{name}: {r['errors']} errors")
                best[name] = max(best.get(name, 0.0), r["rps"])
                per_request = used * 1e6 / max(1, r["requests"])
                cpu[name] = min(cpu.get(name, per_request), per_request)
    finally:
        for proc, _ in procs.values():
            proc.stop()
        mock.stop()
        loop.call_soon_threadsafe(stop.set)
        sink.join(10)
    return best, cpu


async def writer_rate(engine: str, rows: int) -> float:
    from brace.config import TelemetryConfig
    from brace.store.requests import open_store
    from brace.telemetry.record import AttemptRecord, RequestRecord

    tmp = Path(tempfile.mkdtemp(prefix="brace-bench-store-"))
    if engine == "sqlite":
        cfg = TelemetryConfig(store="sqlite", database=str(tmp / "w.db"), writer_queue=rows + 10)
    else:
        cfg = TelemetryConfig(store="postgres", database=PG_URL, writer_queue=rows + 10)
    store = open_store(cfg)
    await store.start()
    now = time.time()
    records = [
        RequestRecord(
            request_id=f"bench-{uuid.uuid4().hex}",
            trace_id=uuid.uuid4().hex,
            span_id=uuid.uuid4().hex[:16],
            parent_span_id=None,
            operation="chat",
            model="chat",
            started_at=now + i * 1e-6,
            duration=0.05,
            status=200,
            group="chat",
            deployment="a",
            provider="openai",
            input_tokens=100,
            output_tokens=20,
            cost_usd=0.0001,
            attempts=[
                AttemptRecord("a", "chat", "openai", 0.0, 0.02, "overloaded", 503),
                AttemptRecord("b", "chat", "openai", 0.02, 0.03, None, 200),
            ],
        )
        for i in range(rows)
    ]
    start = time.perf_counter()
    for r in records:
        store.submit(r)
    await store.aclose()
    elapsed = time.perf_counter() - start
    stats = store.stats()
    if stats.get("dropped"):
        raise RuntimeError(f"{engine}: {stats['dropped']} rows dropped")
    if engine == "postgres":  # leave nothing behind
        import asyncpg

        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute("DELETE FROM attempts WHERE request_id LIKE 'bench-%'")
            await conn.execute("DELETE FROM requests WHERE request_id LIKE 'bench-%'")
        finally:
            await conn.close()
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    started = utc_now()
    load_start = os.getloadavg()[0]
    rps, cpu = throughput(args.duration, args.rounds)
    rates = {
        "sqlite": asyncio.run(writer_rate("sqlite", args.rows)),
        "postgres": asyncio.run(writer_rate("postgres", args.rows)),
    }
    m = machine()
    # `off` and `metrics` do the same work (metrics only; see below): the better of the
    # two is the baseline, so that a lucky low `off` round cannot flatter the rest.
    base = max(rps["off"], rps["metrics"])
    lines = [
        f"Generated by `.venv/bin/python bench/telemetry.py` on {started}: {m.get('nproc')} CPUs, "
        f"{m.get('cpu')}, Python {sys.version.split()[0]}; load average {load_start:.2f} at the start. "
        f"JSON at c=64 through wrk, {args.duration:g} s per cell, best of {args.rounds} rotating rounds.",
        "",
    ]
    cpu_base = min(cpu["off"], cpu["metrics"])
    rows = [
        [
            name,
            f"{value:,.0f}",
            f"{value / base:.0%}",
            f"{cpu[name]:,.0f}",
            f"{cpu[name] / cpu_base - 1:+.0%}",
        ]
        for name, value in rps.items()
    ]
    head = ["telemetry", "req/s c=64", "vs baseline", "CPU µs/request", "CPU vs baseline"]
    writers = [
        ("SQLite (WAL, one writer thread)", f"{rates['sqlite']:,.0f}"),
        ("PostgreSQL (asyncpg, local)", f"{rates['postgres']:,.0f}"),
    ]
    lines += [
        table(head, "lrrrr", rows),
        "",
        f"Writer alone, {args.rows:,} records (each with 2 attempts) submitted at once, timed to "
        "the end of the flush:",
        "",
        table(["store", "rows/s sustained"], "lr", writers),
        "",
        "`off` is `telemetry.enabled: false`: no request log and no tracer, but the "
        "Prometheus metrics (in memory) are always kept, so each request still builds its "
        "record; `bench/micro.py` measures that part in-process.",
        "",
        "Baseline: the better of `off` and `metrics`, which do the same work (`store: off` "
        "keeps the metrics too); their gap is the run's noise. CPU µs/request: utime + stime "
        "of the gateway's process tree (all its threads: the request-log writer and the "
        "tracer included) over a cell ÷ its requests, least of the rounds — steadier than "
        "req/s, which also carries wrk's and the mock's share of the 2 CPUs.",
        "",
        "Goal: telemetry costs ≤ 10% of throughput: the default (`sqlite`) is at "
        f"{rps['sqlite'] / base:.0%} of the baseline ({_verdict(rps['sqlite'], base)}); with "
        f"every request traced over OTLP (`sqlite+otlp`) at {rps['sqlite+otlp'] / base:.0%} "
        f"({_verdict(rps['sqlite+otlp'], base)}); with 10% of them traced "
        f"(`trace_sample_ratio: 0.1`) at {rps['sqlite+otlp 10%'] / base:.0%} "
        f"({_verdict(rps['sqlite+otlp 10%'], base)}).",
    ]
    text = "## Results: the cost of observability\n\n" + "\n".join(lines)
    data = {"rps": rps, "cpu_us_per_request": cpu, "writer_rows_per_s": rates, "started": started}
    publish("telemetry", "telemetry", data, text, doc=not args.no_doc)


def _verdict(value: float, base: float) -> str:
    return "pass" if value >= 0.9 * base else "**FAIL**"


if __name__ == "__main__":
    main()
