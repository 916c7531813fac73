"""Typed, frozen configuration for every service.

Each service has one settings class (``BrokerSettings`` here, ``PipelineSettings`` in
``pipeline/settings.py`` and so on). Values come from, highest precedence first:

1. keyword arguments (what CLI options set),
2. environment variables ``MBC_<FIELD>``; nested fields use ``__``, e.g.
   ``MBC_KAFKA__BOOTSTRAP_SERVERS=broker:9092``,
3. an optional TOML file named by ``--config`` or ``MBC_CONFIG_FILE``: shared tables
   (``[kafka]``, ``[topics]``, ``[database]``) plus one table per service (``[pipeline]``,
   ``[learner]``, ``[store]``, ``[broker]``),
4. the defaults below.

The composition root lists every service's class (``mbc/services.py``, for ``mbc config show``);
this module names none of them but its own.

Secrets are ``SecretStr`` and never printed. Invalid values raise :class:`ConfigError`, one line
naming what was wrong and where it came from: the command-line flag the user typed (see
``flags`` of :func:`load_settings`), else the variable and config-file key.
"""

from __future__ import annotations

import contextvars
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from infra.errors import ConfigError

ENV_PREFIX = "MBC_"
CONFIG_FILE_ENV = "MBC_CONFIG_FILE"

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("mbc_config_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """How to reach Kafka. Works unchanged against a real cluster or the embedded broker."""

    bootstrap_servers: str = Field(
        "",
        description="host:port list; empty means 'use bootstrap_file' or, for `mbc demo`, the embedded broker",
    )
    bootstrap_file: Path | None = Field(
        None, description="read bootstrap.servers from this file (written by `mbc broker --bootstrap-file`)"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    extra: dict[str, str] = Field(
        default_factory=dict, description="other librdkafka properties, passed through as given"
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, v: str) -> str:
        for part in filter(None, (p.strip() for p in v.split(","))):
            host, sep, port = part.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{part!r} is not host:port")
        return v

    def resolved_bootstrap(self) -> str:
        """The bootstrap servers to use, reading ``bootstrap_file`` if set; '' if neither is set."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        if self.bootstrap_file is not None:
            try:
                return self.bootstrap_file.read_text().strip()
            except OSError as e:
                raise ConfigError(
                    f"cannot read Kafka bootstrap file {self.bootstrap_file}: {e.strerror}"
                ) from e
        return ""

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka clients (security settings passed through)."""
        servers = self.resolved_bootstrap()
        if not servers:
            raise ConfigError(
                "no Kafka bootstrap servers configured: set MBC_KAFKA__BOOTSTRAP_SERVERS (or "
                "MBC_KAFKA__BOOTSTRAP_FILE), or start one with `mbc broker --bootstrap-file FILE`"
            )
        conf: dict[str, Any] = {"bootstrap.servers": servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        for key, path in (
            ("ssl.ca.location", self.ssl_ca_location),
            ("ssl.certificate.location", self.ssl_certificate_location),
            ("ssl.key.location", self.ssl_key_location),
        ):
            if path is not None:
                conf[key] = str(path)
        if self.ssl_key_password:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        conf.update(self.extra)
        conf.update(overrides)
        return conf


class TopicSettings(_Section):
    """Topic names and how they are created where the broker allows it."""

    raw: str = "docs.raw"
    clean: str = "docs.clean"
    dlq: str = "docs.dlq"
    partitions: int = Field(4, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=100)


class DatabaseSettings(_Section):
    """Where the memory store lives: SQLite file (embedded default) or PostgreSQL."""

    url: SecretStr = Field(
        SecretStr("sqlite:///mbc-data/memory.db"),
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@host/db",
    )
    pool_size: int = Field(5, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: SecretStr) -> SecretStr:
        from sqlalchemy.engine import make_url

        try:
            backend = make_url(v.get_secret_value()).get_backend_name()
        except Exception:
            raise ValueError(
                f"{mask_url(v.get_secret_value())!r} is not a database URL "
                "(sqlite:///PATH or postgresql+psycopg://USER@HOST/DB)"
            ) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database backend {backend!r}; use sqlite or postgresql")
        return v

    def display_url(self) -> str:
        """The URL with its password masked."""
        return mask_url(self.url.get_secret_value())


def mask_url(url: str) -> str:
    """``url`` as typed, with only its password masked (also when it does not parse as a URL)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


class ServiceSettings(BaseSettings):
    """Base class of every service's settings; subclasses set ``section``."""

    section: ClassVar[str] = "mbc"
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, validate_default=True
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool | None = Field(None, description="JSON logs; default: JSON unless stderr is a terminal")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, config_file_path()))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads shared tables and the service's own table from the TOML config file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is None:
            return
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} does not exist") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
        section = getattr(settings_cls, "section", "")
        fields = settings_cls.model_fields
        for key, value in raw.items():
            if key == section:
                if not isinstance(value, dict):
                    raise ConfigError(f"config file {path}: [{section}] must be a table")
                self._data.update(value)
            elif key in fields:
                self._data[key] = value

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class BrokerSettings(ServiceSettings):
    """The embedded Kafka-protocol broker (librdkafka's mock cluster)."""

    section: ClassVar[str] = "broker"
    num_brokers: int = Field(1, ge=1, le=9, description="brokers in the mock cluster")


