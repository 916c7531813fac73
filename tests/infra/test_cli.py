from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from mbc.cli import app
from tests.mbc_process import run_mbc

runner = CliRunner()


def test_help_lists_subcommands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("broker", "config", "demo"):
        assert name in result.output


def test_every_command_has_a_help_sentence() -> None:
    import typer.main

    group = typer.main.get_command(app)

    def walk(cmd: Any, path: list[str]) -> list[tuple[list[str], str]]:
        out = [(path, cmd.help or cmd.short_help or "")]
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            for name, sub in cmd.commands.items():
                out += walk(sub, [*path, name])
        return out

    for path, text in walk(group, []):
        assert len(text.strip()) > 10, f"`mbc {' '.join(path)}` has no help text"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBC_KAFKA__SASL_PASSWORD", "hunter2")
    result = run_mbc("config", "show", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    data = json.loads(result.stdout)
    assert "broker" in data


def test_invalid_config_is_one_line_not_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBC_NUM_BROKERS", "zero")
    result = run_mbc("broker", timeout=60)
    assert result.returncode == 2
    assert "MBC_NUM_BROKERS" in result.stderr
    assert "Traceback" not in result.stderr
