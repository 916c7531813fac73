from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import ConfigError
from infra.settings import (
    BrokerSettings,
    DatabaseSettings,
    KafkaSettings,
    ServiceSettings,
    load_settings,
    masked_dump,
)


class DemoSettings(ServiceSettings):
    section = "demo"
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    batch_size: int = 8


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MBC_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mbc.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = load_settings(DemoSettings)
    assert s.batch_size == 8
    assert s.kafka.bootstrap_servers == ""
    assert s.database.url.get_secret_value().startswith("sqlite:///")


def test_precedence_init_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(
        tmp_path,
        '[kafka]\nbootstrap_servers = "file-host:9092"\nsasl_username = "filer"\n'
        '[demo]\nbatch_size = 16\nlog_level = "DEBUG"\n',
    )
    s = load_settings(DemoSettings, config_file=cfg)
    assert (s.kafka.bootstrap_servers, s.batch_size, s.log_level) == ("file-host:9092", 16, "DEBUG")

    monkeypatch.setenv("MBC_BATCH_SIZE", "32")
    monkeypatch.setenv("MBC_KAFKA__BOOTSTRAP_SERVERS", "env-host:9093")
    s = load_settings(DemoSettings, config_file=cfg)
    assert (s.kafka.bootstrap_servers, s.batch_size, s.log_level) == ("env-host:9093", 32, "DEBUG")
    assert s.kafka.sasl_username == "filer"  # nested tables merge key by key across sources
    s = load_settings(DemoSettings, config_file=cfg, batch_size=64)
    assert s.batch_size == 64


def test_config_file_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, "[broker]\nnum_brokers = 3\n")
    monkeypatch.setenv("MBC_CONFIG_FILE", str(cfg))
    assert load_settings(BrokerSettings).num_brokers == 3


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("MBC_BATCH_SIZE", "many", "MBC_BATCH_SIZE"),
        ("MBC_KAFKA__BOOTSTRAP_SERVERS", "no-port-here", "MBC_KAFKA__BOOTSTRAP_SERVERS"),
        ("MBC_LOG_LEVEL", "LOUD", "MBC_LOG_LEVEL"),
    ],
)
def test_invalid_env_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings(DemoSettings)
    assert fragment in str(info.value)
    assert "Traceback" not in str(info.value)


def test_a_bad_flag_value_is_reported_under_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the user typed is named as typed; what came from the environment, by its variable."""
    flags = {"--batch-size": ("batch_size", "lots"), "--database-url": ("database.url", "notaurl")}
    with pytest.raises(ConfigError) as info:
        load_settings(DemoSettings, flags=flags)
    assert str(info.value) == (  # in the model's field order
        "--database-url: 'notaurl' is not a database URL (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB); "
        "--batch-size: Input should be a valid integer, unable to parse string as an integer"
    )
    monkeypatch.setenv("MBC_KAFKA__BOOTSTRAP_SERVERS", "broker:99999")
    with pytest.raises(ConfigError) as info:
        load_settings(
            DemoSettings, flags={"--batch-size": ("batch_size", 3), "--unused": ("batch_size", None)}
        )
    assert str(info.value) == (
        "invalid demo configuration: MBC_KAFKA__BOOTSTRAP_SERVERS / [demo] kafka.bootstrap_servers: "
        "'broker:99999' is not host:port"
    )
    monkeypatch.delenv("MBC_KAFKA__BOOTSTRAP_SERVERS")
    s = load_settings(
        DemoSettings, flags={"--batch-size": ("batch_size", 3), "--url": ("database.url", None)}
    )
    assert (s.batch_size, s.database.url.get_secret_value()) == (3, "sqlite:///mbc-data/memory.db")


def test_a_database_url_is_shown_as_typed_with_only_its_password_masked() -> None:
    assert DatabaseSettings(url="postgresql+psycopg://app:s3cret@db/mbc").display_url() == (  # type: ignore[arg-type]
        "postgresql+psycopg://app:***@db/mbc"
    )
    from infra.settings import mask_url

    assert mask_url("notaurl") == "notaurl"
    assert mask_url("weird://app:s3cret@db:x/y z") == "weird://app:***@db:x/y z"


def test_unknown_key_in_service_table_is_rejected(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[demo]\nbatch_sise = 3\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        load_settings(DemoSettings, config_file=cfg)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(DemoSettings, config_file=write(tmp_path, "[demo\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(DemoSettings, config_file=tmp_path / "nope.toml")


def test_settings_are_frozen() -> None:
    s = load_settings(DemoSettings)
    with pytest.raises(Exception, match="frozen"):
        s.batch_size = 3  # type: ignore[misc]


def test_secrets_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBC_KAFKA__BOOTSTRAP_SERVERS", "k:9092")
    monkeypatch.setenv("MBC_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("MBC_DATABASE__URL", "postgresql+psycopg://app:s3cret@db:5432/mbc")
    s = load_settings(DemoSettings)
    dumped = str(masked_dump(s))
    assert "hunter2" not in dumped and "s3cret" not in dumped
    assert "db:5432/mbc" in dumped
    assert s.kafka.client_config()["sasl.password"] == "hunter2"


def test_client_config_passes_security_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBC_KAFKA__BOOTSTRAP_SERVERS", "a:1,b:2")
    monkeypatch.setenv("MBC_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MBC_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("MBC_KAFKA__EXTRA", '{"socket.timeout.ms": "5000"}')
    conf = load_settings(DemoSettings).kafka.client_config(**{"group.id": "g"})
    assert conf == {
        "bootstrap.servers": "a:1,b:2",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "socket.timeout.ms": "5000",
        "group.id": "g",
    }


def test_missing_bootstrap_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="MBC_KAFKA__BOOTSTRAP_SERVERS"):
        KafkaSettings().client_config()


def test_bootstrap_file(tmp_path: Path) -> None:
    f = tmp_path / "bootstrap"
    f.write_text("127.0.0.1:12345\n")
    assert KafkaSettings(bootstrap_file=f).client_config()["bootstrap.servers"] == "127.0.0.1:12345"
    with pytest.raises(ConfigError, match="cannot read"):
        KafkaSettings(bootstrap_file=tmp_path / "missing").client_config()
