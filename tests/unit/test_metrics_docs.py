"""docs/metrics.md and docs/grafana-dashboard.json agree with what Metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from brace.events import BreakerChanged, FellBack, Hedged, Retried

from .test_metrics import FakeLimiter, attempt, deployment, make, record, scrape

DOCS = Path(__file__).resolve().parents[2] / "docs"
NAME = re.compile(r"\bbrace_[a-z0-9_]+")


@pytest.fixture(scope="module")
def exposed() -> tuple[set[str], set[str]]:
    """(family names, sample names) of a Metrics with every series populated."""
    m, fake = make()
    m.observe_request(
        record(
            stream=True,
            ttft=0.1,
            queue_wait=0.1,
            input_tokens=10,
            output_tokens=5,
            cached_tokens=2,
            reasoning_tokens=1,
            cost_usd=0.01,
            attempts=[attempt("a", "rate_limited", 429), attempt("a")],
        )
    )
    m.observe_request(record(status=502, error_class="server_error", deployment=None))
    for e in (
        Retried("r", "gpt", "a", "rate_limited", 0.1, 1),
        FellBack("r", "gpt", "claude", "overloaded"),
        Hedged("r", "gpt", 0.5),
        BreakerChanged("a", "closed", "open", 30.0),
    ):
        m.on_event(e)
    fake.groups = {
        "gpt": [
            deployment("a", effective_rpm=1.0, effective_tpm=1.0, learned_rpm=1.0, learned_tpm=1.0)
        ]
    }
    fake.queues = {"gpt": {"queue_depth": 1, "shed": 1, "admitted_after_wait": 1}}
    fake.limiter = FakeLimiter(
        {"backend": "redis", "mode": "shared", "live_instances": 2, "degraded_calls": 0}
    )
    m.add_writer("store", lambda: {"queued": 1, "written": 1, "dropped": 1, "errors": 1})
    m.add_writer("tracer", lambda: {"queued": 0, "written": 1, "dropped": 1, "errors": 1})
    fams = scrape(m)
    return set(fams), {s.name for f in fams.values() for s in f.samples}


def documented_name(family: Any) -> str:
    return f"{family}_total" if family.type == "counter" else family.name


def test_metrics_md_lists_every_metric_and_nothing_else(exposed: tuple[set[str], set[str]]) -> None:
    families, samples = exposed
    text = (DOCS / "metrics.md").read_text()
    in_doc = {n for n in NAME.findall(text) if not n.endswith(("_bucket", "_count", "_sum"))}
    table_rows = set(re.findall(r"^\| `(brace_[a-z0-9_]+)` \|", text, re.M))
    # every family, by the name a user queries (counters with _total), has a table row
    names = {n for n in samples if not n.endswith(("_bucket", "_count", "_sum"))} | {
        n for n in families if f"{n}_bucket" in samples
    }
    tracer = {n for n in names | in_doc if n.startswith("brace_tracer_")}  # prose, like store's
    assert names - table_rows - tracer == set()
    assert in_doc - names == set()


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_grafana_dashboard_is_valid_and_uses_only_exposed_metrics(
    exposed: tuple[set[str], set[str]],
) -> None:
    _, samples = exposed
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    [ds] = dashboard["__inputs"]
    assert (ds["name"], ds["type"], ds["pluginId"]) == ("DS_PROMETHEUS", "datasource", "prometheus")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    ref = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for p in dashboard["panels"]:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        if p["type"] == "row":
            continue
        assert p["datasource"] == ref, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == ref
    for var in dashboard["templating"]["list"]:
        assert var["datasource"] == ref
        assert set(NAME.findall(var["query"]["query"])) <= samples

    used: set[str] = set()
    for e in exprs(dashboard):
        assert e.count("(") == e.count(")") and e.count("{") == e.count("}"), e
        if "histogram_quantile" in e:
            assert "_bucket" in e and "le" in e, e
        used.update(NAME.findall(e))
    assert used - samples == set()
    for needed in (
        "brace_requests_total",
        "brace_errors_total",
        "brace_request_duration_seconds_bucket",
        "brace_time_to_first_token_seconds_bucket",
        "brace_tokens_total",
        "brace_cost_usd_total",
        "brace_breaker_state",
        "brace_queue_depth",
        "brace_limiter_effective_rpm",
        "brace_limiter_concurrency_limit",
        "brace_deployment_in_flight",
    ):
        assert needed in used, needed
    assert any('outcome="absorbed"' in e for e in exprs(dashboard))
    assert any('outcome="surfaced"' in e for e in exprs(dashboard))
