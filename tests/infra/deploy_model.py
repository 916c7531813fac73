"""What the deploy checks (tests/infra/test_deploy.py) reason with: the compose file's interpolation
rules, the mapping from `mbc` commands to settings classes, and field lookup by variable name."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from infra.settings import (
    DatabaseSettings,
    KafkaSettings,
    ServiceSettings,
    TopicSettings,
)
from learner.ask.settings import AskSettings
from learner.worker.settings import WorkerSettings
from memory_store.settings import StoreSettings
from pipeline.settings import PipelineSettings, ProducerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "infra" / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "env.example"
EXAMPLE_TOML = DEPLOY / "mbc.example.toml"

# Which settings class configures which `mbc` command. A new mbc service in the compose file
# must be added here, or test_every_mbc_service_runs_a_known_command fails.
COMMAND_SETTINGS: dict[tuple[str, ...], type[ServiceSettings]] = {
    ("store", "migrate"): StoreSettings,
    ("store", "serve"): StoreSettings,
    ("pipeline", "run"): PipelineSettings,
    ("produce", "feeds"): ProducerSettings,
    ("learn",): WorkerSettings,
    ("ask-serve",): AskSettings,
}
# The port variable each HTTP service listens on (its healthcheck must poll that port).
PORT_FIELDS = {StoreSettings: "MBC_API_PORT", AskSettings: "MBC_QA_PORT"}
SHARED_TABLES: dict[str, type[BaseModel]] = {
    "kafka": KafkaSettings,
    "topics": TopicSettings,
    "database": DatabaseSettings,
}
SECRETS = {"POSTGRES_PASSWORD", "MBC_API_READ_TOKEN", "MBC_QA_TOKEN"}


# -- compose interpolation (the subset of compose's rules the file uses) ------------------------

_VAR = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR, $$."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _VAR.sub(one, text)


def variables(text: str) -> dict[str, bool]:
    """Variables referenced in ``text`` -> whether compose requires them (``:?``/``?``)."""
    out: dict[str, bool] = {}
    for m in _VAR.finditer(text):
        if m.group(0) != "$$":
            name = m.group("braced") or m.group("bare")
            out[name] = out.get(name, False) or (m.group("op") or "").endswith("?")
    return out


def env_example() -> dict[str, str]:
    """KEY=value lines of env.example that are not commented out."""
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(x, env) for x in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


def mbc_services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, svc in compose["services"].items():
        if svc.get("command", [None])[0] == "mbc":
            yield name, svc


def command_path(args: list[str]) -> tuple[str, ...]:
    """The subcommand words of ``mbc …`` (up to the first option)."""
    words = []
    for a in args:
        if a.startswith("-"):
            break
        words.append(a)
    return tuple(words)


def settings_of(svc: dict[str, Any]) -> type[ServiceSettings]:
    path = command_path(svc["command"][1:])
    assert path in COMMAND_SETTINGS, f"`mbc {' '.join(path)}` has no settings class in COMMAND_SETTINGS"
    return COMMAND_SETTINGS[path]


# -- resolving MBC_* names against settings classes -----------------------------------------------


def _model_in(annotation: Any) -> type[BaseModel] | bool | None:
    """The BaseModel inside ``annotation`` (X, X | None); True for a dict field (any sub-key)."""
    candidates = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
        if get_origin(c) is dict or c is dict:
            return True
    return None


def field_path(cls: type[BaseModel], env_name: str) -> list[str] | None:
    """``MBC_KAFKA__SASL_USERNAME`` -> ["kafka", "sasl_username"] if that field exists, else None."""
    if not env_name.startswith("MBC_"):
        return None
    parts = env_name[len("MBC_") :].lower().split("__")
    model: type[BaseModel] = cls
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if i == len(parts) - 1:
            return parts
        inner = _model_in(field.annotation)
        if inner is True:  # e.g. kafka.extra: any librdkafka property
            return parts
        if not isinstance(inner, type):
            return None
        model = inner
    return None


def unknown_variables(cls: type[BaseModel], environment: Mapping[str, Any]) -> list[str]:
    return sorted(name for name in environment if field_path(cls, name) is None)
