"""MockConfig layering, validation, the CLI config builder and the seeded fault draw."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from brace.mock import PROFILES, MockConfig, register_cli
from brace.mock._cli import build_config
from brace.mock._config import parse_error_rates
from brace.mock._settings import Settings


def test_defaults() -> None:
    config = MockConfig()
    assert config.latency.is_zero
    assert config.chunks == 20
    assert config.rpm is None and config.tpm is None
    assert config.error_rates == {}
    assert config.hang_seconds == 600


def test_profile_is_a_layer_under_explicit_fields() -> None:
    config = MockConfig(profile="flaky", latency="5", error_rates={503: 0.5})
    assert config.error_rates == {"503": 0.5, "500": 0.02, "hang": 0.01, "stall": 0.01}
    assert config.latency.a == 5
    assert config.explicit_fields == {"profile", "latency", "error_rates"}


def test_merge_switches_profile_and_keeps_explicit_fields() -> None:
    config = MockConfig(profile="flaky", latency="5")
    outage = config.merged({"profile": "outage"})
    assert outage.error_rates == {"503": 1.0}
    assert outage.latency.a == 5
    healthy = outage.merged({"profile": "healthy"})
    assert healthy.error_rates == {}
    zeroed = MockConfig(error_rates={"503": 1.0}).merged({"error_rates": {}})
    assert zeroed.error_rates == {}


def test_every_profile_is_valid_and_documented() -> None:
    assert {"healthy", "flaky", "rate-limited", "overloaded", "slow", "outage", "chaos"} <= set(
        PROFILES
    )
    docs = (Path(__file__).parents[2] / "docs" / "mock.md").read_text()
    for name, profile in PROFILES.items():
        MockConfig(profile=name)
        assert profile.description
        assert f"`{name}`" in docs


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"error_rates": {"503": 0.7, "500": 0.4}}, "more than 1"),
        ({"error_rates": {"504": 0.1}}, "error_rates"),
        ({"error_rates": {"503": 1.5}}, "within 0..1"),
        ({"profile": "nope"}, "unknown profile"),
        ({"rpm": 0}, "rpm"),
        ({"chunks": 0}, "chunks"),
        ({"latecny": "5"}, "latecny"),
    ],
)
def test_invalid_configs(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MockConfig.model_validate(data)


def test_parse_error_rates() -> None:
    assert parse_error_rates("503=0.4, hang=0.05") == {"503": 0.4, "hang": 0.05}
    with pytest.raises(ValueError, match="KIND=RATE"):
        parse_error_rates("503")


def test_build_config_layers_file_then_options(tmp_path: Path) -> None:
    path = tmp_path / "mock.yaml"
    path.write_text("profile: flaky\nrpm: 10\nerror_rates:\n  503: 0.2\n")
    config = build_config(config_file=path, rpm=20, error_rate="hang=0.1", latency="uniform(1,2)")
    assert config.rpm == 20
    assert config.error_rates == {"503": 0.2, "500": 0.02, "hang": 0.1, "stall": 0.01}
    assert config.latency.kind == "uniform"


def test_build_config_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "mock.yaml"
    path.write_text("chunks: -1\n")
    with pytest.raises(ValueError, match=r"mock\.yaml: invalid mock config: chunks"):
        build_config(config_file=path)


def test_cli_rejects_bad_options_with_exit_2() -> None:
    app = typer.Typer()
    register_cli(app)

    @app.command()
    def other() -> None:  # a second command keeps `mock` a subcommand
        """Unused."""

    result = CliRunner().invoke(app, ["mock", "--error-rate", "503=2"])
    assert result.exit_code == 2
    assert "error_rates" in result.output


def test_fault_draw_is_seeded_and_follows_rates() -> None:
    settings = Settings(MockConfig(error_rates={"503": 0.3, "hang": 0.1}), "test")
    first = [settings.draw_fault(random.Random(9)) for _ in range(3)]
    assert len(set(first)) == 1
    a, b = random.Random(11), random.Random(11)
    seq_a = [settings.draw_fault(a) for _ in range(200)]
    assert seq_a == [settings.draw_fault(b) for _ in range(200)]
    counts = Counter(settings.draw_fault(random.Random(i)) for i in range(5000))
    assert counts["503"] / 5000 == pytest.approx(0.3, abs=0.03)
    assert counts["hang"] / 5000 == pytest.approx(0.1, abs=0.02)
    assert Settings(MockConfig(), "t").draw_fault(random.Random(1)) is None
