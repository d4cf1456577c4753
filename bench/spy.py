"""Where Brace spends its time under load: py-spy samples of ``brace serve`` while wrk
drives it, folded into the functions with the most self and inclusive time.

    .venv/bin/python bench/spy.py [--telemetry sqlite|metrics|off|otlp] [--stream]
        [--duration 8] [--top 40]

Needs ``py-spy`` (``bench/.venv-candidates/bin/py-spy``, or on PATH) and ``wrk``.  One
``brace mock`` (no latency), one Brace with one deployment, wrk at c=64.  Samples every
thread (``--threads``): the event loop and the request-log writer thread are shown
apart, so the time the writer holds the GIL is visible.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import BENCH, free_port, start_mock, wrk
from telemetry import start_brace_config


def py_spy() -> str:
    local = BENCH / ".venv-candidates" / "bin" / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: bash bench/setup.sh (bench/.venv-candidates)")
    return found


def fold(raw: Path, top: int) -> str:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    self_n: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0]] += n
        for f in set(frames[1:]):
            incl[f] += n
        self_n[frames[-1]] += n
    files: collections.Counter[str] = collections.Counter()
    for f, n in self_n.items():
        where = f.rpartition("(")[2].partition(":")[0]
        files[where] += n
    out = [f"{total} samples", "", "threads:"]
    out += [f"  {n / total:6.1%}  {t}" for t, n in threads.most_common(8)]
    out += ["", "self, by file:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in files.most_common(top)]
    out += [""]
    out += ["self:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in self_n.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--telemetry", default="sqlite", choices=("sqlite", "metrics", "off", "otlp")
    )
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="brace-profile-"))
    mock, mock_url = start_mock("prof-mock", ["--latency", "0"])
    telemetry: dict[str, Any] = {
        "sqlite": {"store": "sqlite", "database": str(tmp / "brace.db")},
        "metrics": {"store": "off"},
        "off": {"enabled": False},
        "otlp": {
            "store": "sqlite",
            "database": str(tmp / "brace.db"),
            "otlp_endpoint": f"http://127.0.0.1:{free_port()}/v1/traces",
        },
    }[args.telemetry]
    models = {"chat": {"deployments": [{"provider": "mock", "model": "m", "base_url": mock_url}]}}
    brace, url = start_brace_config("prof-brace", {"models": models, "telemetry": telemetry})
    try:
        target = f"{url}/v1/chat/completions"
        wrk(target, stream=args.stream, concurrency=16, duration=1)
        raw = tmp / "brace.raw"
        argv = [py_spy(), "record", "--pid", str(brace.pid), "--threads", "--rate", str(args.rate)]
        argv += ["--duration", str(max(1, round(args.duration) - 1)), "--format", "raw"]
        argv += ["-o", str(raw), "--nonblocking"]
        spy = threading.Thread(target=subprocess.run, args=(argv,), kwargs={"capture_output": True})
        spy.start()
        r = wrk(target, stream=args.stream, concurrency=args.concurrency, duration=args.duration)
        spy.join()
        print(f"{r['rps']:,.0f} req/s, errors {r['errors']}")
        print(fold(raw, args.top))
    finally:
        brace.stop()
        mock.stop()


if __name__ == "__main__":
    main()
