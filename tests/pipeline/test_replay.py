"""Dataset replays: every format read into records in publication order, and `mbc produce replay`
publishing them (limit, skip, rate, clean stop on SIGINT)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corpora.documents import load_records
from corpora.errors import DatasetError
from corpora.formats import detect_document_format
from infra.settings import KafkaSettings
from pipeline.events import make_id
from pipeline.topic_reader import read

from .conftest import CLI, Topics, cli_env, run_cli


def test_jsonl_columns_by_name_and_publication_order(tmp_path: Path) -> None:
    rows = [
        {"guid": "b", "headline": "Second", "body": "Text B", "date": "1987-03-02T10:00:00Z"},
        {"guid": "a", "title": "First", "text": "Text A", "published_at": 541_000_000, "link": "http://x/a"},
        {"guid": "u", "title": "Undated", "content": "Text U"},  # stays right after its predecessor "a"
        {"id": "c", "title": "Naive date", "body": "", "published": "1987-03-01 09:00:00"},
        {"id": "d", "title": "Own source", "text": "Text D", "date": "1987-03-03", "source": "wire-b"},
    ]
    path = tmp_path / "news.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    records = load_records(path, detect_document_format(path))
    assert [r.ref for r in records] == ["a", "u", "c", "b", "d"]
    assert records[0].published_at == datetime.fromtimestamp(541_000_000, UTC)
    assert records[0].url == "http://x/a"
    assert records[1].published_at is None and records[1].text == "Text U"
    assert records[2].published_at == datetime(1987, 3, 1, 9, tzinfo=UTC) and records[2].text == ""
    assert records[3].title == "Second" and records[3].text == "Text B"
    assert records[4].source == "wire-b"


def test_csv_with_quoted_multiline_text(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text(
        'id,Title,text,published_at,url\n2,"Later","line one\nline two",2026-11-25T10:00:00+01:00,\n'
        "1,Earlier,plain,2026-11-25T08:00:00Z,http://x/1\n"
    )
    records = load_records(path, "csv")
    assert [(r.ref, r.title, r.text) for r in records] == [
        ("1", "Earlier", "plain"),
        ("2", "Later", "line one\nline two"),
    ]
    assert records[1].published_at == datetime(2026, 11, 25, 9, tzinfo=UTC)


def test_squad_paragraphs_become_documents(tmp_path: Path) -> None:
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "Port_of_Valdria",
                "paragraphs": [{"context": "P one.", "qas": []}, {"context": "P two.", "qas": []}],
            },
            {"title": "Kessa_Air", "paragraphs": [{"context": "K one.", "qas": [{"question": "?"}]}]},
        ],
    }
    path = tmp_path / "squad-dev.json"
    path.write_text(json.dumps(data))
    records = load_records(path, detect_document_format(path))
    assert [(r.ref, r.title, r.text, r.published_at) for r in records] == [
        ("Port_of_Valdria/0", "Port of Valdria", "P one.", None),
        ("Port_of_Valdria/1", "Port of Valdria", "P two.", None),
        ("Kessa_Air/0", "Kessa Air", "K one.", None),
    ]


def test_streamingqa_wmt_documents_with_their_sorting_keys(tmp_path: Path) -> None:
    def line(day: str, text: str) -> str:
        split = base64.b64encode(text.replace(". ", ".\n").encode()).decode()
        return f"{day}\t{split}\t{base64.b64encode(text.encode()).decode()}\n"

    path = tmp_path / "news-docs.2020.en.filtered.gz"
    with gzip.open(path, "wt") as f:
        f.write(line("20200302", "Second day. More news."))
        f.write(line("20200301", "First day news."))
    records = load_records(path, detect_document_format(path))
    assert [r.text for r in records] == ["First day news.", "Second day.\nMore news."]
    assert records[0].published_at == datetime(2020, 3, 1, tzinfo=UTC)
    unsplit = base64.b64encode(b"First day news.")
    assert records[0].ref == f"20200301000000000000\x00\x01{hashlib.sha256(unsplit).hexdigest()}\x00\x01"


def test_streamingqa_question_rows_replay_each_evidence_document_once(tmp_path: Path) -> None:
    rows = [
        {
            "qa_id": "eval-0",
            "question": "q0",
            "evidence_id": "e2",
            "evidence_ts": 1_600_000_100,
            "text": "Doc two.",
        },
        {
            "qa_id": "eval-1",
            "question": "q1",
            "evidence_id": "e1",
            "evidence_ts": 1_600_000_000,
            "text": "Doc one.",
        },
        {
            "qa_id": "eval-2",
            "question": "q2",
            "evidence_id": "e2",
            "evidence_ts": 1_600_000_100,
            "text": "Doc two.",
        },
    ]
    path = tmp_path / "streamingqa_eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = load_records(path, detect_document_format(path))
    assert [(r.ref, r.text) for r in records] == [("e1", "Doc one."), ("e2", "Doc two.")]
    assert records[1].published_at == datetime.fromtimestamp(1_600_000_100, UTC)


@pytest.mark.parametrize(
    ("name", "content", "fmt", "message"),
    [
        ("missing.jsonl", None, "jsonl", "does not exist"),
        ("bad.jsonl", '{"text": "ok"}\n{"text": \n', "jsonl", "bad.jsonl:2: not valid JSON"),
        ("list.jsonl", "[1, 2]\n", "jsonl", "list.jsonl:1: expected a JSON object"),
        ("notext.jsonl", '{"title": "no body column"}\n', "jsonl", "notext.jsonl:1: no text column"),
        ("date.jsonl", '{"text": "t", "date": "last Tuesday"}\n', "jsonl", "date.jsonl:1: unreadable date"),
        ("squad.json", '{"nodata": []}', "squad", "not SQuAD JSON"),
        ("x.jsonl", "{}\n", "parquet", "unknown format 'parquet'"),
    ],
)
def test_unreadable_datasets_are_one_clear_error(
    tmp_path: Path, name: str, content: str | None, fmt: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        load_records(path, fmt)


def test_format_must_be_given_when_the_name_does_not_say(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="pass --format"):
        detect_document_format(tmp_path / "dump.txt")


# --- publishing ----------------------------------------------------------------------------------


def write_dataset(path: Path, n: int) -> None:
    """``n`` rows, newest first, dated 2026-01-01 + i days."""
    day = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "id": f"r{i}",
            "title": f"T{i}",
            "text": f"Body {i}.",
            "published_at": (day + timedelta(days=i)).isoformat(),
        }
        for i in reversed(range(n))
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_replay_command_publishes_in_order_with_skip_limit_and_rate(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    path = tmp_path / "wire.jsonl"
    write_dataset(path, 10)
    start = time.monotonic()
    result = run_cli(
        ["produce", "replay", str(path), "--skip", "2", "--limit", "5", "--rate", "20"],
        cli_env(broker, topics),
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert "replayed: 5 of 5 documents delivered" in result.stderr and "lost 0" in result.stderr
    records = list(read(KafkaSettings(bootstrap_servers=broker), topics.raw))
    assert [r.key for r in records] == [make_id("wire", f"r{i}").encode() for i in range(2, 7)]
    assert [json.loads(r.value or b"")["published_at"][:10] for r in records] == [
        f"2026-01-0{i}" for i in range(3, 8)
    ]
    assert elapsed >= 4 / 20  # five documents at 20/s take at least 0.2 s


def test_sigint_stops_a_replay_cleanly_with_everything_sent_delivered(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    path = tmp_path / "slow.jsonl"
    write_dataset(path, 60)
    proc = subprocess.Popen(
        [*CLI, "produce", "replay", str(path), "--rate", "10", "--source", "slow"],
        env=cli_env(broker, topics),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and len(list(read(KafkaSettings(bootstrap_servers=broker), topics.raw))) < 3
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("stopped: ") and "lost 0" in summary
    delivered = int(summary.split()[1])
    assert 3 <= delivered < 60
    assert len(list(read(KafkaSettings(bootstrap_servers=broker), topics.raw))) == delivered


@pytest.mark.shared_data
def test_reuters_and_squad_files_replay_in_publication_order(
    shared_data: Path, broker: str, topics: Topics
) -> None:
    env = cli_env(broker, topics)
    reuters = run_cli(
        ["produce", "replay", str(shared_data / "reuters" / "reuters21578.jsonl"), "--limit", "300"], env
    )
    squad = run_cli(
        ["produce", "replay", str(shared_data / "squad" / "squad-v1.1-dev-part-a.json"), "--limit", "5"], env
    )
    assert reuters.returncode == 0 and squad.returncode == 0, reuters.stderr + squad.stderr
    docs = [json.loads(r.value or b"") for r in read(KafkaSettings(bootstrap_servers=broker), topics.raw)]
    wire = [d for d in docs if d["source"] == "reuters21578"]
    assert len(wire) == 300 and [d["published_at"] for d in wire] == sorted(d["published_at"] for d in wire)
    assert wire[0]["title"] == "BAHIA COCOA REVIEW" and "\n\nThe dry period" in wire[0]["text"]
    assert [d["title"] for d in docs if d["source"] == "squad-v1"] == ["Super Bowl 50"] * 5
