"""The ``mbc`` command line: one entry point for every service.

Each package adds its own commands through ``register(app)`` in its ``cli.py`` (``pipeline/cli.py``,
``memory_store/cli.py``, ``learner/cli.py``, ...); this module imports each of them by name and
registers it, so the command tree is written down in one place. Heavy imports (torch, faust) happen
inside the commands so that ``mbc --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.core

import learner.ask.cli
import learner.cli
import learner.worker.cli
import mbc.demo.cli
import memory_store.cli
import memory_store.report.cli
import pipeline.cli
from infra.cli import setting_help
from infra.errors import MbcError
from infra.settings import CONFIG_FILE_ENV, BrokerSettings, load_settings, masked_dump

app = typer.Typer(
    name="mbc",
    help="mbc-stream: fold a stream of news documents into a compressed memory bank (MBC) and ask it questions.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # docstrings are wrapped at 110 columns: join their lines into paragraphs
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML config file (same as MBC_CONFIG_FILE). [default: none: environment and defaults]",
            envvar=CONFIG_FILE_ENV,
        ),
    ] = None,
) -> None:
    """mbc-stream: fold a stream of news documents into a compressed memory bank and ask it questions."""
    if config is not None:
        if not config.is_file():
            raise typer.BadParameter(f"config file {config} does not exist", param_hint="--config")
        os.environ[CONFIG_FILE_ENV] = str(config)


@config_app.command("show")
def config_show(
    service: Annotated[
        str | None,
        typer.Option(help="Only this service (e.g. pipeline, store, learner). [default: every service]"),
    ] = None,
) -> None:
    """Print the effective configuration of every service as JSON, secrets masked."""
    from mbc.services import registered_services

    services = registered_services()
    if service is not None and service not in services:
        raise typer.BadParameter(
            f"unknown service {service!r}; known: {', '.join(sorted(services))}", param_hint="--service"
        )
    out = {
        name: masked_dump(load_settings(cls))
        for name, cls in sorted(services.items())
        if service is None or name == service
    }
    typer.echo(json.dumps(out, indent=2, default=str))


@app.command("broker")
def broker(
    bootstrap_file: Annotated[
        Path | None,
        typer.Option(
            help="Also write the bootstrap address to this file (removed on exit). [default: none: "
            "only printed on stdout]"
        ),
    ] = None,
    num_brokers: Annotated[
        int | None,
        typer.Option(help=setting_help("Brokers in the mock cluster.", BrokerSettings, "num_brokers")),
    ] = None,
) -> None:
    """Run the embedded Kafka-protocol broker (librdkafka mock cluster) until SIGINT/SIGTERM."""
    from infra.broker import serve
    from infra.logging import configure_logging

    settings = load_settings(BrokerSettings, flags={"--num-brokers": ("num_brokers", num_brokers)})
    configure_logging("broker", settings.log_level, settings.log_json)
    raise typer.Exit(serve(bootstrap_file, settings.num_brokers))


for _register in (
    pipeline.cli.register,
    memory_store.cli.register,
    memory_store.report.cli.register,
    learner.cli.register,
    learner.worker.cli.register,
    learner.ask.cli.register,
    mbc.demo.cli.register,
):
    _register(app)


def _flags_without_metavar() -> None:
    """``--help`` shows ``--json`` and ``--compile/--no-compile`` without typer's ``<bool>`` after
    them, which reads as if the flag took a value (typer 0.29 prints it for every flag)."""
    shown = getattr(typer.core.TyperOption, "display_type_rich", None)
    if shown is None:  # a typer without this hook (the H200 image's) prints flags its own way
        return

    def display_type_rich(self: typer.core.TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    typer.core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_metavar()


def _fail(message: str, exit_code: int) -> NoReturn:
    """One line on stderr: what was wrong, where (the flag, file or service), and nothing else."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
    sys.exit(exit_code)


def main() -> None:
    """Console-script entry point: every user error is one line on stderr, never a traceback.

    A wrong flag, value or argument (click's usage errors) and every :class:`MbcError` end the
    same way: ``error: ...`` on one line and exit code 2 (or the error's own code)."""
    try:
        code = app(prog_name="mbc", standalone_mode=False)
    except MbcError as e:
        _fail(str(e), e.exit_code)
    except typer.TyperException as e:  # click's UsageError / BadParameter / NoSuchOption ...
        if type(e).__name__ == "NoArgsIsHelpError":  # `mbc store`: the help was printed
            sys.exit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _fail(e.format_message().replace("Value error, ", "") + hint, e.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
