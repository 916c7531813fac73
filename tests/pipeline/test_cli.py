"""The pipeline's commands: help for every command and option, user mistakes as one line, and
`mbc topics tail` showing messages the way a person reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer

from mbc.cli import app
from pipeline.events import make_document
from pipeline.tail import format_record
from pipeline.topic_reader import Record

from .conftest import Topics, cli_env, precreate, run_cli

COMMANDS = [
    ("produce", "feeds"),
    ("produce", "replay"),
    ("pipeline", "run"),
    ("pipeline", "stats"),
    ("topics", "tail"),
]


@pytest.mark.parametrize(("group", "name"), COMMANDS)
def test_every_command_and_option_has_a_help_sentence(group: str, name: str) -> None:
    root: Any = typer.main.get_command(app)  # typer vendors its own click: no isinstance checks
    parent = root.commands[group]
    assert parent.help
    command = parent.commands[name]
    assert command.help and command.help.strip()[0].isupper()
    for param in command.params:
        assert getattr(param, "help", None), f"mbc {group} {name}: {param.name} has no help"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["produce", "feeds", "--url", "ftp://example.org/feed"],
            "error: --url 'ftp://example.org/feed' is not a feed URL: only http:// and https:// feeds can be polled",
        ),
        (
            ["produce", "feeds", "--feeds-file", "/nonexistent/feeds.txt"],
            "error: --feeds-file /nonexistent/feeds.txt: cannot read it (No such file or directory)",
        ),
        (
            ["produce", "replay", "/nonexistent/data.jsonl"],
            "error: /nonexistent/data.jsonl does not exist or is not a file",
        ),
        (
            ["produce", "replay", "/etc/hostname"],
            "error: cannot tell the format of /etc/hostname; pass --format",
        ),
    ],
)
def test_user_mistakes_are_one_line_without_traceback(args: list[str], message: str) -> None:
    result = run_cli(args, {"PATH": "/usr/bin:/bin", "MBC_LOG_JSON": "true"}, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [message] or lines[-1].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def doc_record(offset: int) -> Record:
    doc = make_document(
        source="https://valdria.example/rss",
        ref="valdria-1",
        title="Port of Valdria reopens",
        text="The port of Valdria reopened after the storm, officials said on Monday. " * 4,
        url="https://valdria.example/1",
    )
    return Record("docs.clean", 2, offset, 1_764_158_400_000, doc.key, doc.to_json(), {})


def test_format_record_summarises_documents_dead_letters_and_other_values() -> None:
    doc = format_record(doc_record(17)).splitlines()
    assert doc[0].startswith("── docs.clean p2 @17  2025-11-26 12:00:00Z  key ")
    assert doc[1] == "   Port of Valdria reopens"
    assert doc[2].startswith("   published unknown · fetched 20") and doc[2].endswith(
        "source https://valdria.example/rss"
    )
    assert doc[3] == "   url https://valdria.example/1"
    assert doc[4].startswith('   "The port of Valdria reopened after the storm') and "…" in doc[4] + doc[5]
    assert "(287 characters)" in "".join(doc)
    dead = Record(
        "docs.dlq",
        0,
        3,
        0,
        None,
        b"\xff\xfe garbage",
        {
            "mbc-reason": b"not_utf8",
            "mbc-detail": b"byte 0: invalid start byte",
            "mbc-source-topic": b"docs.raw",
            "mbc-source-partition": b"0",
            "mbc-source-offset": b"41",
            "mbc-original-size": b"10",
            "mbc-truncated": b"0",
        },
    )
    assert format_record(dead).splitlines() == [
        "── docs.dlq p0 @3  no timestamp  key (no key)  10 B",
        "   REJECTED: not_utf8 — byte 0: invalid start byte",
        "   from docs.raw p0 @41 · original 10 B",
        "   original: '\\\\xff\\\\xfe garbage'",
    ]
    other = Record("t", 1, 0, 0, b"k", json.dumps({"n": 1, "tags": ["a", "b"]}).encode(), {})
    assert format_record(other).splitlines()[1] == '   JSON: {n=1, tags=["a", "b"]}'
    assert (
        format_record(Record("t", 1, 1, 0, b"k", b"\x00\x01", {})).splitlines()[1]
        == "   not JSON: '\\x00\\x01'"
    )


def test_topics_tail_reads_a_topic_from_the_beginning(broker: str, topics: Topics) -> None:
    from confluent_kafka import Producer

    rec = doc_record(0)
    producer = Producer({"bootstrap.servers": broker})
    producer.produce(topics.clean, key=rec.key, value=rec.value, partition=0)
    producer.produce(topics.clean, key=b"plain", value=b"not json at all", partition=0)
    assert producer.flush(10) == 0
    result = run_cli(
        ["topics", "tail", topics.clean, "--from-beginning", "--count", "2"], cli_env(broker, topics)
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"── {topics.clean} p0 @0 ") and lines[1] == "   Port of Valdria reopens"
    assert lines[-2].startswith(f"── {topics.clean} p0 @1 ") and "key plain" in lines[-2]
    assert lines[-1] == "   not JSON: 'not json at all'"
    precreate(broker, [topics.dlq])
    empty = run_cli(
        ["topics", "tail", topics.dlq, "--from-beginning", "--no-follow"], cli_env(broker, topics)
    )
    assert (empty.returncode, empty.stdout) == (0, "")
    missing = run_cli(["topics", "tail", "no.such.topic", "--no-follow"], cli_env(broker, topics))
    assert missing.returncode == 2 and missing.stderr.strip().endswith(
        "error: topic no.such.topic does not exist"
    )
