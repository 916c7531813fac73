"""``mbc demo``: the command, its help and its output (progress on stderr, the report on stdout)."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from infra.errors import MbcError
from mbc.demo.errors import DemoError
from mbc.demo.report import report
from mbc.demo.run import DemoOptions, run_demo


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def demo(
    keep: Annotated[
        Path | None,
        typer.Option(
            help="Keep the work folder here (must be empty or new): the SQLite memory store (memory.db), "
            "the services' logs and state. Default: a temporary folder, removed at the end."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=30, help="Give up (and clean up) after this many seconds.")
    ] = 600.0,
    questions: Annotated[
        int, typer.Option(min=0, help="How many of the 32 questions to print (all are asked).")
    ] = 8,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json-out", help="Also write a machine-readable summary (JSON) to this file. [default: none]"
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose/--no-verbose", help="Show this process's own log lines.")
    ] = False,
) -> None:
    """Run the whole system locally on a bundled stream, then report what it learned (see HELP)."""
    from infra.logging import configure_logging

    if json_path is not None and not json_path.resolve().parent.is_dir():
        raise MbcError(f"--json-out {json_path}: folder {json_path.resolve().parent} does not exist")
    configure_logging("demo", "INFO" if verbose else "ERROR")
    options = DemoOptions(
        keep=keep, timeout=timeout, questions=questions, json_path=json_path, verbose=verbose
    )
    try:
        summary = run_demo(options)
    except KeyboardInterrupt:
        where = "kept" if keep is not None else "removed"
        typer.echo(
            f"\ninterrupted: every process the demo started was stopped; work folder {where}", err=True
        )
        raise typer.Exit(130) from None
    except DemoError as e:
        if keep is None:
            raise DemoError(f"{e}\n(run with --keep DIR to keep the logs and the memory store)") from None
        raise
    typer.echo(report(summary))
    where = f"kept in {summary['work_dir']}" if summary["kept"] else "removed (use --keep DIR to keep it)"
    typer.echo(f"\nFinished in {summary['seconds']:.0f} s. Work folder {where}.", err=True)
    if json_path is not None:
        json_path.write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")


def _paragraphs(text: str) -> str:
    """Help text: paragraphs separated by blank lines, each joined into one line (rich re-wraps them)."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n"))


HELP = _paragraphs(
    """
    Run the whole system locally on a bundled stream, then report what it learned.

    Starts an embedded Kafka broker, the faust stage (mbc pipeline run) and the learner (mbc learn,
    with the small checkpoint shipped in mbc/demo/assets) as child processes. Publishes a bundled
    RSS feed served on 127.0.0.1 (mbc produce feeds), replays a bundled news/knowledge stream with a
    few duplicates and invalid records (mbc produce replay) and sends a few malformed raw events.
    Waits until the stage has decided every event and the learner has stored every clean document
    in a SQLite memory store, then prints the books (accepted / deduplicated / dead-lettered), the
    memory growth view, the codebook health per version, and answers to questions with the memory
    and without it (the base LM alone), next to the right answers.

    Needs no network and no services; takes about a minute on two CPU cores. Progress goes to
    stderr, the report to stdout. MBC_* settings and config files are ignored: the demo never
    touches a real Kafka or database. Every process it starts is stopped at the end, also on Ctrl-C,
    on a failure and on --timeout; the work folder is removed unless --keep names one.
    """
)


def register(app: typer.Typer) -> None:
    app.command("demo", help=HELP)(demo)
