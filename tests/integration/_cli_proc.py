"""Run the ``brace`` command as a real subprocess and read its output as it comes.

Every process started through :class:`Processes` is killed at teardown if it is
still running, so that a failing test never leaves a server behind.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["BRACE", "CliProcess", "Processes", "wait_until"]

_ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "brace"
# The installed console script when there is one (what users run), else the module.
BRACE: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "brace.cli"]


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll ``predicate()`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class CliProcess:
    """One ``brace ...`` child process; stdout and stderr are drained by threads."""

    def __init__(self, args: list[str], *, env: Mapping[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env.pop("PYTHONUNBUFFERED", None)  # the CLI must flush its start-up line itself
        if env:
            full_env.update(env)
        self.args = args
        self.proc = subprocess.Popen(
            [*BRACE, *args],
            cwd=_ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out, True)),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err, False)),
        ]
        for t in self._readers:
            t.daemon = True
            t.start()

    def _pump(self, stream: object, sink: list[str], lines: bool) -> None:
        assert stream is not None
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line)
            if lines:
                self._lines.put(line)
        if lines:
            self._lines.put(None)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_for_line(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """Read stdout lines until one matches ``pattern``; fail on exit or timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout}s\n{self.describe()}"
                )
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(5)
                raise AssertionError(
                    f"process exited ({self.proc.returncode}) before printing {pattern!r}\n"
                    f"{self.describe()}"
                )
            m = rx.search(line)
            if m:
                return m

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for exit (bounded) and for the output to be fully read."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"process still running after {timeout}s\n{self.describe()}"
            ) from None
        for t in self._readers:
            t.join(5)
        return rc

    def describe(self) -> str:
        return f"$ brace {' '.join(self.args)}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for t in self._readers:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Processes:
    """Starts ``brace`` subprocesses and kills the leftovers at teardown."""

    def __init__(self) -> None:
        self.started: list[CliProcess] = []

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> CliProcess:
        p = CliProcess(list(args), env=env)
        self.started.append(p)
        return p

    def close(self) -> None:
        for p in self.started:
            p.kill()
