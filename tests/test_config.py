"""Loading the YAML config: defaults, environment references and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keelway.config import ConfigError, default_config_text, load_config, parse_config


def test_default_serves_local_models() -> None:
    config = load_config(None)
    assert set(config.models) == {"gemma-3-270m", "all-minilm-l6-v2", "judge"}
    assert config.models["gemma-3-270m"].deployments[0].provider == "local"
    # The judge group shares the loaded local model.
    assert config.models["judge"].deployments[0].model == "gemma-3-270m"


def test_default_text_is_commented() -> None:
    assert default_config_text().count("#") > 10


def test_environment_reference_expands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-from-env")
    config = parse_config(
        {
            "models": {
                "m": {
                    "deployments": [
                        {
                            "provider": "openai",
                            "model": "x",
                            "api_key": "${TEST_UPSTREAM_KEY}",
                        }
                    ]
                }
            }
        }
    )
    assert config.models["m"].deployments[0].api_key == "sk-from-env"


def test_unset_environment_reference_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    data = {
        "models": {
            "m": {
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "x",
                        "api_key": "${NOT_SET_ANYWHERE}",
                    }
                ]
            }
        }
    }
    with pytest.raises(
        ConfigError,
        match=(
            r"models\.m\.deployments\[0\]\.api_key: "
            "environment variable NOT_SET_ANYWHERE"
        ),
    ):
        parse_config(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"server": {"port": "eighty"}}, r"server\.port: .*integer.*'eighty'"),
        ({"server": {"port": 70000}}, r"server\.port: .*65535"),
        (
            {"tracing": {"payloads": "everything"}},
            r"tracing\.payloads: .*'full', 'redacted', 'metadata_only' or 'none'",
        ),
        ({"serverr": {}}, r"serverr: unknown field"),
        (
            {"models": {"m": {"deployments": []}}},
            r"models\.m\.deployments: .*at least 1",
        ),
        (
            {"models": {"m": {"deployments": [{"provider": "openai"}]}}},
            r"models\.m\.deployments\[0\]\.model: Field required",
        ),
        (
            {
                "models": {
                    "m": {
                        "deployments": [
                            {"provider": "openai", "model": "x", "base_url": "ftp://x"}
                        ]
                    }
                }
            },
            r"base_url: .*http:// or https://",
        ),
    ],
    ids=[
        "port type",
        "port range",
        "payload mode",
        "unknown section",
        "no deployments",
        "no model",
        "bad url",
    ],
)
def test_invalid_config_names_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data, "keelway.yaml")


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_database_url_defaults_to_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEELWAY_HOME", str(tmp_path / "home"))
    assert (
        load_config(None).database_url()
        == f"sqlite:///{tmp_path / 'home' / 'keelway.db'}"
    )
