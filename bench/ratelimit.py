"""Rate limits: Brace's capacity engine vs LiteLLM's proxy against rate-limited mocks.

    .venv/bin/python bench/ratelimit.py [--only brace,litellm] [--no-doc]

Three scenarios, each against fresh buckets (``POST /_mock/reset``) of ``brace mock``
upstreams that enforce per-second limits (``--burst-seconds 1``: the bucket holds one
second of the rate, then refills continuously):

- **a** RPM: one deployment, ``--rpm 600`` (10 requests/s), 300 requests at
  concurrency 50;
- **b** TPM: one deployment, ``--tpm 60000`` (1,000 tokens/s), 300 requests at
  concurrency 50 whose prompts vary 10× (15–150 tokens) with ``max_tokens: 20``;
- **c** RPM, two deployments: two mocks of scenario *a* behind one model name, 600
  requests at concurrency 50 (the same ~30 s at twice the rate).

Targets: Brace (``rpm``/``tpm`` declared on its deployments, defaults otherwise) and
LiteLLM's proxy (the same ``rpm``/``tpm`` on its deployments, ``num_retries: 3``), once
with ``routing_strategy: usage-based-routing-v2`` (its rate-limit-aware strategy) and
once with its default ``simple-shuffle``.  Reports client errors, upstream calls per
request, upstream 429s (mock stats ``rate_limited``), wall time and wall ÷ the
theoretical minimum (the first bucketful at once, then the refill rate).  Every
scenario run is bounded (120 s); a run cut off is reported as such.  Writes the
``bench:ratelimit`` section of docs/benchmarks.md, prints it, and saves raw numbers
(with Brace's ``GET /admin/deployments`` after each scenario) under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import _harness as h
import _report as rep

RPM = 600
TPM = 60_000
BURST_SECONDS = 1
MAX_TOKENS = 20
PROMPT_TOKENS = tuple(range(15, 151, 15))
"""Prompt sizes of scenario b, in the mock's tokens (4 characters each): 15 … 150."""
CONCURRENCY = 50
TIME_LIMIT = 120.0
"""Seconds per scenario run; LiteLLM has been reported to stall for 60 s."""
REQUEST_TIMEOUT = 150.0
LITELLM_STRATEGIES = ("usage-based-routing-v2", "simple-shuffle")


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    requests: int
    mocks: tuple[str, ...]
    mock_args: tuple[str, ...]
    limits: dict[str, int]
    tokens: bool  # varied prompts with max_tokens (the TPM scenario)


SCENARIOS = (
    Scenario(
        "a",
        f"one deployment, {RPM} RPM",
        300,
        ("a",),
        ("--rpm", str(RPM)),
        {"rpm": RPM},
        False,
    ),
    Scenario(
        "b",
        f"one deployment, {TPM:,} TPM, prompts 15–150 tokens + max_tokens {MAX_TOKENS}",
        300,
        ("b",),
        ("--tpm", str(TPM)),
        {"tpm": TPM},
        True,
    ),
    Scenario(
        "c",
        f"two deployments, {RPM} RPM each",
        600,
        ("c1", "c2"),
        ("--rpm", str(RPM)),
        {"rpm": RPM},
        False,
    ),
)


# ----------------------------------------------------------------------------- requests


def bodies(s: Scenario) -> list[bytes]:
    group = f"chat-{s.key}"
    if not s.tokens:
        one = {"model": group, "messages": [{"role": "user", "content": "Say hello."}]}
        return [json.dumps(one).encode()] * s.requests
    sizes = [PROMPT_TOKENS[i % len(PROMPT_TOKENS)] for i in range(s.requests)]
    random.Random(0).shuffle(sizes)
    out = []
    for i, tokens in enumerate(sizes):
        text = f"{i:05d} " + "word " * tokens
        text = text[: tokens * 4]  # the mock counts ceil(chars / 4) tokens
        body = {
            "model": group,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": MAX_TOKENS,
        }
        out.append(json.dumps(body).encode())
    return out


