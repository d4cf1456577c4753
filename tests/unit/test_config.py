from pathlib import Path

import pytest

from brace.config import load_config, parse_config
from brace.errors import ConfigError

GOOD = """
models:
  chat:
    deployments:
      - provider: openai
        model: gpt-4o-mini
        api_key: ${OPENAI_API_KEY}
        rpm: 500
        tpm: 200000
      - provider: ollama
        model: qwen2.5:1.5b-instruct
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "brace.yaml"
    p.write_text(text)
    return p


def test_issue_example_loads_with_presets(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), env={"OPENAI_API_KEY": "sk-secret-123"})
    deps = cfg.models["chat"].deployments
    assert deps[0].url == "https://api.openai.com/v1"
    assert deps[0].rpm == 500 and deps[0].tpm == 200000
    assert deps[1].url == "http://127.0.0.1:11434/v1"
    assert deps[1].id == "ollama/qwen2.5:1.5b-instruct"
    # the key is kept but never printed
    assert deps[0].api_key is not None
    assert deps[0].api_key.get_secret_value() == "sk-secret-123"
    assert "sk-secret-123" not in repr(cfg)
    assert "sk-secret-123" not in str(cfg.model_dump())


def test_missing_env_var_names_key_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD), env={})
    msg = info.value.message
    assert "brace.yaml" in msg
    assert "models.chat.deployments[0].api_key" in msg
    assert "OPENAI_API_KEY" in msg


def test_env_default(tmp_path: Path) -> None:
    text = GOOD.replace("${OPENAI_API_KEY}", "${OPENAI_API_KEY:-sk-default}")
    cfg = load_config(write(tmp_path, text), env={})
    key = cfg.models["chat"].deployments[0].api_key
    assert key is not None and key.get_secret_value() == "sk-default"


def test_inline_key_rejected_without_echoing_it(tmp_path: Path) -> None:
    text = GOOD.replace("${OPENAI_API_KEY}", "sk-live-abcdef")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert "environment reference" in info.value.message
    assert "models.chat.deployments[0].api_key" in info.value.message
    assert "sk-live-abcdef" not in info.value.message


@pytest.mark.parametrize(
    ("yaml_text", "where", "what"),
    [
        (
            "models:\n  chat:\n    deployments:\n      - provider: ollama\n        model: m\n        rpm: lots\n",
            "models.chat.deployments[0].rpm",
            "integer",
        ),
        (
            "models:\n  chat:\n    deployments:\n      - provider: nope\n        model: m\n",
            "models.chat.deployments[0].provider",
            "expected one of",
        ),
        (
            "models:\n  chat:\n    deployments: []\n",
            "models.chat.deployments",
            "at least 1",
        ),
        ("models: {}\n", "models", "at least 1"),
        (
            "models:\n  chat:\n    deployments:\n      - provider: ollama\n        model: m\n        colour: red\n",
            "models.chat.deployments[0].colour",
            "not permitted",
        ),
        (
            "models:\n  chat:\n    deployments:\n      - provider: groq\n        model: m\n",
            "models.chat.deployments[0]",
            "needs an api_key",
        ),
        (
            "models:\n  chat:\n    deployments:\n      - provider: azure\n        model: m\n        api_key: ${K}\n        base_url: https://x.openai.azure.com\n",
            "models.chat.deployments[0]",
            "api_version",
        ),
        (
            "models:\n  chat:\n    deployments:\n      - provider: openai\n        model: m\n        base_url: localhost:8000\n",
            "base_url",
            "http://",
        ),
        ("server:\n  port: 99999\nmodels: {}\n", "server.port", "65535"),
    ],
)
def test_invalid_files_name_file_key_and_expectation(
    tmp_path: Path, yaml_text: str, where: str, what: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, yaml_text), env={"K": "k"})
    msg = info.value.message
    assert str(tmp_path / "brace.yaml") in msg
    assert where in msg
    assert what in msg


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "models:\n  chat: [\n"), env={})
    assert "invalid YAML" in info.value.message
    assert "line" in info.value.message


def test_missing_file_suggests_demo(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "--demo" in info.value.message


def test_duplicate_deployment_names_rejected() -> None:
    raw = {
        "models": {
            "chat": {
                "deployments": [
                    {"provider": "vllm", "model": "m"},
                    {"provider": "vllm", "model": "m"},
                ]
            }
        }
    }
    with pytest.raises(ConfigError, match="distinct name"):
        parse_config(raw, env={})


def test_config_is_frozen() -> None:
    cfg = parse_config(
        {"models": {"m": {"deployments": [{"provider": "vllm", "model": "x"}]}}}, env={}
    )
    with pytest.raises(Exception, match="frozen"):
        cfg.server.port = 1  # type: ignore[misc]


def test_azure_deployment_url_and_key_header() -> None:
    import aiohttp

    from brace.providers.openai_compat import OpenAIProvider

    cfg = parse_config(
        {
            "models": {
                "m": {
                    "deployments": [
                        {
                            "provider": "azure",
                            "base_url": "https://res.openai.azure.com/",
                            "azure_deployment": "gpt4o-prod",
                            "api_version": "2024-10-21",
                            "model": "gpt-4o",
                            "api_key": "${AZ}",
                        }
                    ]
                }
            }
        },
        env={"AZ": "az-secret"},
    )
    dep = cfg.models["m"].deployments[0]
    provider = OpenAIProvider(dep, session=aiohttp.ClientSession.__new__(aiohttp.ClientSession))
    assert provider._chat_url == (
        "https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions"
        "?api-version=2024-10-21"
    )
    assert provider._headers["api-key"] == "az-secret"
    assert "Authorization" not in provider._headers
    assert "az-secret" not in repr(provider)


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("vllm", "http://127.0.0.1:8000/v1"),
        ("ollama", "http://127.0.0.1:11434/v1"),
        ("llamacpp", "http://127.0.0.1:8080/v1"),
        ("lmstudio", "http://127.0.0.1:1234/v1"),
    ],
)
def test_local_presets_need_no_url_or_key(provider: str, url: str) -> None:
    cfg = parse_config(
        {"models": {"m": {"deployments": [{"provider": provider, "model": "x"}]}}}, env={}
    )
    dep = cfg.models["m"].deployments[0]
    assert dep.url == url and dep.api_key is None
