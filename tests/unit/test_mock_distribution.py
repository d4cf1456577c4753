"""Latency distributions: parsing, validation and seeded sampling."""

from __future__ import annotations

import random
import statistics

import pytest

from brace.mock import Distribution, MockConfig
from brace.mock._distribution import parse_distribution


@pytest.mark.parametrize(
    ("spec", "kind", "a", "b"),
    [
        ("0", "fixed", 0, 0),
        ("50", "fixed", 50, 0),
        ("50ms", "fixed", 50, 0),
        ("1.5s", "fixed", 1500, 0),
        ("fixed(20)", "fixed", 20, 0),
        ("uniform(10, 50)", "uniform", 10, 50),
        ("normal(100,20)", "normal", 100, 20),
        ("lognormal(200,1500)", "lognormal", 200, 1500),
    ],
)
def test_parse(spec: str, kind: str, a: float, b: float) -> None:
    dist = parse_distribution(spec)
    assert (dist.kind, dist.a, dist.b) == (kind, a, b)
    assert parse_distribution(dist.spec) == dist


@pytest.mark.parametrize(
    "spec", ["uniform(50,10)", "lognormal(0,10)", "lognormal(100,50)", "gamma(1,2)", "fast", "-5"]
)
def test_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_distribution(spec)


@pytest.mark.parametrize(
    "spec", ["uniform(10,50)", "normal(100,20)", "lognormal(200,1500)", "fixed(3)"]
)
def test_same_seed_same_samples(spec: str) -> None:
    dist = parse_distribution(spec)
    first = [dist.sample(random.Random(42)) for _ in range(3)]
    a, b = random.Random(7), random.Random(7)
    assert [dist.sample(a) for _ in range(50)] == [dist.sample(b) for _ in range(50)]
    assert len(set(first)) == 1


def test_samples_stay_in_range() -> None:
    rng = random.Random(1)
    uniform = parse_distribution("uniform(10,50)")
    assert all(10 <= uniform.sample(rng) <= 50 for _ in range(1000))
    normal = parse_distribution("normal(5,100)")
    assert all(normal.sample(rng) >= 0 for _ in range(1000))


def test_lognormal_hits_median_and_p99() -> None:
    rng = random.Random(3)
    dist = parse_distribution("lognormal(200,1500)")
    samples = sorted(dist.sample(rng) for _ in range(20000))
    assert statistics.median(samples) == pytest.approx(200, rel=0.05)
    assert samples[int(0.99 * len(samples))] == pytest.approx(1500, rel=0.1)


def test_fixed_zero_draws_nothing() -> None:
    rng = random.Random(5)
    state = rng.getstate()
    assert Distribution().is_zero
    assert Distribution().sample(rng) == 0
    assert rng.getstate() == state


def test_config_accepts_numbers_and_serialises_specs() -> None:
    config = MockConfig(latency=25, chunk_delay="uniform(1,2)")
    dumped = config.model_dump(mode="json")
    assert dumped["latency"] == "25"
    assert dumped["chunk_delay"] == "uniform(1,2)"
    assert MockConfig.model_validate(dumped).model_dump() == config.model_dump()