def config_file_path() -> Path | None:
    """The config file in force: set by :func:`use_config_file`, else ``MBC_CONFIG_FILE``."""
    path = _config_file.get()
    if path is None and os.environ.get(CONFIG_FILE_ENV):
        path = Path(os.environ[CONFIG_FILE_ENV])
    return path


@contextmanager
def use_config_file(path: Path | None) -> Iterator[None]:
    token = _config_file.set(path)
    try:
        yield
    finally:
        _config_file.reset(token)


S = TypeVar("S", bound=ServiceSettings)


def env_name(path: str) -> str:
    """The environment variable of a dotted settings field: ``database.url`` -> ``MBC_DATABASE__URL``."""
    return ENV_PREFIX + "__".join(p.upper() for p in path.split("."))


def _where(cls: type[ServiceSettings], path: str) -> str:
    return f"{env_name(path)} / [{cls.section}] {path}"


def load_settings(
    cls: type[S],
    config_file: Path | None = None,
    *,
    flags: Mapping[str, tuple[str, Any]] | None = None,
    **overrides: Any,
) -> S:
    """Build ``cls`` from overrides, environment and config file; raise ConfigError if invalid.

    ``flags`` are the command line's overrides, ``{"--port": ("qa_port", port)}`` (a dotted field
    for nested tables: ``("database.url", url)``); None means "not given". A value that does not
    validate is reported under the flag's name, one that came from elsewhere under its variable
    and config-file key. The message is always one line.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    typed: dict[str, str] = {}  # dotted field -> the flag that set it
    for flag, (path, value) in (flags or {}).items():
        if value is None:
            continue
        *parents, leaf = path.split(".")
        table = overrides
        for p in parents:
            table = table.setdefault(p, {})
        table[leaf] = value
        typed[path] = flag
    with use_config_file(config_file or config_file_path()):
        try:
            return cls(**overrides)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                path = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                given = next((f for p, f in typed.items() if path == p or path.startswith(p + ".")), None)
                problems.append(f"{given}: {msg}" if given else f"{_where(cls, path)}: {msg}")
            if all(p.startswith("--") for p in problems):
                raise ConfigError("; ".join(problems)) from None
            raise ConfigError(f"invalid {cls.section} configuration: " + "; ".join(problems)) from None


def masked_dump(settings: BaseModel) -> dict[str, Any]:
    """Settings as plain data with every secret masked (database URLs keep all but the password)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for name, value in settings:
        if isinstance(value, DatabaseSettings):
            data[name] = {**data[name], "url": value.display_url()}
    return data
