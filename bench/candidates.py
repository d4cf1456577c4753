"""Choosing the HTTP stack: the same bare relay on four server/client stacks.

    .venv/bin/python bench/candidates.py [--quick]            # run the comparison
    bench/.venv-candidates/bin/python bench/candidates.py serve --stack NAME --port N \\
        --upstream http://127.0.0.1:4010/v1                   # one relay (what `run` starts)

Stacks (each relays POST /v1/chat/completions byte for byte, streams as they arrive):

- ``aiohttp``: aiohttp server + aiohttp client (what Brace uses; = bench/relay.py);
- ``aiohttp-httpx``: aiohttp server + httpx client;
- ``uvicorn``: uvicorn (httptools + uvloop) serving a raw ASGI app + aiohttp client;
- ``granian``: granian (Rust HTTP server, ASGI, uvloop) + aiohttp client.

The servers run in bench/.venv-candidates (bash bench/setup.sh); the driver runs under
the project venv, against one ``brace mock``, and writes the table between the
``bench:candidates`` markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

STACKS = ("aiohttp", "aiohttp-httpx", "uvicorn", "granian")
LABELS = {
    "aiohttp": "aiohttp server + aiohttp client",
    "aiohttp-httpx": "aiohttp server + httpx client",
    "uvicorn": "uvicorn (httptools, uvloop) raw ASGI + aiohttp client",
    "granian": "granian (ASGI, uvloop) + aiohttp client",
}
_FORWARD = ("content-type", "authorization")


# ----------------------------------------------------------------------------- servers


def serve_aiohttp_httpx(host: str, port: int, upstream: str) -> None:
    import httpx
    import uvloop
    from aiohttp import web

    url = upstream.rstrip("/") + "/chat/completions"
    client_key = web.AppKey("client", httpx.AsyncClient)

    async def client_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            app[client_key] = client
            yield

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: request.headers[k] for k in _FORWARD if k in request.headers}
        client = request.app[client_key]
        req = client.build_request("POST", url, content=body, headers=headers)
        upstream_resp = await client.send(req, stream=True)
        try:
            ctype = upstream_resp.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                data = await upstream_resp.aread()
                return web.Response(
                    body=data, status=upstream_resp.status_code, headers={"Content-Type": ctype}
                )
            resp = web.StreamResponse(
                status=upstream_resp.status_code, headers={"Content-Type": ctype}
            )
            await resp.prepare(request)
            async for chunk in upstream_resp.aiter_raw():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            await upstream_resp.aclose()

    async def readyz(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b'{"status":"ready"}', content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(client_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/readyz", readyz)
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=None,
        handler_cancellation=True,
        loop=uvloop.new_event_loop(),
    )


def asgi_relay(upstream: str) -> Any:
    """A raw ASGI app (no framework) relaying with one shared aiohttp ClientSession."""
    import aiohttp

    url = upstream.rstrip("/") + "/chat/completions"
    state: dict[str, aiohttp.ClientSession] = {}
    ready = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json")],
    }
    not_found = {"type": "http.response.start", "status": 404, "headers": []}

    def session() -> aiohttp.ClientSession:
        # Created lazily, inside the server's running loop.
        s = state.get("s")
        if s is None:
            s = state["s"] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0), auto_decompress=False
            )
        return s

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    if "s" in state:
                        await state["s"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path == "/readyz":
            await send(ready)
            await send({"type": "http.response.body", "body": b'{"status":"ready"}'})
            return
        if path != "/v1/chat/completions" or scope["method"] != "POST":
            await send(not_found)
            await send({"type": "http.response.body", "body": b""})
            return
        chunks = []
        more = True
        while more:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.decode() in _FORWARD}
        async with session().post(url, data=b"".join(chunks), headers=headers) as upstream_resp:
            ctype = upstream_resp.headers.get("Content-Type", "application/json")
            start = {
                "type": "http.response.start",
                "status": upstream_resp.status,
                "headers": [(b"content-type", ctype.encode())],
            }
            if upstream_resp.content_type != "text/event-stream":
                data = await upstream_resp.read()
                start["headers"].append((b"content-length", str(len(data)).encode()))
                await send(start)
                await send({"type": "http.response.body", "body": data})
                return
            await send(start)
            async for chunk in upstream_resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app


def granian_app() -> Any:
    """Granian imports its app by name: ``candidates:granian_app`` (a factory)."""
    return asgi_relay(os.environ["BENCH_UPSTREAM"])


def serve(stack: str, host: str, port: int, upstream: str) -> None:
    print(f"{stack} relay listening on http://{host}:{port}", flush=True)
    if stack == "aiohttp":
        import uvloop
        from aiohttp import web

        import relay

        web.run_app(
            relay.create_app(upstream),
            host=host,
            port=port,
            access_log=None,
            print=None,
            handler_cancellation=True,
            loop=uvloop.new_event_loop(),
        )
    elif stack == "aiohttp-httpx":
        serve_aiohttp_httpx(host, port, upstream)
    elif stack == "uvicorn":
        import uvicorn

        uvicorn.run(
            asgi_relay(upstream),
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
        )
    elif stack == "granian":
        from granian import Granian

        os.environ["BENCH_UPSTREAM"] = upstream
        Granian(
            "candidates:granian_app",
            factory=True,
            address=host,
            port=port,
            interface="asgi",
            workers=1,
            loop="uvloop",
            log_access=False,
            log_level="warning",
        ).serve()
    else:
        raise SystemExit(f"unknown stack {stack!r}")


# ----------------------------------------------------------------------------- driver


def run(args: argparse.Namespace) -> int:
    import contextlib
    import platform
    import signal

    import _harness as h
    import _report as rep
    import run as gateway_bench

    venv_py = h.BENCH / ".venv-candidates" / "bin" / "python"
    if not venv_py.exists():
        raise SystemExit("bench/.venv-candidates is missing: run `bash bench/setup.sh`")
    duration = args.duration or (2.0 if args.quick else 5.0)
    kind = "mock" if gateway_bench.mock_available() else "standin"
    if kind == "standin":
        print("WARNING: brace mock is not available; using bench/standin_upstream.py", flush=True)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    results: dict[str, Any] = {}
    procs: list[h.Proc] = []
    upstream_label = ""
    loadavg_start = h.wait_quiet(args.wait_quiet)
    try:
        port = h.free_port()
        upstream_proc, upstream_label = gateway_bench.start_upstream(kind, port)
        procs.append(upstream_proc)
        upstream = f"http://127.0.0.1:{port}/v1"
        direct = f"{upstream}/chat/completions"
        h.check_answer(direct, False)
        h.wrk(direct, stream=False, concurrency=16, duration=1)
        # All candidates listen at once (idle servers cost nothing) and are measured in
        # rounds, in a rotating order; each cell keeps its best round.  Other work on
        # the machine then blurs the comparison less.
        servers: dict[str, tuple[h.Proc, str]] = {}
        for stack in STACKS:
            sport = h.free_port()
            argv = [str(venv_py), str(h.BENCH / "candidates.py"), "serve", "--stack", stack]
            argv += ["--port", str(sport), "--upstream", upstream]
            proc = h.Proc(f"candidate-{stack}", argv, cwd=h.BENCH).start()
            procs.append(proc)
            url = f"http://127.0.0.1:{sport}/v1/chat/completions"
            try:
                proc.wait_ready(f"http://127.0.0.1:{sport}/readyz", timeout=30)
                h.check_answer(url, False)
                h.check_answer(url, True)
                h.wrk(url, stream=False, concurrency=16, duration=max(1.0, duration / 2))
            except RuntimeError as exc:  # a candidate that fails is reported, not fatal
                results[stack] = {"error": str(exc).splitlines()[0]}
                print(f"  {stack}: FAILED: {exc}", flush=True)
                proc.stop()
                continue
            servers[stack] = (proc, url)
            results[stack] = {}
        order = list(servers)
        for rnd in range(args.rounds):
            d = h.wrk(direct, stream=False, concurrency=1, duration=duration)
            best = results.setdefault("direct", {}).get("json_1")
            if best is None or d["p50_us"] < best["p50_us"]:
                results["direct"]["json_1"] = d
            for stack in order[rnd % len(order) :] + order[: rnd % len(order)]:
                proc, url = servers[stack]
                cells = results[stack]
                try:
                    for key, stream, c in (
                        ("json_64", False, 64),
                        ("json_1", False, 1),
                        ("stream_64", True, 64),
                    ):
                        cpu0 = h.cpu_seconds(proc.pid)
                        r = h.wrk(url, stream=stream, concurrency=c, duration=duration)
                        cpu = h.cpu_seconds(proc.pid) - cpu0
                        r["cpu_ms_per_req"] = (
                            cpu * 1000 / r["ok_requests"] if r["ok_requests"] else None
                        )
                        old = cells.get(key)
                        better = (
                            old is None
                            or (c == 1 and r["p50_us"] < old["p50_us"])
                            or (c != 1 and r["rps"] > old["rps"])
                        )
                        if better:
                            cells[key] = r
                    h.check_answer(url, True)
                except RuntimeError as exc:
                    cells["error"] = str(exc).splitlines()[0]
                    print(f"  {stack}: FAILED: {exc}", flush=True)
                    continue
                cells["peak_rss_mb"] = h.peak_rss_mb(proc.pid)
                print(
                    f"  round {rnd + 1} {stack:14} json c=64 {r_rps(cells, 'json_64'):8.0f} "
                    f"req/s  stream c=64 {r_rps(cells, 'stream_64'):7.0f} req/s  "
                    f"json c=1 p50 {cells['json_1']['p50_us'] / 1000:.2f} ms (best so far)",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.stop()

    versions = {
        dist: rep.dist_version(dist, str(venv_py))
        for dist in ("aiohttp", "httpx", "uvicorn", "httptools", "granian", "uvloop")
    }
    data = {
        "date": rep.utc_now(),
        "command": rep.command_line("candidates.py"),
        "upstream": upstream_label,
        "duration_s": duration,
        "rounds": args.rounds,
        "loadavg_start": loadavg_start,
        "machine": {**rep.machine(), "python": platform.python_version()},
        "versions": versions,
        "results": results,
    }
    rep.publish("candidates", "candidates", data, report(data), doc=not args.no_doc)
    return 0


def r_rps(cells: dict[str, Any], key: str) -> float:
    return float(cells[key]["rps"])


def report(data: dict[str, Any]) -> str:
    import _report as rep

    results = data["results"]
    direct_p50 = results["direct"]["json_1"]["p50_us"]
    best = max(
        (
            r["json_64"]["rps"]
            for r in results.values()
            if "json_64" in r and not r["json_64"]["errors"]
        ),
        default=0.0,
    )
    v = data["versions"]
    m = data["machine"]
    lines = [
        f"Generated by `{data['command'].strip()}` on {data['date']}: {m['nproc']} CPUs, "
        f"{m['cpu']}, Python {m['python']}; aiohttp {v['aiohttp']}, httpx {v['httpx']}, "
        f"uvicorn {v['uvicorn']} + httptools {v['httptools']}, granian {v['granian']}, "
        f"uvloop {v['uvloop']}. Upstream: {data['upstream']}; {data['duration_s']:g} s per cell, best of "
        f"{data['rounds']} rounds; load average {data['loadavg_start']:.2f} at the start.",
        "",
    ]
    rows: list[list[str]] = []
    for stack in STACKS:
        r = results.get(stack)
        if r is None:
            continue
        if "error" in r:
            rows.append([LABELS[stack], f"failed: {r['error']}", *[""] * 5])
            continue

        def rps(cell: dict[str, Any]) -> str:
            return f"{cell['rps']:,.0f}" + (f" ({cell['errors']} err)" if cell["errors"] else "")

        j64, j1, s64 = r["json_64"], r["json_1"], r["stream_64"]
        added = (j1["p50_us"] - direct_p50) / 1000
        cpu = j64["cpu_ms_per_req"]
        rows.append(
            [
                LABELS[stack],
                rps(j64),
                f"{j64['rps'] / best:.0%}",
                rps(s64),
                f"{added:.2f}",
                rep.fmt(cpu, ".3f"),
                f"{r['peak_rss_mb']:.0f}",
            ]
        )
    head = [
        "stack",
        "JSON req/s c=64",
        "vs best",
        "stream req/s c=64",
        "added p50 c=1 (ms)",
        "CPU ms/JSON req (c=64)",
        "peak RSS (MB)",
    ]
    lines.append(rep.table(head, "lrrrrrr", rows))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    p_run = sub.add_parser("run", help="run the comparison (the default)")
    p_run.add_argument("--quick", action="store_true", help="~2 s per cell instead of ~5 s")
    p_run.add_argument("--duration", type=float, help="seconds per cell")
    p_run.add_argument("--rounds", type=int, default=2, help="rounds; each cell keeps its best")
    p_run.add_argument("--no-doc", action="store_true", help="don't touch docs/benchmarks.md")
    p_run.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the 1-min load average to fall below 1",
    )
    p_serve = sub.add_parser("serve", help="serve one candidate relay")
    p_serve.add_argument("--stack", choices=STACKS, required=True)
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, required=True)
    p_serve.add_argument("--upstream", required=True)
    argv = sys.argv[1:]
    if not argv or argv[0].startswith("-"):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.stack, args.host, args.port, args.upstream)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
