"""Brace's own cost per request, in-process, without HTTP: the group's stack around a
canned provider, with telemetry in each configuration, side by side in one process.

    .venv/bin/python bench/micro.py [--requests 20000] [--rounds 3] [--profile CONFIG]

For each configuration (``bare``: the provider alone; ``off``: the stack, no
subscriber, so no record is built; ``metrics`` (what ``enabled: false`` gives); ``sqlite``: metrics + the SQLite request log, the default;
``sqlite+otlp``: plus spans exported to a dead-end exporter) it runs ``--requests``
JSON requests, 64 at a time, and reports wall µs per request and CPU µs per request
(every thread of the process: the request-log writer and the tracer included, timed
until their queues are flushed).  Rounds rotate between configurations and the best
round is kept, so a burst of other work on the machine does not decide the ranking.
``--profile CONFIG`` prints a cProfile of one configuration instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from brace import engine as engine_module
from brace.config import BraceConfig
from brace.engine import Engine
from brace.stack import Request, Response, StreamResponse
from brace.telemetry.hub import Telemetry

BODY = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "mock-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello there " * 8},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32},
    }
)


class _Canned:
    """A provider that answers at once (after one loop turn, like a socket would)."""

    def __init__(self, *_: Any) -> None:
        pass

    async def __call__(self, req: Request) -> Response | StreamResponse:
        await asyncio.sleep(0)
        return Response(BODY, _parsed=orjson.loads(BODY), upstream={})


class _NullExporter:
    """Takes the encoded OTLP requests and sends them nowhere (no network here)."""

    def __init__(self) -> None:
        self.bytes = 0

    async def export(self, body: bytes) -> bool:
        self.bytes += len(body)
        return True

    async def aclose(self) -> None:
        pass


def config(name: str, tmp: Path) -> BraceConfig:
    telemetry: dict[str, Any] = {
        "bare": {"enabled": False},
        "off": {"enabled": False},
        "metrics": {"store": "off"},
        "sqlite": {"store": "sqlite", "database": str(tmp / f"{name}.db")},
        "sqlite+otlp": {
            "store": "sqlite",
            "database": str(tmp / f"{name}.db"),
            "otlp_endpoint": "http://127.0.0.1:9/v1/traces",
        },
    }[name]
    return BraceConfig.model_validate(
        {
            "models": {
                "chat": {
                    "deployments": [
                        {"provider": "mock", "model": "mock-1", "base_url": "http://127.0.0.1:9"}
                    ]
                }
            },
            "telemetry": telemetry,
        }
    )


async def run_config(name: str, tmp: Path, requests: int, concurrency: int) -> tuple[float, float]:
    cfg = config(name, tmp)
    engine = Engine(cfg)
    await engine.start()
    telemetry = Telemetry(cfg, engine)
    if name not in ("bare", "off"):  # enabled: false still counts metrics; off is none at all
        await telemetry.start()
    if telemetry.tracer is not None:  # no network: spans are built and encoded, not sent
        telemetry.tracer._exporter = _NullExporter()  # type: ignore[assignment]
    handler: Callable[[Request], Any] = engine.handler("chat")
    if name == "bare":
        handler = _Canned()
    body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
    counter = iter(range(10**9))

    async def one() -> None:
        req = Request("chat", "chat", body, False, f"r-{next(counter)}")
        await handler(req)

    for _ in range(200):  # warm-up
        await one()
    if telemetry.store is not None:
        await telemetry.store.flush()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if telemetry.store is not None:
        await telemetry.store.flush()
    if telemetry.tracer is not None:
        await telemetry.tracer.flush()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await telemetry.aclose()
    await engine.aclose()
    return wall * 1e6 / requests, cpu * 1e6 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--configs", default="bare,off,metrics,sqlite,sqlite+otlp")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    engine_module.make_provider = _Canned  # type: ignore[assignment]
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    tmp = Path(tempfile.mkdtemp(prefix="brace-micro-"))
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(run_config(args.profile, tmp, args.requests, args.concurrency))
        prof.disable()
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(35)
        return
    names = args.configs.split(",")
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):
        for name in names:
            wall, cpu = asyncio.run(run_config(name, tmp, args.requests, args.concurrency))
            old = best.get(name)
            best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)
    base = best.get("bare", (0.0, 0.0))
    print(f"{'config':<12} {'wall µs/req':>12} {'cpu µs/req':>11} {'cpu - bare':>11}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<12} {wall:12.1f} {cpu:11.1f} {cpu - base[1]:11.1f}")


if __name__ == "__main__":
    main()
