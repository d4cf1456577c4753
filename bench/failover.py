"""Failover: one flaky and one healthy deployment behind one model name, Brace vs LiteLLM.

    .venv/bin/python bench/failover.py [--requests 1000] [--concurrency 32] [--no-doc]

Two ``brace mock`` upstreams, both with latency uniform(5,15) ms: *flaky* answers 503
on 40% of calls and hangs on 5% (silent for 10 s, then the connection is dropped);
*healthy* never fails.  Both serve the model group ``chat``.  1,000 requests at
concurrency 32 (aiohttp client) go through, one target at a time:

- Brace with its defaults (retry 3 attempts with a budget, breaker, p2c balancing);
- Brace with ``hedge: {enabled: true}``;
- LiteLLM's proxy with ``num_retries: 3``, ``allowed_fails: 3``, ``cooldown_time: 5``,
  ``timeout: 10``.

Reports client-visible errors, upstream calls per request (both mocks'
``total_requests`` ÷ requests; the stats are reset before each target), p50/p99
latency and wall time.  Writes the ``bench:failover`` section of docs/benchmarks.md,
prints it, and saves raw numbers under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
from typing import Any

import _harness as h
import _report as rep

LATENCY = "uniform(5,15)"
FAULTS = "503=0.4,hang=0.05"
HANG_SECONDS = 10
TIME_LIMIT = 180.0
"""Seconds per target for the whole run of requests; what is left is reported."""
REQUEST_TIMEOUT = 120.0
"""Client-side timeout of one request (far above every gateway's own limits)."""
WARMUP = 40
"""Requests sent with both mocks healthy before each target's run (connections, lazy
imports, Brace's hedge needs 20 known latencies); not counted."""

TARGETS = ("brace", "brace-hedge", "litellm")
LABELS = {
    "brace": "Brace (defaults)",
    "brace-hedge": "Brace, `hedge: {enabled: true}`",
    "litellm": "LiteLLM proxy",
}


def brace_models(flaky: str, healthy: str, *, hedge: bool) -> dict[str, Any]:
    group: dict[str, Any] = {
        "deployments": [
            {"provider": "mock", "model": "mock-1", "base_url": flaky, "name": "flaky"},
            {"provider": "mock", "model": "mock-1", "base_url": healthy, "name": "healthy"},
        ]
    }
    if hedge:
        group["hedge"] = {"enabled": True}
    return {"chat": group}


def litellm_config(flaky: str, healthy: str) -> dict[str, Any]:
    deployments = [
        {
            "model_name": "chat",
            "litellm_params": {"model": "openai/mock-1", "api_base": base, "api_key": "x"},
            "model_info": {"id": name},
        }
        for name, base in (("flaky", flaky), ("healthy", healthy))
    ]
    return {
        "model_list": deployments,
        "router_settings": {
            "num_retries": 3,
            "allowed_fails": 3,
            "cooldown_time": 5,
            "timeout": 10,
        },
        "litellm_settings": {"set_verbose": False, "request_timeout": 10},
        "general_settings": h.LITELLM_GENERAL,
    }


def set_faults(base: str, rates: dict[str, float]) -> None:
    root = base.removesuffix("/v1")
    req = urllib.request.Request(
        f"{root}/_mock/config",
        data=json.dumps({"error_rates": rates}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def body() -> bytes:
    return json.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": "Say hello."}]}
    ).encode()


def measure(
    name: str, url: str, mocks: dict[str, str], *, requests: int, concurrency: int
) -> dict[str, Any]:
    faults = {"503": 0.4, "hang": 0.05}
    set_faults(mocks["flaky"], {})
    warm = h.load(url, [body()] * WARMUP, concurrency=8, time_limit=60)
    if warm.errors:
        raise RuntimeError(f"warm-up with healthy mocks failed: {warm.error_kinds()}")
    set_faults(mocks["flaky"], faults)
    for base in mocks.values():
        h.mock_reset(base)
    r = h.load(
        url,
        [body()] * requests,
        concurrency=concurrency,
        time_limit=TIME_LIMIT,
        request_timeout=REQUEST_TIMEOUT,
    )
    stats = {k: h.mock_stats(base) for k, base in mocks.items()}
    upstream = {k: s["total_requests"] for k, s in stats.items()}
    out: dict[str, Any] = {
        "requests": requests,
        "errors": r.errors,
        "error_kinds": r.error_kinds(),
        "error_samples": r.samples,
        "timed_out": r.timed_out,
        "wall_s": r.wall,
        "p50_s": rep.percentile(r.latencies, 50),
        "p99_s": rep.percentile(r.latencies, 99),
        "max_s": max(r.latencies, default=None),
        "upstream_calls": upstream,
        "calls_per_request": sum(upstream.values()) / requests,
        "flaky_faults": stats["flaky"].get("faults", {}),
        "mock_stats": stats,
    }
    note = f"  errors {out['error_kinds']}" if r.errors else ""
    print(
        f"  {name:12} errors {r.errors:4}  calls/req {out['calls_per_request']:.2f} "
        f"(flaky {upstream['flaky']}, healthy {upstream['healthy']})  "
        f"p50 {_ms(out['p50_s'])} ms  p99 {_ms(out['p99_s'])} ms  wall {r.wall:.1f} s"
        f"{'  TIME LIMIT' if r.timed_out else ''}{note}",
        flush=True,
    )
    return out


# ----------------------------------------------------------------------------- report


def _ms(s: float | None) -> str:
    return rep.fmt(None if s is None else s * 1000, ",.0f")


def table(results: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    for name in TARGETS:
        res = results.get(name)
        if res is None:
            continue
        if "error" in res and "errors" not in res:
            rows.append([f"{LABELS[name]} (**failed**: {res['error']})", *[""] * 7])
            continue
        errs = f"{res['errors']:,}"
        if res["errors"]:
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(res["error_kinds"].items()))
            errs += f" ({kinds})"
        if res["timed_out"]:
            errs += f" — **stopped at the {TIME_LIMIT:.0f} s limit**"
        calls = res["upstream_calls"]
        rows.append(
            [
                LABELS[name],
                errs,
                f"{res['calls_per_request']:.2f}",
                f"{calls['flaky']:,} / {calls['healthy']:,}",
                _ms(res["p50_s"]),
                _ms(res["p99_s"]),
                _ms(res["max_s"]),
                f"{res['wall_s']:.1f}",
            ]
        )
    head = [
        "target",
        "client errors",
        "upstream calls / request",
        "flaky / healthy calls",
        "p50 (ms)",
        "p99 (ms)",
        "max (ms)",
        "wall (s)",
    ]
    return rep.table(head, "lrrrrrrr", rows)


def brace_notes(results: dict[str, Any]) -> list[str]:
    """What Brace's ``GET /admin/deployments`` said about *flaky* after each run."""
    out = []
    for name in TARGETS:
        admin = results.get(name, {}).get("admin_deployments")
        if not admin:
            continue
        for dep in admin["groups"]["chat"]:
            if dep["id"] != "flaky":
                continue
            b, cap = dep["breaker"], dep["capacity"]
            out.append(
                f"- {LABELS[name]}, *flaky* after the run (`GET /admin/deployments`): breaker "
                f"{b['state']} ({b['consecutive_trips']} consecutive trips), adaptive "
                f"concurrency limit {cap['concurrency_limit']:.1f}, error-rate EWMA "
                f"{dep['ewma_error_rate']:.2f}; faults the mock injected: "
                + ", ".join(f"{k}: {v}" for k, v in sorted(results[name]["flaky_faults"].items()))
                + "."
            )
    return out


def report(data: dict[str, Any]) -> str:
    m = data["machine"]
    litellm = data["results"].get("litellm", {})
    notes = brace_notes(data["results"])
    if litellm.get("flaky_faults"):
        faults = ", ".join(f"{k}: {v}" for k, v in sorted(litellm["flaky_faults"].items()))
        notes.append(f"- LiteLLM: faults the *flaky* mock injected: {faults}.")
    return "\n".join(
        [
            "## Results: failover (one flaky, one healthy deployment)",
            "",
            f"Generated by `{data['command']}` on {data['date']}.",
            "",
            f"- Machine: {m['nproc']} CPUs, {m['cpu']}; Linux {m['kernel']}; Python "
            f"{m['python']}; `sum(range(10**6))` takes {m['sum_range_ms']:.1f} ms; "
            f"Brace {m['brace']}; LiteLLM {m['litellm']}; load average (1 min) at the "
            f"start / end: {data['loadavg_start']:.2f} / {data['loadavg_end']:.2f}.",
            f"- Upstreams: two `brace mock`, both `--latency '{LATENCY}'`; *flaky* also "
            f"`--error-rate {FAULTS}` with `hang_seconds: {HANG_SECONDS}` (silent "
            f"{HANG_SECONDS} s, then the connection is dropped). Both serve model `chat`.",
            f"- Load: {data['requests']:,} requests at concurrency {data['concurrency']} "
            "(aiohttp client, one keep-alive session), after "
            f"{WARMUP} warm-up requests with both mocks healthy; mock stats reset before "
            f"each target; {TIME_LIMIT:.0f} s limit per target.",
            "- Brace: both deployments in group `chat`, all defaults (retry: 3 attempts, "
            "budget 20% + 10/s; breaker: 30% over 10 s, ≥ 10 requests, open 5 s; deadline "
            "300 s; per-attempt `timeouts.total` 300 s); the second row adds "
            "`hedge: {enabled: true}` (after the group's p95, ≥ 50 ms).",
            "- LiteLLM: both deployments under `model_name: chat`; `router_settings: "
            "{num_retries: 3, allowed_fails: 3, cooldown_time: 5, timeout: 10}`, "
            "`litellm_settings: {request_timeout: 10}`, default routing (simple-shuffle); "
            "otherwise the settings of the gateway benchmark below (one worker, no DB).",
            "",
            table(data["results"]),
            "",
            *notes,
            "",
            "Client errors: answers other than 200 (or no answer) as the client saw them. "
            "Upstream calls / request: both mocks' `total_requests` ÷ requests (a hedge "
            "that was cancelled still counts). Latency: client-side, send to last byte. "
            "Breaker open periods and cooldowns are measured in seconds while a run lasts "
            "from seconds (Brace) to about a minute (LiteLLM), so how many calls *flaky* "
            "gets also depends on how long the run lasts.",
        ]
    )


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--only", default=",".join(TARGETS), help=f"comma-separated among {','.join(TARGETS)}"
    )
    parser.add_argument("--no-doc", action="store_true", help="don't touch docs/benchmarks.md")
    args = parser.parse_args()
    only = [t for t in TARGETS if t in args.only.split(",")]

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    loadavg_start = os.getloadavg()[0]
    started = time.monotonic()
    results: dict[str, Any] = {}
    procs: list[h.Proc] = []
    try:
        mock_args = ["--latency", LATENCY]
        flaky_proc, flaky = h.start_mock(
            "failover-flaky",
            [*mock_args, "--error-rate", FAULTS, "--seed", "1"],
            {"hang_seconds": HANG_SECONDS},
        )
        procs.append(flaky_proc)
        healthy_proc, healthy = h.start_mock("failover-healthy", [*mock_args, "--seed", "2"])
        procs.append(healthy_proc)
        mocks = {"flaky": flaky, "healthy": healthy}
        for name in only:
            print(f"{name}: starting", flush=True)
            try:
                if name == "litellm":
                    proc, base = h.start_litellm("failover-litellm", litellm_config(flaky, healthy))
                else:
                    models = brace_models(flaky, healthy, hedge=name == "brace-hedge")
                    proc, base = h.start_brace(f"failover-{name}", models)
            except RuntimeError as exc:
                results[name] = {"error": str(exc).splitlines()[0]}
                print(f"  {name}: FAILED to start: {exc}", flush=True)
                continue
            procs.append(proc)
            try:
                url = f"{base}/v1/chat/completions"
                res = measure(
                    name, url, mocks, requests=args.requests, concurrency=args.concurrency
                )
                if name != "litellm":
                    res["admin_deployments"] = h.get_json(f"{base}/admin/deployments")
                results[name] = res
            except (RuntimeError, OSError) as exc:
                results[name] = {"error": str(exc).splitlines()[0]}
                print(f"  {name}: FAILED: {exc}", flush=True)
            finally:
                proc.stop()
                procs.remove(proc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.stop()

    data: dict[str, Any] = {
        **rep.run_info(
            "failover.py",
            started=started,
            loadavg_start=loadavg_start,
            versions=rep.scenario_versions(),
        ),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "results": results,
    }
    rep.publish("failover", "failover", data, report(data), doc=not args.no_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
