"""Metrics: feed records and events, parse the exposition, check exact values."""

from __future__ import annotations

from typing import Any, cast

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from brace.engine import Engine
from brace.events import AttemptEnded, BreakerChanged, EventBus, FellBack, Hedged, Retried
from brace.telemetry.metrics import DURATION_BUCKETS, TTFT_BUCKETS, Metrics
from brace.telemetry.record import AttemptRecord, RequestEnded, RequestRecord

Families = dict[str, Any]


class FakeLimiter:
    def __init__(self, desc: dict[str, Any]) -> None:
        self.desc = desc

    def describe(self) -> dict[str, Any]:
        return self.desc


class FakeEngine:
    """What :class:`Metrics` reads at scrape time, with state the test sets."""

    def __init__(self) -> None:
        self.groups: dict[str, list[dict[str, Any]]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.limiter: FakeLimiter | None = None
        self.events = EventBus()
        self.fail = False

    def deployments(self) -> dict[str, list[dict[str, Any]]]:
        if self.fail:
            raise RuntimeError("engine is closing")
        return self.groups

    def admission(self) -> dict[str, dict[str, Any]]:
        return self.queues


def make(engine: FakeEngine | None = None) -> tuple[Metrics, FakeEngine]:
    fake = engine if engine is not None else FakeEngine()
    return Metrics(cast(Engine, fake)), fake


def scrape(metrics: Metrics) -> Families:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(
    fams: Families, family: str, sample: str | None = None
) -> list[tuple[dict[str, str], float]]:
    fam = fams[family]
    name = sample if sample is not None else family
    return [(dict(s.labels), s.value) for s in fam.samples if s.name == name]


def value(fams: Families, sample: str, **labels: str) -> float:
    family = sample
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if sample.endswith(suffix) and sample[: -len(suffix)] in fams:
            family = sample[: -len(suffix)]
    found = [v for lab, v in samples(fams, family, sample) if lab == labels]
    assert len(found) == 1, (sample, labels, samples(fams, family, sample))
    return found[0]


def attempt(
    dep: str, error_class: str | None = None, status: int | None = 200, **kw: Any
) -> AttemptRecord:
    return AttemptRecord(
        deployment=dep,
        group=kw.pop("group", "gpt"),
        provider="mock",
        offset=0.0,
        duration=kw.pop("duration", 0.05),
        error_class=error_class,
        status=status,
        **kw,
    )


def record(**kw: Any) -> RequestRecord:
    base: dict[str, Any] = {
        "request_id": "req-0123456789abcdef",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "parent_span_id": None,
        "operation": "chat",
        "model": "gpt",
        "started_at": 1_700_000_000.0,
        "duration": 0.3,
        "status": 200,
        "group": "gpt",
        "deployment": "a",
        "provider": "mock",
    }
    base.update(kw)
    return RequestRecord(**base)


# ----------------------------------------------------------------------------- requests


def test_success_after_absorbed_failures_counts_request_attempts_and_absorbed() -> None:
    m, _ = make()
    m.observe_request(
        record(
            deployment="b",
            attempts=[
                attempt("a", "server_error", 503),
                attempt("a", "rate_limited", 429),
                attempt("b"),
            ],
        )
    )
    m.observe_request(record(attempts=[attempt("a")]))
    fams = scrape(m)

    assert samples(fams, "brace_requests", "brace_requests_total") == [
        (
            {
                "model": "gpt",
                "group": "gpt",
                "deployment": "b",
                "status": "200",
                "error_class": "none",
                "stream": "false",
            },
            1.0,
        ),
        (
            {
                "model": "gpt",
                "group": "gpt",
                "deployment": "a",
                "status": "200",
                "error_class": "none",
                "stream": "false",
            },
            1.0,
        ),
    ]
    assert (
        value(
            fams, "brace_errors_total", model="gpt", error_class="server_error", outcome="absorbed"
        )
        == 1
    )
    assert (
        value(
            fams, "brace_errors_total", model="gpt", error_class="rate_limited", outcome="absorbed"
        )
        == 1
    )
    assert not [
        lab
        for lab, _ in samples(fams, "brace_errors", "brace_errors_total")
        if lab["outcome"] == "surfaced"
    ]
    attempts = dict(
        ((lab["deployment"], lab["error_class"], lab["status"]), v)
        for lab, v in samples(fams, "brace_attempts", "brace_attempts_total")
    )
    assert attempts == {
        ("a", "server_error", "503"): 1,
        ("a", "rate_limited", "429"): 1,
        ("b", "none", "200"): 1,
        ("a", "none", "200"): 1,
    }
    assert value(fams, "brace_attempt_duration_seconds_count", group="gpt", deployment="a") == 3


def test_surfaced_error_counts_the_request_error_not_its_attempts() -> None:
    m, _ = make()
    m.observe_request(
        record(
            status=502,
            deployment=None,
            group=None,
            error_class="server_error",
            attempts=[attempt("a", "timeout", None), attempt("b", "server_error", 500)],
        )
    )
    m.observe_request(record(status=429, deployment=None, group=None, error_class="shed"))
    fams = scrape(m)

    assert value(
        fams, "brace_requests_total",
        model="gpt", group="gpt", deployment="none", status="502", error_class="server_error", stream="false",
    ) == 1  # fmt: skip
    assert (
        value(
            fams, "brace_errors_total", model="gpt", error_class="server_error", outcome="surfaced"
        )
        == 1
    )
    assert (
        value(fams, "brace_errors_total", model="gpt", error_class="shed", outcome="surfaced") == 1
    )
    assert not [
        lab
        for lab, _ in samples(fams, "brace_errors", "brace_errors_total")
        if lab["outcome"] == "absorbed"
    ]
    assert (
        value(
            fams,
            "brace_attempts_total",
            group="gpt",
            deployment="a",
            error_class="timeout",
            status="none",
        )
        == 1
    )


def test_fallback_labels_model_asked_and_group_that_answered() -> None:
    m, _ = make()
    m.observe_request(
        record(
            model="gpt",
            group="claude",
            deployment="c1",
            fallback=["claude"],
            attempts=[attempt("a", "overloaded", 529), attempt("c1", group="claude")],
        )
    )
    fams = scrape(m)
    assert value(
        fams, "brace_requests_total",
        model="gpt", group="claude", deployment="c1", status="200", error_class="none", stream="false",
    ) == 1  # fmt: skip
    assert (
        value(
            fams,
            "brace_attempts_total",
            group="claude",
            deployment="c1",
            error_class="none",
            status="200",
        )
        == 1
    )
    assert (
        value(fams, "brace_errors_total", model="gpt", error_class="overloaded", outcome="absorbed")
        == 1
    )


def test_duration_histogram_uses_genai_buckets_with_inclusive_bounds() -> None:
    m, _ = make()
    for d in (0.005, 0.01, 0.015, 0.3, 81.92, 100.0):
        m.observe_request(record(duration=d))
    fams = scrape(m)
    labels = {"model": "gpt", "group": "gpt", "deployment": "a", "stream": "false"}
    buckets = {
        lab["le"]: v
        for lab, v in samples(
            fams, "brace_request_duration_seconds", "brace_request_duration_seconds_bucket"
        )
        if {k: x for k, x in lab.items() if k != "le"} == labels
    }
    assert [float(le) for le in buckets if le != "+Inf"] == list(DURATION_BUCKETS)
    assert buckets["0.01"] == 2  # 0.005 and 0.01 (le is inclusive)
    assert buckets["0.02"] == 3
    assert buckets["0.16"] == 3
    assert buckets["0.32"] == 4
    assert buckets["40.96"] == 4
    assert buckets["81.92"] == 5
    assert buckets["+Inf"] == 6
    assert value(fams, "brace_request_duration_seconds_count", **labels) == 6
    assert value(fams, "brace_request_duration_seconds_sum", **labels) == pytest.approx(182.25)


def test_ttft_only_for_streams_and_queue_wait_only_when_queued() -> None:
    m, _ = make()
    m.observe_request(record(stream=True, ttft=0.07, duration=2.0, queue_wait=0.2))
    m.observe_request(record(stream=True, ttft=0.3, duration=3.0))
    m.observe_request(record())
    fams = scrape(m)
    lab = {"model": "gpt", "group": "gpt", "deployment": "a"}
    assert [float(s.labels["le"]) for s in fams["brace_time_to_first_token_seconds"].samples if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"] == list(TTFT_BUCKETS)  # fmt: skip
    assert value(fams, "brace_time_to_first_token_seconds_bucket", le="0.06", **lab) == 0
    assert value(fams, "brace_time_to_first_token_seconds_bucket", le="0.08", **lab) == 1
    assert value(fams, "brace_time_to_first_token_seconds_bucket", le="0.5", **lab) == 2
    assert value(fams, "brace_time_to_first_token_seconds_count", **lab) == 2
    assert value(fams, "brace_queue_wait_seconds_count", model="gpt") == 1
    assert value(fams, "brace_request_duration_seconds_count", stream="true", **lab) == 2
    assert value(fams, "brace_request_duration_seconds_count", stream="false", **lab) == 1


def test_tokens_by_type_and_cost() -> None:
    m, _ = make()
    usage = {"input_tokens": 100, "output_tokens": 40, "cached_tokens": 64, "reasoning_tokens": 10}
    m.observe_request(record(cost_usd=0.0015, **usage))
    m.observe_request(record(cost_usd=0.0005, input_tokens=20, output_tokens=5))
    m.observe_request(record(deployment=None, status=500, error_class="server_error"))
    fams = scrape(m)
    lab = {"model": "gpt", "group": "gpt", "deployment": "a"}
    assert value(fams, "brace_tokens_total", type="input", **lab) == 120
    assert value(fams, "brace_tokens_total", type="output", **lab) == 45
    assert value(fams, "brace_tokens_total", type="cached", **lab) == 64
    assert value(fams, "brace_tokens_total", type="reasoning", **lab) == 10
    assert len(samples(fams, "brace_tokens", "brace_tokens_total")) == 4  # none for the failure
    assert value(fams, "brace_cost_usd_total", **lab) == pytest.approx(0.002)


def test_no_request_id_trace_tenant_or_content_in_the_exposition() -> None:
    m, _ = make()
    m.observe_request(
        record(
            tenant="tenant-hash-5f1e",
            priority="high",
            content={"messages": [{"role": "user", "content": "secret prompt"}]},
            error="upstream said: api key sk-live-123 invalid",
            attempts=[attempt("a", "authentication", 401, error="sk-live-123")],
            status=502,
            error_class="authentication",
        )
    )
    text = m.render()[0].decode()
    for leaked in (
        "req-0123456789abcdef",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "tenant",
        "secret prompt",
        "sk-live",
        "high",
    ):
        assert leaked not in text


def test_label_names_are_the_documented_ones() -> None:
    m, _ = make()
    m.observe_request(
        record(
            stream=True,
            ttft=0.1,
            queue_wait=0.1,
            input_tokens=1,
            cost_usd=0.1,
            attempts=[attempt("a")],
        )
    )
    for e in (
        Retried("r", "gpt", "a", "rate_limited", 0.1, 1),
        FellBack("r", "gpt", "claude", "overloaded"),
        Hedged("r", "gpt", 0.5),
        BreakerChanged("a", "closed", "open", 30.0),
    ):
        m.on_event(e)
    fams = scrape(m)
    label_names = {
        name: {k for s in fam.samples for k in s.labels if k != "le"}
        for name, fam in fams.items()
        if fam.samples
    }
    assert label_names == {
        "brace_requests": {"model", "group", "deployment", "status", "error_class", "stream"},
        "brace_request_duration_seconds": {"model", "group", "deployment", "stream"},
        "brace_time_to_first_token_seconds": {"model", "group", "deployment"},
        "brace_queue_wait_seconds": {"model"},
        "brace_tokens": {"model", "group", "deployment", "type"},
        "brace_cost_usd": {"model", "group", "deployment"},
        "brace_attempts": {"group", "deployment", "error_class", "status"},
        "brace_attempt_duration_seconds": {"group", "deployment"},
        "brace_retries": {"group", "deployment", "error_class"},
        "brace_fallbacks": {"from_model", "to_model", "error_class"},
        "brace_hedges": {"group"},
        "brace_breaker_transitions": {"deployment", "from_state", "to_state"},
        "brace_event_subscriber_errors": set(),
    }


# ----------------------------------------------------------------------------- events


def test_events_count_retries_fallbacks_hedges_and_breaker_transitions() -> None:
    m, _ = make()
    m.on_event(Retried("r1", "gpt", "a", "rate_limited", 0.2, 1))
    m.on_event(Retried("r1", "gpt", "a", "rate_limited", 0.4, 2))
    m.on_event(Retried("r2", "gpt", "b", "timeout", 0.1, 1))
    m.on_event(FellBack("r1", "gpt", "claude", "rate_limited"))
    m.on_event(Hedged("r3", "gpt", 0.8))
    m.on_event(BreakerChanged("a", "closed", "open", 30.0))
    m.on_event(BreakerChanged("a", "open", "half_open"))
    m.on_event(AttemptEnded("r1", "gpt", "a", None, 200, 0.1))  # counted from the record
    m.on_event(object())  # unknown events are ignored
    m.on_event(RequestEnded(record()))
    fams = scrape(m)
    assert (
        value(fams, "brace_retries_total", group="gpt", deployment="a", error_class="rate_limited")
        == 2
    )
    assert (
        value(fams, "brace_retries_total", group="gpt", deployment="b", error_class="timeout") == 1
    )
    assert (
        value(
            fams,
            "brace_fallbacks_total",
            from_model="gpt",
            to_model="claude",
            error_class="rate_limited",
        )
        == 1
    )
    assert value(fams, "brace_hedges_total", group="gpt") == 1
    assert (
        value(
            fams,
            "brace_breaker_transitions_total",
            deployment="a",
            from_state="closed",
            to_state="open",
        )
        == 1
    )
    assert (
        value(
            fams,
            "brace_breaker_transitions_total",
            deployment="a",
            from_state="open",
            to_state="half_open",
        )
        == 1
    )
    assert sum(v for _, v in samples(fams, "brace_requests", "brace_requests_total")) == 1
    assert "brace_attempts" not in fams or not fams["brace_attempts"].samples
    assert Metrics.kinds == {RequestEnded, Retried, FellBack, Hedged, BreakerChanged}


def test_subscribed_to_a_bus_through_kinds() -> None:
    m, fake = make()
    fake.events.subscribe(m.on_event, Metrics.kinds)
    fake.events.emit(RequestEnded(record()))
    fake.events.emit(Hedged("r", "gpt", 0.1))
    fams = scrape(m)
    assert value(fams, "brace_hedges_total", group="gpt") == 1
    assert sum(v for _, v in samples(fams, "brace_requests", "brace_requests_total")) == 1


# ----------------------------------------------------------------------------- state at scrape time


def deployment(dep: str, state: str | None = "closed", **capacity: Any) -> dict[str, Any]:
    cap = {
        "configured_rpm": None,
        "configured_tpm": None,
        "learned_rpm": None,
        "learned_tpm": None,
        "factor": 1.0,
        "effective_rpm": None,
        "effective_tpm": None,
        "concurrency_limit": 64.0,
        "in_flight": 0,
        "upstream_429s": 0,
    }
    cap.update(capacity)
    return {
        "id": dep,
        "weight": 1.0,
        "outstanding": 0,
        "breaker": None if state is None else {"deployment": dep, "state": state},
        "capacity": cap,
        "retry_budget": {"requests": 100.0, "retries": 4.0, "allowed": 30.0},
    }


def test_collector_reads_engine_state_at_each_scrape() -> None:
    m, fake = make()
    fake.groups = {
        "gpt": [
            deployment(
                "a",
                "closed",
                effective_rpm=540.0,
                effective_tpm=90000.0,
                in_flight=3,
                concurrency_limit=12.5,
            ),
            deployment("b", "open", learned_rpm=600.0, upstream_429s=7, factor=0.8),
            deployment("c", "half_open"),
        ],
        "claude": [deployment("a", None)],
    }
    fake.queues = {
        "gpt": {
            "queue_depth": 4,
            "by_priority": {"high": 1, "normal": 3},
            "shed": 9,
            "admitted_after_wait": 2,
        }
    }
    fake.limiter = FakeLimiter(
        {"backend": "redis", "mode": "degraded", "live_instances": 3, "degraded_calls": 11}
    )
    fams = scrape(m)

    assert dict(
        ((lab["group"], lab["deployment"]), v) for lab, v in samples(fams, "brace_breaker_state")
    ) == {
        ("gpt", "a"): 0,
        ("gpt", "b"): 2,
        ("gpt", "c"): 1,
    }
    assert value(fams, "brace_deployment_in_flight", group="gpt", deployment="a") == 3
    assert value(fams, "brace_limiter_concurrency_limit", group="gpt", deployment="a") == 12.5
    assert value(fams, "brace_limiter_effective_rpm", group="gpt", deployment="a") == 540
    assert value(fams, "brace_limiter_effective_tpm", group="gpt", deployment="a") == 90000
    assert len(samples(fams, "brace_limiter_effective_rpm")) == 1  # unlimited ones are absent
    assert value(fams, "brace_limiter_learned_rpm", group="gpt", deployment="b") == 600
    assert value(fams, "brace_limiter_rate_factor", group="gpt", deployment="b") == 0.8
    assert value(fams, "brace_upstream_rate_limited_total", group="gpt", deployment="b") == 7
    assert value(fams, "brace_retry_budget_remaining", group="claude", deployment="a") == 26
    assert value(fams, "brace_queue_depth", model="gpt") == 4
    assert value(fams, "brace_shed_total", model="gpt") == 9
    assert value(fams, "brace_admitted_after_wait_total", model="gpt") == 2
    assert {lab["mode"]: v for lab, v in samples(fams, "brace_limiter_mode")} == {
        "local": 0,
        "shared": 0,
        "degraded": 1,
    }
    assert value(fams, "brace_limiter_live_instances") == 3
    assert value(fams, "brace_limiter_degraded_calls_total") == 11

    # state is read again at the next scrape: no stale gauges
    fake.groups["gpt"][1]["breaker"]["state"] = "closed"
    fake.queues["gpt"]["queue_depth"] = 0
    fake.limiter.desc = {
        "backend": "redis",
        "mode": "shared",
        "live_instances": 2,
        "degraded_calls": 11,
    }
    fams = scrape(m)
    assert value(fams, "brace_breaker_state", group="gpt", deployment="b") == 0
    assert value(fams, "brace_queue_depth", model="gpt") == 0
    assert value(fams, "brace_limiter_mode", backend="redis", mode="shared") == 1


def test_unstarted_engine_and_local_limiter() -> None:
    m, fake = make()
    fams = scrape(m)
    assert "brace_limiter_mode" not in fams
    assert not samples(fams, "brace_breaker_state")
    fake.limiter = FakeLimiter({"backend": "local", "mode": "local", "keys": 0})
    fams = scrape(m)
    assert value(fams, "brace_limiter_mode", backend="local", mode="local") == 1
    assert "brace_limiter_live_instances" not in fams


def test_a_failing_state_read_does_not_fail_the_scrape() -> None:
    m, fake = make()
    fake.fail = True
    fake.queues = {"gpt": {"queue_depth": 1, "shed": 0, "admitted_after_wait": 0}}
    m.observe_request(record())
    fams = scrape(m)
    assert m.collect_errors == 1
    assert value(fams, "brace_queue_depth", model="gpt") == 1
    assert "brace_requests" in fams


def test_extra_sources_become_gauges_and_counters() -> None:
    m, _ = make()
    queued = [5]
    m.add_source(lambda: {"store_queue_depth": queued[0], "brace_store_dropped_total": 2})

    def broken() -> dict[str, float]:
        raise RuntimeError("store closed")

    m.add_source(broken)
    fams = scrape(m)
    assert fams["brace_store_queue_depth"].type == "gauge"
    assert value(fams, "brace_store_queue_depth") == 5
    assert fams["brace_store_dropped"].type == "counter"
    assert value(fams, "brace_store_dropped_total") == 2
    assert m.collect_errors == 1
    queued[0] = 0
    assert value(scrape(m), "brace_store_queue_depth") == 0


def test_each_instance_has_its_own_registry_not_the_global_one() -> None:
    m1, _ = make()
    m2, _ = make()
    m1.observe_request(record())
    assert m1.registry is not m2.registry
    assert "brace_requests" in scrape(m1)
    assert not scrape(m2)["brace_requests"].samples
    assert not [
        n for n in prometheus_client.REGISTRY._names_to_collectors if n.startswith("brace_")
    ]


def test_event_subscriber_errors_are_exposed() -> None:
    m, fake = make()
    fake.events.errors = 3
    assert value(scrape(m), "brace_event_subscriber_errors_total") == 3


def test_writer_stats_become_queue_gauge_and_counters() -> None:
    m, _ = make()
    stats: dict[str, Any] = {
        "engine": "sqlite",
        "queued": 3,
        "written": 120,
        "dropped": 1,
        "errors": 0,
    }
    m.add_writer("store", lambda: stats)
    m.add_writer("tracer", lambda: {"dropped": 2})
    fams = scrape(m)
    assert fams["brace_store_queue_depth"].type == "gauge"
    assert fams["brace_store_queue_depth"].documentation == "Records waiting for the writer."
    assert value(fams, "brace_store_queue_depth") == 3
    assert value(fams, "brace_store_written_total") == 120
    assert value(fams, "brace_store_dropped_total") == 1
    assert value(fams, "brace_store_errors_total") == 0
    assert value(fams, "brace_tracer_dropped_total") == 2
    assert "brace_tracer_queue_depth" not in fams
    assert "brace_store_engine" not in fams
