"""infra/deploy checked without Docker: the compose file, the example config and the Dockerfile
must agree with the real CLI and settings classes, so a misspelled command, option or MBC_*
variable fails here instead of in a container that silently ignores it.

pydantic-settings ignores unknown top-level MBC_* variables (MBC_DATABSE__URL just does nothing),
so every variable is resolved against the fields of the service's settings class by hand.
"""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel, SecretStr
from typer.testing import CliRunner

from infra.settings import (
    ServiceSettings,
    load_settings,
)
from learner.ask.settings import AskSettings
from learner.worker.settings import WorkerSettings
from mbc.cli import app
from mbc.services import registered_services
from memory_store.settings import StoreSettings
from pipeline.settings import PipelineSettings, ProducerSettings
from tests.infra.deploy_model import (
    COMPOSE,
    DEPLOY,
    ENV_EXAMPLE,
    EXAMPLE_TOML,
    PORT_FIELDS,
    SECRETS,
    SHARED_TABLES,
    MissingVariable,
    command_path,
    env_example,
    field_path,
    interpolate,
    mbc_services,
    resolve,
    settings_of,
    unknown_variables,
    variables,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MBC_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file with YAML anchors/merges applied and ${…} filled from env.example."""
    raw = yaml.safe_load(COMPOSE.read_text())
    return resolve(raw, env_example())


def test_the_checker_rejects_misspellings() -> None:
    """The checks below are only worth something if a typo fails them."""
    assert unknown_variables(WorkerSettings, {"MBC_KAFKA__BOOTSTRAP_SERVERS": "k:9092"}) == []
    assert unknown_variables(WorkerSettings, {"MBC_KAFKA__EXTRA__CLIENT_RACK": "a"}) == []
    for typo in (
        "MBC_KAFKA__BOOTSTRAP_SERVER",  # singular
        "MBC_DATABSE__URL",  # transposed
        "MBC_DATABASE_URL",  # single underscore: not nested
        "MCB_API_TOKEN",  # prefix
        "MBC_API_READ_TOKEN",  # a store field, not a worker one
        "MBC_TOPICS__PARTITIONS__X",  # too deep
    ):
        assert unknown_variables(WorkerSettings, {typo: "x"}) == [typo]
    assert variables("a${X:?m}b${Y:-d}$$c$Z") == {"X": True, "Y": False, "Z": False}
    assert interpolate("u:${P:?no}@h/${D:-mbc}$$", {"P": "pw"}) == "u:pw@h/mbc$"
    with pytest.raises(MissingVariable):
        interpolate("${P:?set P}", {})


# -- the compose file -----------------------------------------------------------------------------


def test_every_mbc_service_runs_a_known_command(compose: dict[str, Any]) -> None:
    group = typer.main.get_command(app)
    runner = CliRunner()
    names = {name for name, _ in mbc_services(compose)}
    assert names == {"migrate", "pipeline", "producer", "learner", "learner-gpu", "store", "ask"}
    for name, svc in mbc_services(compose):
        args = svc["command"][1:]
        path = command_path(args)
        settings_of(svc)
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"{name}: `mbc {' '.join(path)} --help` failed: {result.output}"
        cmd: Any = group
        for word in path:
            assert word in getattr(cmd, "commands", {}), f"{name}: `mbc {' '.join(path)}` is not a command"
            cmd = cmd.commands[word]
        assert not hasattr(cmd, "commands"), f"{name}: `mbc {' '.join(path)}` is a group, not a command"
        try:  # parse the options exactly as the container would, without running the command
            cmd.make_context(f"mbc {' '.join(path)}", list(args[len(path) :]))
        except Exception as e:
            pytest.fail(f"{name}: `{' '.join(svc['command'])}`: {e}")


def test_every_mbc_variable_is_a_settings_field(compose: dict[str, Any]) -> None:
    for name, svc in mbc_services(compose):
        cls = settings_of(svc)
        env = svc.get("environment", {})
        assert isinstance(env, dict), f"{name}: write environment as a mapping"
        assert env, f"{name}: no environment"
        assert unknown_variables(cls, env) == [], f"{name}: not fields of {cls.__name__}"


def _value_at(settings: BaseModel, path: list[str]) -> Any:
    value: Any = settings
    for part in path:
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def _same(value: Any, text: str) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower() == text.lower()
    if isinstance(value, int | float):
        return float(value) == float(text)
    return str(value) == text


def test_every_mbc_variable_reaches_its_field(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load each service's settings from exactly its environment: valid, and each value lands."""
    for name, svc in mbc_services(compose):
        cls = settings_of(svc)
        env = {k: str(v) for k, v in svc["environment"].items()}
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            settings = load_settings(cls)
        for key, value in env.items():
            path = field_path(cls, key)
            assert path is not None
            assert _same(_value_at(settings, path), value), f"{name}: {key}={value} did not reach {path}"


def test_secrets_come_from_env_file_without_defaults(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    refs = variables(text)
    required = {name for name, req in refs.items() if req}
    assert required == SECRETS
    with pytest.raises(MissingVariable):
        resolve(yaml.safe_load(text), {})
    documented = ENV_EXAMPLE.read_text()
    for name in refs:
        assert re.search(rf"^#? ?{name}=", documented, re.M), f"{name} is not described in env.example"
    for secret in ("change-me-postgres", "change-me-reader-token", "change-me-qa-token"):
        assert secret not in text
    assert ".env" in (DEPLOY / ".gitignore").read_text().splitlines()


def test_dependencies_volumes_restarts_and_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, svc in services.items():
        for target, dep in (svc.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert dep["condition"] in (
                "service_healthy",
                "service_completed_successfully",
                "service_started",
            )
            if dep["condition"] == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target}, which has no healthcheck"
                )
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: bind mount source {source} does not exist"
            else:
                used.add(source)
                assert source in declared, f"{name}: volume {source} is not declared"
        expected_restart = "no" if name == "migrate" else "unless-stopped"
        assert svc.get("restart") == expected_restart, name
    assert used == declared, "declared volumes nobody uses"
    for name, svc in services.items():
        if svc.get("command", [None])[0] == "mbc" and name not in ("migrate", "producer"):
            assert "healthcheck" in svc, f"{name} has no healthcheck"
    for name in ("learner", "learner-gpu", "store", "ask"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_healthchecks_poll_the_configured_ports(compose: dict[str, Any]) -> None:
    for name, svc in mbc_services(compose):
        if "healthcheck" not in svc:
            continue
        cls = settings_of(svc)
        port_var = PORT_FIELDS.get(cls, "MBC_METRICS_PORT")
        env = svc["environment"]
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", " ".join(svc["healthcheck"]["test"]))
        assert m, f"{name}: healthcheck is not an HTTP probe"
        assert m.group(1) == str(env[port_var]), (
            f"{name}: healthcheck polls {m.group(1)}, service uses {port_var}"
        )
        host_var = {"MBC_API_PORT": "MBC_API_HOST", "MBC_QA_PORT": "MBC_QA_HOST"}.get(port_var)
        if host_var:  # published ports need the service to listen beyond loopback
            assert env[host_var] == "0.0.0.0", name


def test_kafka_kraft_and_postgres_match_the_clients(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = services["kafka"]["environment"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka
    advertised = dict(
        (lst.split("://")[0], lst.split("://")[1]) for lst in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    internal = advertised[kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    pg = services["postgres"]
    assert pg["image"] == "postgres:15"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert any("memory_store/sql/readonly_role.sql:/docker-entrypoint-initdb.d/" in v for v in pg["volumes"])
    user, password, db = (pg["environment"][k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"))
    for name, svc in mbc_services(compose):
        env = svc["environment"]
        if "MBC_KAFKA__BOOTSTRAP_SERVERS" in env:
            assert env["MBC_KAFKA__BOOTSTRAP_SERVERS"] == internal, name
            assert str(env["MBC_TOPICS__PARTITIONS"]) == str(kafka["KAFKA_NUM_PARTITIONS"]), name
        if "MBC_DATABASE__URL" in env:
            assert env["MBC_DATABASE__URL"] == f"postgresql+psycopg://{user}:{password}@postgres:5432/{db}", (
                name
            )


def test_gpu_is_a_profile_and_cpu_the_default(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cpu, gpu = services["learner"], services["learner-gpu"]
    assert "profiles" not in cpu and cpu["environment"]["MBC_DEVICE"] == "cpu"
    assert gpu["profiles"] == ["gpu"] and gpu["environment"]["MBC_DEVICE"] == "cuda"
    assert gpu["command"] == cpu["command"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "cu" in gpu["build"]["args"]["TORCH_INDEX_URL"].rsplit("/", 1)[-1]
    assert cpu["build"]["args"]["TORCH_INDEX_URL"].endswith("/whl/cpu")
    for name, svc in services.items():
        if name != "learner-gpu":
            assert "profiles" not in svc, f"{name} should start by default"


def test_dockerfile_pins_and_runs_as_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert "ARG TORCH_VERSION=2.13.0" in lines
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in lines
    assert 'pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"' in text
    assert text.count("-c constraints/cpu.txt") == 2  # third-party dependencies and the package
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    root = DEPLOY.parents[1]
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), f"Dockerfile copies missing {source}"
                assert f"!{source.rstrip('/')}" in (DEPLOY / "Dockerfile.dockerignore").read_text()


# -- mbc.example.toml -----------------------------------------------------------------------------


def _services() -> dict[str, type[ServiceSettings]]:
    found = registered_services()
    for cls in (WorkerSettings, AskSettings, StoreSettings, PipelineSettings, ProducerSettings):
        found.setdefault(cls.section, cls)
    return found


def test_example_toml_loads_for_every_service() -> None:
    data = tomllib.loads(EXAMPLE_TOML.read_text())
    services = _services()
    shared_keys = {"log_level", "log_json"}
    for key, value in data.items():
        if isinstance(value, dict):
            assert key in services or key in SHARED_TABLES, f"[{key}] is neither a service nor a shared table"
        else:
            assert key in shared_keys, f"top-level {key} is not a setting every service has"
    for section, cls in services.items():
        settings = load_settings(cls, config_file=EXAMPLE_TOML)
        if "kafka" in cls.model_fields:
            assert _value_at(settings, ["kafka", "bootstrap_servers"]) == data["kafka"]["bootstrap_servers"]
        for key, value in data.get(section, {}).items():
            assert _same(_value_at(settings, [key]), str(value)), f"[{section}] {key} not applied"


def _table_text(text: str, table: str) -> str:
    m = re.search(rf"^\[{re.escape(table)}\][^\n]*\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert m, f"[{table}] missing"
    return m.group(1)


def test_example_toml_lists_every_setting() -> None:
    """Every field of the deployed services and shared tables appears, set or commented out."""
    text = EXAMPLE_TOML.read_text()
    tables: dict[str, type[BaseModel]] = dict(SHARED_TABLES)
    deployed: list[type[ServiceSettings]] = [
        ProducerSettings,
        PipelineSettings,
        WorkerSettings,
        StoreSettings,
        AskSettings,
    ]
    tables.update({cls.section: cls for cls in deployed})
    for table, cls in tables.items():
        body = _table_text(text, table)
        for field in cls.model_fields:
            if field in SHARED_TABLES or field in ("log_level", "log_json"):
                continue  # in their own tables / at the top
            if field == "extra":
                assert f"[{table}.extra]" in text
                continue
            assert re.search(rf"^#? ?{field} =", body, re.M), f"[{table}] does not mention {field}"


def test_variables_named_in_the_docs_exist() -> None:
    """Every MBC_* name the deployment docs mention is a field of some service (or MBC_CONFIG_FILE)."""
    services = list(_services().values())
    shown_as_typo = {"MBC_DATABSE__URL"}  # README's example of a silently ignored misspelling
    for path in (DEPLOY / "README.md", ENV_EXAMPLE, EXAMPLE_TOML, COMPOSE):
        for name in set(re.findall(r"\bMBC_[A-Z0-9_]+", path.read_text())) - shown_as_typo:
            if name == "MBC_CONFIG_FILE":
                continue
            assert any(field_path(cls, name) for cls in services), f"{path.name}: {name} is no setting"
