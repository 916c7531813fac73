"""What every package's ``cli.py`` shares: settings defaults in ``--help`` and times on the command line.

A flag that overrides a setting has ``None`` as its typer default (so that the environment and the
config file still apply when it is not given); :func:`setting_help` appends the setting's own
default and variable to its help, so ``--help`` shows what an omitted flag means::

    batch_max_size: Annotated[int | None, typer.Option(help=setting_help("Documents per batch.",
        WorkerSettings, "batch_max_size"))] = None
    # --batch-max-size <int>  Documents per batch. [default: 64; MBC_BATCH_MAX_SIZE]
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import BaseModel, SecretStr

from infra.errors import ConfigError
from infra.settings import DatabaseSettings, KafkaSettings, env_name


def setting_default(cls: type[BaseModel], path: str) -> Any:
    """The default of the dotted field ``path`` of ``cls`` (``"database.url"`` walks into tables)."""
    model: Any = cls
    *parents, leaf = path.split(".")
    for p in parents:
        model = model.model_fields[p].annotation
    field = model.model_fields[leaf]
    value = field.get_default(call_default_factory=True)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def setting_help(text: str, cls: type[BaseModel], path: str, *, default: str | None = None) -> str:
    """``text`` plus ``[default: <the setting's default>; MBC_<VARIABLE>]`` (``default`` words it)."""
    if default is None:
        value = setting_default(cls, path)
        default = "unset" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return f"{text} [default: {default}; {env_name(path)}]"


def parse_time(value: str | None, flag: str) -> datetime | None:
    """An ISO 8601 time from the command line (``Z`` or an offset; UTC when it has neither)."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag}: {value!r} is not an ISO 8601 time (e.g. 2026-11-26T12:00:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def check_window(since: datetime | None, until: datetime | None) -> None:
    """``--since`` and ``--until`` by the rule POST /ask applies (:func:`infra.http.window_problem`)."""
    from infra.http import window_problem

    if problem := window_problem(since, until):
        raise ConfigError(re.sub(r"\b(since|until)\b", r"--\1", problem))


class _Shared(BaseModel):
    """The tables every service shares, for the help of the options below."""

    database: DatabaseSettings = DatabaseSettings()
    kafka: KafkaSettings = KafkaSettings()


# One spelling per concept: every command that opens the store or reaches Kafka takes these.
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help=setting_help(
            "Memory store URL (sqlite:///PATH or postgresql+psycopg://…).", _Shared, "database.url"
        ),
        show_default=False,
    ),
]
BootstrapServersOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        help="Kafka host:port list. [default: MBC_KAFKA__BOOTSTRAP_SERVERS, else the file named by "
        "MBC_KAFKA__BOOTSTRAP_FILE]",
        show_default=False,
    ),
]
# A slice of the memory: `mbc ask`, `mbc store counts`.
SinceOption = Annotated[
    str | None,
    typer.Option(
        help="Only documents published at or after this ISO 8601 time (e.g. 2026-11-26T12:00:00Z). "
        "[default: no lower bound]",
        show_default=False,
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        help="Only documents published before this ISO 8601 time. [default: no upper bound]",
        show_default=False,
    ),
]
SourceOption = Annotated[
    str | None,
    typer.Option(help="Only documents of this source. [default: every source]", show_default=False),
]
