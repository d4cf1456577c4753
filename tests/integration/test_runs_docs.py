"""docs/runs.md's examples, as written: its YAML loads and states the defaults, and its
curl command (pointed at a test gateway instead of port 4000) puts a request into the run
it names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from brace.config import RunsConfig, parse_config

from .conftest import ServerThread

DOC = (Path(__file__).resolve().parents[2] / "docs" / "runs.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)


def test_the_yaml_example_loads_and_shows_the_defaults() -> None:
    (example,) = blocks("yaml")
    raw: dict[str, Any] = yaml.safe_load(example)
    raw["models"] = {"m": {"deployments": [{"provider": "mock", "model": "m"}]}}
    config = parse_config(raw, env={})
    assert config.runs == RunsConfig()  # the page shows exactly the defaults
    assert set(raw["runs"]) == set(RunsConfig.model_fields)  # and every setting


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_the_curl_example_names_a_run(servers: ServerThread) -> None:
    (example,) = [b for b in blocks("bash") if "x-brace-run-id" in b]
    mock = servers.mock()
    _, url = servers.gateway(
        {"models": {"demo": {"deployments": [{"provider": "mock", "model": "m", "base_url": f"{mock}/v1"}]}}}
    )  # fmt: skip
    command = example.replace("http://127.0.0.1:4000", url)
    assert command != example
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout)["choices"], out.stderr
    run_id = re.search(r"x-brace-run-id: ([\w-]+)", example).group(1)  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"{url}/admin/runs/{run_id}", timeout=5) as resp:
                run = json.loads(resp.read())
                break
        except urllib.error.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert (run["agent"], run["status"], run["model_steps"]) == ("triage", "completed", 1)
