"""Brace vs the bare relay vs LiteLLM's proxy, side by side against one ``brace mock``.

    .venv/bin/python bench/run.py [--quick] [--only relay,brace,litellm]

Starts one healthy ``brace mock`` (no latency, 20 chunks per stream), then one
target at a time — ``direct`` (wrk → the mock), the bare relay (bench/relay.py),
Brace (``brace serve``) and LiteLLM's proxy (bench/.venv-litellm) — and measures
each with ``wrk -t1 -cN --latency`` at concurrency 1, 16 and 64, JSON and SSE.
Writes the tables between the ``bench:gateway`` markers of docs/benchmarks.md,
prints them, and saves the raw numbers under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import _harness as h
import _report as rep

TARGETS = ("direct", "relay", "brace", "litellm")
LABELS = {"direct": "direct (mock)", "relay": "bare relay", "brace": "Brace", "litellm": "LiteLLM"}
CONCURRENCY = (1, 16, 64)
CHUNKS = 20
LITELLM_VENV = h.BENCH / ".venv-litellm"
# LiteLLM's documented production settings (docs "Best Practices for Production"),
# minus what needs outside services (Slack alerting, a database).
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: no cost-map download at start-up
    "LITELLM_LOG": "ERROR",  # "turn off FastAPI's default info logs"
    "LITELLM_TELEMETRY_DISABLED": "true",
}


@dataclass
class Target:
    name: str
    url: str  # POST endpoint
    proc: h.Proc  # the process whose tree is accounted for


# ----------------------------------------------------------------------------- servers


def mock_available() -> bool:
    probe = "from brace.mock import create_app"
    return subprocess.run([str(h.PROJECT_PY), "-c", probe], capture_output=True).returncode == 0


def start_upstream(kind: str, port: int) -> tuple[h.Proc, str]:
    """A healthy upstream on ``port`` and its description.

    ``brace mock`` is tried with its default (fast) server first, then with
    ``--aiohttp`` if the fast one does not answer correctly.
    """
    url = f"http://127.0.0.1:{port}"
    if kind == "standin":
        script = str(h.BENCH / "standin_upstream.py")
        argv = [str(h.PROJECT_PY), script, "--port", str(port), "--chunks", str(CHUNKS)]
        proc = h.Proc("upstream", argv).start()
        proc.wait_ready(f"{url}/healthz", timeout=30)
        return proc, "stand-in upstream (bench/standin_upstream.py)"
    base = [str(h.BRACE), "mock", "--port", str(port), "--chunks", str(CHUNKS)]
    base += ["--latency", "0", "--chunk-delay", "0"]
    for extra, label in (([], "brace mock"), (["--aiohttp"], "brace mock --aiohttp")):
        proc = h.Proc("upstream", base + extra).start()
        try:
            proc.wait_ready(f"{url}/healthz", timeout=15)
            h.check_answer(f"{url}/v1/chat/completions", False)
            h.check_answer(f"{url}/v1/chat/completions", True)
        except RuntimeError as exc:
            proc.stop()
            print(f"WARNING: `{' '.join(base[1:] + extra)}` failed: {exc}", flush=True)
            continue
        return proc, label
    raise RuntimeError("brace mock does not answer; see bench/results/upstream.log")


def _ready(proc: h.Proc, url: str, timeout: float) -> h.Proc:
    try:
        proc.wait_ready(url, timeout)
    except BaseException:
        proc.stop()
        raise
    return proc


def start_target(name: str, upstream: str, upstream_proc: h.Proc, workdir: Any) -> Target:
    if name == "direct":
        return Target(name, f"{upstream}/chat/completions", upstream_proc)
    port = h.free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    if name == "relay":
        argv = [str(h.PROJECT_PY), str(h.BENCH / "relay.py"), "--port", str(port)]
        proc = h.Proc("relay", [*argv, "--upstream", upstream]).start()
        _ready(proc, f"http://127.0.0.1:{port}/readyz", 30)
    elif name == "brace":
        config = workdir / "brace.yaml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "server": {"host": "127.0.0.1", "port": port},
                    "models": {
                        "chat": {
                            "deployments": [
                                {"provider": "mock", "model": "mock-1", "base_url": upstream}
                            ]
                        }
                    },
                },
                indent=2,
            )
        )
        argv = [str(h.BRACE), "serve", "--config", str(config), "--log-level", "warning"]
        proc = h.Proc("brace", argv).start()
        _ready(proc, f"http://127.0.0.1:{port}/readyz", 30)
    elif name == "litellm":
        if not (LITELLM_VENV / "bin" / "litellm").exists():
            raise RuntimeError("bench/.venv-litellm is missing: run `bash bench/setup.sh`")
        config = workdir / "litellm.yaml"
        config.write_text(litellm_config(upstream))
        argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
        env: dict[str, str | None] = {**LITELLM_ENV, "DATABASE_URL": None}
        proc = h.Proc("litellm", argv, env=env).start()
        _ready(proc, f"http://127.0.0.1:{port}/health/readiness", 120)
    else:
        raise ValueError(name)
    return Target(name, url, proc)


def litellm_config(upstream: str) -> str:
    return json.dumps(
        {
            "model_list": [
                {
                    "model_name": "chat",
                    "litellm_params": {
                        "model": "openai/mock-1",
                        "api_base": upstream,
                        "api_key": "x",
                    },
                }
            ],
            "general_settings": {
                "master_key": "sk-bench",
                "disable_spend_logs": True,
                "disable_error_logs": True,
            },
            "litellm_settings": {"set_verbose": False, "request_timeout": 600},
        },
        indent=2,
    )


# ----------------------------------------------------------------------------- measuring


def settle(url: str, timeout: float = 90.0) -> None:
    """Wait until a slow target has worked off its backlog and answers a checked request."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            h.check_answer(url, False)
            h.check_answer(url, True)
            return
        except (RuntimeError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def measure(target: Target, out: dict[str, Any], *, duration: float, rss_requests: int) -> None:
    """Fill ``out`` with all cells of one target (partial results survive a failure)."""
    out.update({"pid": target.proc.pid, "json": {}, "stream": {}})
    settle(target.url)
    # Warm up: connections, caches, lazy imports.
    warm = max(1.0, duration / 4)
    h.wrk(target.url, stream=False, concurrency=16, duration=warm)
    h.wrk(target.url, stream=True, concurrency=16, duration=warm)
    streamed = 0
    for stream in (False, True):
        mode = "stream" if stream else "json"
        for c in CONCURRENCY:
            settle(target.url)
            cpu0 = h.cpu_seconds(target.proc.pid)
            r = h.wrk(target.url, stream=stream, concurrency=c, duration=duration)
            cpu = h.cpu_seconds(target.proc.pid) - cpu0
            r["cpu_ms_per_req"] = cpu * 1000 / r["ok_requests"] if r["ok_requests"] else None
            out[mode][str(c)] = r
            streamed += r["ok_requests"] if stream else 0
            note = f"  {r['errors']} ERRORS" if r["errors"] else ""
            print(
                f"  {target.name:8} {mode:6} c={c:<3} {r['rps']:9.0f} req/s  "
                f"p50 {r['p50_us'] / 1000:7.2f} ms  p99 {r['p99_us'] / 1000:7.2f} ms  "
                f"cpu {r['cpu_ms_per_req'] or 0:.3f} ms/req{note}",
                flush=True,
            )
    # Peak RSS after at least `rss_requests` streamed requests, bounded in time: a slow
    # target (LiteLLM) is read after what it served in that time.
    deadline = time.monotonic() + 60
    while streamed < rss_requests and time.monotonic() < deadline:
        left = deadline - time.monotonic()
        r = h.wrk(target.url, stream=True, concurrency=64, duration=max(1.0, min(10.0, left)))
        streamed += r["ok_requests"]
    out["streamed_requests"] = streamed
    out["peak_rss_mb"] = h.peak_rss_mb(target.proc.pid)
    settle(target.url)


def interleave(
    upstream: str, upstream_proc: h.Proc, workdir: Any, *, rounds: int, duration: float
) -> dict[str, Any]:
    """The bare relay and Brace running at once, their c=64 cells alternated for
    ``rounds`` rounds (the order flips every round): the best req/s of each.  The
    sequential tables measure each target in its own minutes, so their ratio carries
    the machine's drift between those minutes; this one does not."""
    targets: list[Target] = []
    try:
        for name in ("relay", "brace"):
            targets.append(start_target(name, upstream, upstream_proc, workdir))
        for t in targets:
            settle(t.url)
            h.wrk(t.url, stream=False, concurrency=16, duration=max(1.0, duration / 4))
        best = {mode: {t.name: 0.0 for t in targets} for mode in ("json", "stream")}
        for r in range(rounds):
            for mode in ("json", "stream"):
                for t in targets if r % 2 == 0 else targets[::-1]:
                    settle(t.url)
                    res = h.wrk(t.url, stream=mode == "stream", concurrency=64, duration=duration)
                    if not res["errors"]:
                        best[mode][t.name] = max(best[mode][t.name], float(res["rps"]))
            print(f"  interleaved round {r + 1}/{rounds}: {best}", flush=True)
        return {"rounds": rounds, "best": best}
    finally:
        for t in targets:
            t.proc.stop()


# ----------------------------------------------------------------------------- report


def _ms(us: float | None) -> str:
    return rep.fmt(None if us is None else us / 1000, ".2f")


def _cell(results: dict[str, Any], name: str, mode: str, c: int) -> dict[str, Any] | None:
    cell: dict[str, Any] | None = results.get(name, {}).get(mode, {}).get(str(c))
    return cell


def table(results: dict[str, Any], mode: str) -> str:
    direct1 = _cell(results, "direct", mode, 1)
    rows = []
    for name in TARGETS:
        if name not in results:
            continue
        res = results[name]

        def rps(c: int, name: str = name) -> str:
            r = _cell(results, name, mode, c)
            if r is None:
                return rep.MISSING
            return f"{r['rps']:,.0f}" + (f" ({r['errors']} err)" if r["errors"] else "")

        c1, c64 = _cell(results, name, mode, 1), _cell(results, name, mode, 64)
        if name == "direct" or c1 is None or direct1 is None:
            added = rep.MISSING
        else:
            added = _ms(c1["p50_us"] - direct1["p50_us"])
        cpu = None if c64 is None else c64["cpu_ms_per_req"]
        rss = res.get("peak_rss_mb")
        label = LABELS[name] + (f" (**failed**: {res['error']})" if "error" in res else "")
        rows.append(
            [
                label,
                rps(1),
                rps(16),
                rps(64),
                _ms(None if c64 is None else c64["p50_us"]),
                _ms(None if c64 is None else c64["p99_us"]),
                added,
                rep.fmt(cpu, ".3f"),
                rep.fmt(rss, ".0f"),
            ]
        )
    head = [
        "target",
        "req/s c=1",
        "req/s c=16",
        "req/s c=64",
        "p50 c=64 (ms)",
        "p99 c=64 (ms)",
        "added p50 c=1 (ms)",
        "CPU ms/req (c=64)",
        "peak RSS (MB)",
    ]
    return rep.table(head, "lrrrrrrrr", rows)


def verdicts(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, pass) rows; ``None`` when an input is missing."""
    out: list[tuple[str, str, bool | None]] = []

    def rps(name: str, mode: str) -> float | None:
        r = _cell(results, name, mode, 64)
        return None if r is None or r["errors"] else float(r["rps"])

    def added(name: str) -> float | None:
        r, d = _cell(results, name, "json", 1), _cell(results, "direct", "json", 1)
        return None if r is None or d is None else float(r["p50_us"] - d["p50_us"]) / 1000

    def cpu(name: str) -> float | None:
        r = _cell(results, name, "json", 64)
        return None if r is None else r["cpu_ms_per_req"]

    inter = results.get("interleaved", {}).get("best", {})
    for mode in ("json", "stream"):
        b, relay, ll = rps("brace", mode), rps("relay", mode), rps("litellm", mode)
        what = f"Brace ≥ 80% of the bare relay's req/s ({mode}, c=64)"
        ib, ir = inter.get(mode, {}).get("brace"), inter.get(mode, {}).get("relay")
        if ib and ir:  # measured side by side: the steadier ratio decides
            rounds = results["interleaved"]["rounds"]
            out.append((what + f", interleaved best of {rounds}", f"{ib / ir:.0%}", ib >= 0.8 * ir))
        elif b is not None and relay:
            out.append((what, f"{b / relay:.0%}", b >= 0.8 * relay))
        else:
            out.append((what, "n/a", None))
        what = f"Brace ≥ 30× LiteLLM's req/s ({mode}, c=64)"
        if b is not None and ll:
            out.append((what, f"{b / ll:.0f}×", b >= 30 * ll))
        else:
            out.append((what, "n/a", None))
    b_added, r_added = added("brace"), added("relay")
    ctx = "" if r_added is None else f" (bare relay: {r_added:.2f} ms)"
    out.append(
        (
            "added p50 ≤ 0.4 ms at c=1 (JSON)",
            "n/a" if b_added is None else f"{b_added:.2f} ms{ctx}",
            None if b_added is None else b_added <= 0.4,
        )
    )
    b_cpu, r_cpu = cpu("brace"), cpu("relay")
    ctx = "" if r_cpu is None else f" (bare relay: {r_cpu:.3f} ms)"
    out.append(
        (
            "CPU ≤ 0.25 ms per JSON request",
            "n/a" if b_cpu is None else f"{b_cpu:.3f} ms{ctx}",
            None if b_cpu is None else b_cpu <= 0.25,
        )
    )
    brace, relay_res = results.get("brace", {}), results.get("relay", {})
    rss, n = brace.get("peak_rss_mb"), brace.get("streamed_requests", 0)
    r_rss = relay_res.get("peak_rss_mb")
    ctx = "" if r_rss is None else f" (bare relay: {r_rss:.0f} MB)"
    out.append(
        (
            "peak RSS ≤ 80 MB after 10,000 streamed requests",
            "n/a" if rss is None else f"{rss:.0f} MB after {n:,}{ctx}",
            None if rss is None else (rss <= 80 and n >= 10_000),
        )
    )
    return out


def report(data: dict[str, Any]) -> str:
    m = data["machine"]
    results = data["results"]
    lines = [
        "## Results: Brace vs the bare relay vs LiteLLM",
        "",
        f"Generated by `{data['command']}` on {data['date']}.",
        "",
        f"- Machine: {m['nproc']} CPUs, {m['cpu']}; Linux {m['kernel']}; speed reference: "
        f"`sum(range(10**6))` takes {m['sum_range_ms']:.1f} ms in this Python "
        "(≈ 10–15 ms on a recent laptop)",
        f"- Python {m['python']}; aiohttp {m['aiohttp']}, uvloop {m['uvloop']}; "
        f"LiteLLM {m['litellm']}; wrk {m['wrk']}",
        f"- Upstream: {data['upstream']} ({CHUNKS} chunks per stream, no latency); "
        f"{data['duration_s']:g} s per cell after a warm-up; wrk `-t1 -cN --latency`.",
        f"- Load average (1 min) at the start / end of the run: {data['loadavg_start']:.2f} / "
        f"{data.get('loadavg_end', float('nan')):.2f} — other work on the machine makes "
        "every number worse and noisier.",
        "- Everything (wrk, the upstream, the target) shares the same CPUs: req/s is the "
        "throughput of the whole loop on this machine, not of the gateway alone.",
        "",
        "### JSON (`stream: false`)",
        "",
        table(results, "json"),
        "",
        f"### Streaming (`stream: true`, {CHUNKS} chunks)",
        "",
        table(results, "stream"),
        "",
        "Added p50 = the target's p50 − direct's p50, both at c=1. CPU = the target's process "
        "tree utime+stime over the c=64 run ÷ requests. Peak RSS = VmHWM summed over the "
        "process tree after the stream runs (at least 10,000 streamed requests).",
        "",
    ]
    inter = results.get("interleaved")
    if inter and inter.get("best"):
        best = inter["best"]
        lines += [
            f"Interleaved (the bare relay and Brace running at once, their c=64 cells "
            f"alternated, best of {inter['rounds']} rounds): JSON relay "
            f"{best['json']['relay']:,.0f} / Brace {best['json']['brace']:,.0f} req/s, "
            f"stream relay {best['stream']['relay']:,.0f} / Brace "
            f"{best['stream']['brace']:,.0f} req/s.",
            "",
        ]
    marks = {None: "n/a", True: "pass", False: "**FAIL**"}
    verdicts = [(what, measured, marks[ok]) for what, measured, ok in data["verdicts"]]
    lines += [
        "### Targets",
        "",
        rep.table(("target", "measured", "result"), "lrl", verdicts),
    ]
    if not data["upstream"].startswith("brace mock"):
        lines += ["", "**Not publishable: these numbers come from the stand-in upstream.**"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~3 s per cell instead of ~8 s")
    parser.add_argument(
        "--only",
        default=",".join(TARGETS[1:]),
        help="comma-separated targets among relay,brace,litellm (direct always runs)",
    )
    parser.add_argument(
        "--upstream",
        choices=("auto", "mock", "standin"),
        default="auto",
        help="brace mock (auto: if importable) or bench/standin_upstream.py",
    )
    parser.add_argument("--duration", type=float, help="seconds per cell (overrides --quick)")
    parser.add_argument("--rss-requests", type=int, default=10_000)
    parser.add_argument(
        "--ratio-rounds",
        type=int,
        default=3,
        help="then run the relay and Brace at once, alternating their c=64 cells for this "
        "many rounds (0: skip); the ≥ 80%% verdicts use these best-of-N figures",
    )
    parser.add_argument("--no-doc", action="store_true", help="don't touch docs/benchmarks.md")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the 1-min load average to fall below 1",
    )
    args = parser.parse_args()

    only = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = set(only) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    names = ["direct", *[t for t in TARGETS[1:] if t in only]]
    duration = args.duration or (3.0 if args.quick else 8.0)
    kind = args.upstream
    if kind == "auto":
        kind = "mock" if mock_available() else "standin"
    if kind == "standin":
        print("WARNING: brace mock is not available; using bench/standin_upstream.py", flush=True)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = h.RESULTS / "work"
    workdir.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    procs: list[h.Proc] = []
    upstream_label = ""
    started = time.monotonic()
    loadavg_start = h.wait_quiet(args.wait_quiet)
    if loadavg_start > 1.0:
        print(f"WARNING: load average {loadavg_start:.2f}: the machine is busy", flush=True)
    try:
        port = h.free_port()
        upstream_proc, upstream_label = start_upstream(kind, port)
        procs.append(upstream_proc)
        upstream = f"http://127.0.0.1:{port}/v1"
        for name in names:
            print(f"{name}: starting", flush=True)
            results[name] = out = {}
            try:
                target = start_target(name, upstream, upstream_proc, workdir)
            except RuntimeError as exc:
                out["error"] = str(exc).splitlines()[0]
                print(f"  {name}: FAILED to start: {exc}", flush=True)
                continue
            if target.proc is not upstream_proc:
                procs.append(target.proc)
            try:
                measure(target, out, duration=duration, rss_requests=args.rss_requests)
            except (RuntimeError, OSError) as exc:  # reported in the tables, not fatal
                out["error"] = str(exc).splitlines()[0]
                print(f"  {name}: FAILED: {exc}", flush=True)
            finally:
                if target.proc is not upstream_proc:
                    target.proc.stop()
        ok = all(n in results and "error" not in results[n] for n in ("relay", "brace"))
        if args.ratio_rounds > 0 and ok:
            print("relay + brace, interleaved:", flush=True)
            try:
                results["interleaved"] = interleave(
                    upstream, upstream_proc, workdir, rounds=args.ratio_rounds, duration=duration
                )
            except (RuntimeError, OSError) as exc:
                print(f"  interleaved: FAILED: {exc}", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.stop()

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()
    versions = {
        "aiohttp": rep.dist_version("aiohttp"),
        "uvloop": rep.dist_version("uvloop"),
        "litellm": rep.dist_version("litellm", str(LITELLM_VENV / "bin" / "python")),
        "wrk": wrk_version[1] if len(wrk_version) > 1 else "?",
    }
    data: dict[str, Any] = {
        **rep.run_info("run.py", started=started, loadavg_start=loadavg_start, versions=versions),
        "upstream": upstream_label,
        "duration_s": duration,
        "results": results,
    }
    data["verdicts"] = verdicts(results)
    rep.publish("gateway", "run", data, report(data), doc=not args.no_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