def mock_cost(body: bytes) -> int:
    """Tokens the mock charges: ceil(characters / 4) of the prompt + max_tokens."""
    data = json.loads(body)
    chars = sum(len(m["content"]) for m in data["messages"])
    return max(1, -(-chars // 4)) + int(data.get("max_tokens", 256))


def theoretical_min(s: Scenario, payloads: list[bytes]) -> float:
    """Seconds to serve every request if the first bucketful goes at once and the rest
    at exactly the refill rate (upstream latency is 0)."""
    n = len(s.mocks)
    if s.tokens:
        capacity, rate = TPM * BURST_SECONDS / 60, TPM / 60
        total = sum(mock_cost(b) for b in payloads)
    else:
        capacity, rate = RPM * BURST_SECONDS / 60, RPM / 60
        total = len(payloads)
    return max(0.0, total - n * capacity) / (n * rate)


# ----------------------------------------------------------------------------- configs


def brace_models(mocks: dict[str, str]) -> dict[str, Any]:
    models = {}
    for s in SCENARIOS:
        deployments = [
            {
                "provider": "mock",
                "model": "mock-1",
                "base_url": mocks[m],
                "name": f"mock-{m}",
                **s.limits,
            }
            for m in s.mocks
        ]
        models[f"chat-{s.key}"] = {"deployments": deployments}
    return models


def litellm_config(mocks: dict[str, str], strategy: str) -> dict[str, Any]:
    model_list = [
        {
            "model_name": f"chat-{s.key}",
            "litellm_params": {
                "model": "openai/mock-1",
                "api_base": mocks[m],
                "api_key": "x",
                **s.limits,
            },
            "model_info": {"id": f"mock-{m}"},
        }
        for s in SCENARIOS
        for m in s.mocks
    ]
    return {
        "model_list": model_list,
        "router_settings": {"routing_strategy": strategy, "num_retries": 3},
        "litellm_settings": {"set_verbose": False, "request_timeout": 600},
        "general_settings": h.LITELLM_GENERAL,
    }


# ----------------------------------------------------------------------------- measuring


def run_scenario(
    target: str, base: str, s: Scenario, mocks: dict[str, str], *, brace: bool
) -> dict[str, Any]:
    payloads = bodies(s)
    url = f"{base}/v1/chat/completions"
    # Warm-up: one request per deployment's worth (lazy imports, connections), then a
    # pause so the gateway's own view of the bucket refills too, then fresh buckets.
    warm = h.load(url, payloads[: len(s.mocks)], concurrency=1, time_limit=30)
    if warm.errors:
        raise RuntimeError(f"warm-up failed: {warm.error_kinds()}")
    time.sleep(BURST_SECONDS + 0.5)
    for m in s.mocks:
        h.mock_reset(mocks[m])
    r = h.load(
        url,
        payloads,
        concurrency=CONCURRENCY,
        time_limit=TIME_LIMIT,
        request_timeout=REQUEST_TIMEOUT,
    )
    stats = {m: h.mock_stats(mocks[m]) for m in s.mocks}
    calls = sum(st["total_requests"] for st in stats.values())
    limited = sum(st["rate_limited"] for st in stats.values())
    minimum = theoretical_min(s, payloads)
    out: dict[str, Any] = {
        "requests": len(payloads),
        "errors": r.errors,
        "error_kinds": r.error_kinds(),
        "error_samples": r.samples,
        "timed_out": r.timed_out,
        "wall_s": r.wall,
        "min_s": minimum,
        "wall_over_min": r.wall / minimum if minimum else None,
        "p50_s": rep.percentile(r.latencies, 50),
        "p99_s": rep.percentile(r.latencies, 99),
        "upstream_calls": calls,
        "calls_per_request": calls / len(payloads),
        "upstream_429": limited,
        "upstream_429_share": limited / calls if calls else 0.0,
        "mock_stats": stats,
    }
    if brace:
        with contextlib.suppress(OSError, ValueError):
            out["admin_deployments"] = h.get_json(f"{base}/admin/deployments")
    note = f"  errors {out['error_kinds']}" if r.errors else ""
    print(
        f"  {s.key} {target:28} errors {r.errors:4}  calls/req {out['calls_per_request']:.2f}  "
        f"429s {limited:4}  wall {r.wall:6.1f} s  min {minimum:.1f} s  "
        f"×{out['wall_over_min'] or 0:.2f}{'  TIME LIMIT' if r.timed_out else ''}{note}",
        flush=True,
    )
    return out


def _better(x: dict[str, Any], y: dict[str, Any]) -> bool:
    """Is LiteLLM run ``x`` better than ``y``: fewer client errors, then less wall time."""
    if "errors" not in y:
        return "errors" in x
    if "errors" not in x:
        return False
    return (x["errors"], x["wall_s"]) < (y["errors"], y["wall_s"])


# ----------------------------------------------------------------------------- report


def _row(label: str, res: dict[str, Any] | None) -> list[str]:
    if res is None:
        return [label, "not run", *[""] * 5]
    if "errors" not in res:
        return [label, f"**failed**: {res.get('error', '?')}", *[""] * 5]
    errs = f"{res['errors']:,}"
    if res["errors"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(res["error_kinds"].items()))
        errs += f" ({kinds})"
    if res["timed_out"]:
        errs += f" — **stopped at the {TIME_LIMIT:.0f} s limit**"
    return [
        label,
        errs,
        f"{res['calls_per_request']:.2f}",
        f"{res['upstream_429']:,} ({res['upstream_429_share']:.1%})",
        f"{res['wall_s']:.1f}",
        f"{res['min_s']:.1f}",
        rep.fmt(res["wall_over_min"], ".2f", "×"),
    ]


_HEAD = (
    "target",
    "client errors",
    "upstream calls / request",
    "upstream 429s (share)",
    "wall (s)",
    "theoretical min (s)",
    "wall ÷ min",
)


def report(data: dict[str, Any]) -> str:
    m = data["machine"]
    results = data["results"]
    lines = [
        "## Results: rate limits (Brace's capacity engine vs LiteLLM)",
        "",
        f"Generated by `{data['command']}` on {data['date']}.",
        "",
        f"- Machine: {m['nproc']} CPUs, {m['cpu']}; Linux {m['kernel']}; Python "
        f"{m['python']}; `sum(range(10**6))` takes {m['sum_range_ms']:.1f} ms; "
        f"Brace {m['brace']}; LiteLLM {m['litellm']}; load average (1 min) at the "
        f"start / end: {data['loadavg_start']:.2f} / {data['loadavg_end']:.2f}.",
        f"- Upstreams: `brace mock --burst-seconds {BURST_SECONDS}` (no latency, no faults) "
        f"with `--rpm {RPM}` (a, c) or `--tpm {TPM}` (b): a bucket of one second's "
        "quota (10 requests or 1,000 tokens) refilled continuously; a request costs "
        "1 request and ceil(prompt characters / 4) + `max_tokens` tokens. Buckets and "
        "stats are reset before each run.",
        f"- Load: aiohttp client, concurrency {CONCURRENCY}, one keep-alive session; one "
        f"warm-up request per deployment before each run (then {BURST_SECONDS + 0.5:g} s "
        f"of rest and the reset); {TIME_LIMIT:.0f} s limit per run.",
        "- Brace: one group per scenario, deployments `{provider: mock, rpm: 600}` or "
        "`{provider: mock, tpm: 60000}` (pacing burst `burst_seconds: 1`, the default), "
        "everything else default (retry 3 attempts, admission queue of 1,000, adaptive "
        "concurrency, deadline 300 s).",
        "- LiteLLM: the same deployments with `rpm`/`tpm` in `litellm_params`, "
        "`router_settings: {routing_strategy: S, num_retries: 3}` with S = "
        "`usage-based-routing-v2` (its rate-limit-aware strategy: skips deployments "
        "over their declared limits) and S = `simple-shuffle` (its default; rpm/tpm "
        "become weights); otherwise the settings of the gateway benchmark below (one "
        "worker, no DB, no Redis).",
        "",
    ]
    for s in SCENARIOS:
        res = results.get(s.key, {})
        rows = []
        if "brace" in data["targets"]:
            rows.append(_row("Brace", res.get("brace")))
        best = res.get("litellm_best")
        for strategy in LITELLM_STRATEGIES:
            if "litellm" not in data["targets"]:
                break
            mark = " (better)" if strategy == best else ""
            rows.append(_row(f"LiteLLM, `{strategy}`{mark}", res.get(f"litellm:{strategy}")))
        lines += [
            f"### ({s.key}) {s.title}: {s.requests} requests",
            "",
            rep.table(_HEAD, "llrrrrr", rows),
            "",
        ]
    lines += [
        "Client errors: answers other than 200 (or none) as the client saw them. Upstream "
        "calls: the mocks' `total_requests` (429s included) ÷ requests. Theoretical "
        "minimum: (total cost − one bucketful per deployment) ÷ the refill rate of all "
        "deployments; wall is first send to last answer, so a run whose requests failed "
        "(a 429 costs no quota) can end before the minimum. Per scenario, the better "
        "LiteLLM strategy is the one with fewer client errors, then less wall time.",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="brace,litellm", help="brace, litellm or both")
    parser.add_argument(
        "--strategies",
        default=",".join(LITELLM_STRATEGIES),
        help="LiteLLM routing strategies to try (comma-separated)",
    )
    parser.add_argument("--scenarios", default="a,b,c", help="comma-separated among a,b,c")
    parser.add_argument("--no-doc", action="store_true", help="don't touch docs/benchmarks.md")
    args = parser.parse_args()
    targets = [t for t in ("brace", "litellm") if t in args.only.split(",")]
    strategies = [s for s in LITELLM_STRATEGIES if s in args.strategies.split(",")]
    scenarios = [s for s in SCENARIOS if s.key in args.scenarios.split(",")]

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    loadavg_start = os.getloadavg()[0]
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {s.key: {} for s in SCENARIOS}
    procs: list[h.Proc] = []
    runs: list[tuple[str, str | None]] = [("brace", None)] if "brace" in targets else []
    if "litellm" in targets:
        runs += [("litellm", strategy) for strategy in strategies]
    try:
        mocks: dict[str, str] = {}
        for s in SCENARIOS:
            args_ = ["--burst-seconds", str(BURST_SECONDS), *s.mock_args]
            for m in s.mocks:
                proc, mocks[m] = h.start_mock(f"ratelimit-mock-{m}", [*args_, "--latency", "0"])
                procs.append(proc)
        for target, strategy in runs:
            key = target if strategy is None else f"litellm:{strategy}"
            print(f"{key}: starting", flush=True)
            try:
                if strategy is None:
                    proc, base = h.start_brace("ratelimit-brace", brace_models(mocks))
                else:
                    config = litellm_config(mocks, strategy)
                    proc, base = h.start_litellm("ratelimit-litellm", config)
            except RuntimeError as exc:
                for s in scenarios:
                    results[s.key][key] = {"error": str(exc).splitlines()[0]}
                print(f"  {key}: FAILED to start: {exc}", flush=True)
                continue
            procs.append(proc)
            try:
                for s in scenarios:
                    try:
                        results[s.key][key] = run_scenario(
                            key, base, s, mocks, brace=strategy is None
                        )
                    except (RuntimeError, OSError) as exc:
                        results[s.key][key] = {"error": str(exc).splitlines()[0]}
                        print(f"  {s.key} {key}: FAILED: {exc}", flush=True)
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

    for s in SCENARIOS:
        best: str | None = None
        for strategy in strategies:
            res = results[s.key].get(f"litellm:{strategy}")
            if res is not None and (
                best is None or _better(res, results[s.key][f"litellm:{best}"])
            ):
                best = strategy
        results[s.key]["litellm_best"] = best

    data: dict[str, Any] = {
        **rep.run_info(
            "ratelimit.py",
            started=started,
            loadavg_start=loadavg_start,
            versions=rep.scenario_versions(),
        ),
        "targets": targets,
        "results": results,
    }
    rep.publish("ratelimit", "ratelimit", data, report(data), doc=not args.no_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
