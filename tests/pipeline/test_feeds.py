"""The feed poller: parsing (encodings, HTML, dates), conditional GET, the persisted seen-set, broken
feeds — and, with the shared feed files, every item in docs.clean exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from infra.settings import KafkaSettings, TopicSettings
from pipeline.errors import FeedUrlError
from pipeline.events import Document, validate
from pipeline.feeds.fetch import FeedError
from pipeline.feeds.parse import parse_feed
from pipeline.feeds.poller import FeedPoller, PollSummary, check_url, read_feeds_file
from pipeline.feeds.state import FeedState
from pipeline.producer import DocumentProducer
from pipeline.settings import ProducerSettings
from pipeline.topic_reader import read

from .conftest import CLI, FIXTURES, Collector, StageProcess, Topics, cli_env, free_port, run_cli
from .feedserver import FeedServer


def settings_for(broker: str, topics: Topics, state_dir: Path, **changes: object) -> ProducerSettings:
    fast = {"http_timeout_s": 3.0, "http_retries": 2, "retry_backoff_s": 0.05, "poll_interval_s": 0.3}
    return ProducerSettings(
        kafka=KafkaSettings(bootstrap_servers=broker),
        topics=TopicSettings(raw=topics.raw, clean=topics.clean, dlq=topics.dlq),
        state_dir=state_dir,
        **{**fast, **changes},  # type: ignore[arg-type]
    )


def poll_once(settings: ProducerSettings, urls: list[str]) -> PollSummary:
    """One poll of every feed in this process, as `mbc produce feeds --once` does it."""
    state, producer = FeedState(settings.state_dir), DocumentProducer(settings)
    try:
        summary = asyncio.run(
            FeedPoller(settings, urls, producer, state).run(once=True, install_signals=False)
        )
    finally:
        assert producer.close() == 0
        state.close()
    return summary


def raw_documents(broker: str, topic: str) -> list[Document]:
    docs = [validate(r.value, key=r.key) for r in read(KafkaSettings(bootstrap_servers=broker), topic)]
    assert all(isinstance(d, Document) for d in docs)
    return docs  # type: ignore[return-value]


# --- parsing -----------------------------------------------------------------------------------


def test_fixture_feeds_parse_into_clean_documents() -> None:
    latin = parse_feed((FIXTURES / "latin1.rss").read_bytes(), "http://valdria.example/rss")
    assert [d.title for d in latin] == [
        "Porto de Valdria reabre após a tempestade",
        "Câmara aprova orçamento de 4,2 milhões",
        "Só o título: greve dos estivadores suspensa",
    ]
    assert latin[0].text == (
        "O porto reabriu na segunda-feira, disseram as autoridades. Três navios já atracaram.\n\n"
        "A circulação de camiões é normal."
    )  # HTML reduced to text, the script dropped, ISO-8859-1 decoded
    assert latin[1].text == "O orçamento municipal para 2027 foi aprovado com 19 votos a favor & 4 contra."
    assert latin[2].text == latin[2].title  # a body-less (pixel only) item keeps its headline as text
    assert latin[0].published_at == datetime(2026, 11, 23, 7, 30, tzinfo=UTC)  # +0100 → UTC
    assert latin[0].url == "http://valdria.example/noticias/1"

    atom = parse_feed((FIXTURES / "kessa.atom").read_bytes(), "https://kessa.example/atom")
    assert atom[0].title == "Kessa Air adds three routes from Tarn"
    assert atom[0].text.endswith("next spring.\n\nOrlen: daily\n\nValdria: 4× weekly")
    assert atom[1].published_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # only <updated>
    rdf = parse_feed((FIXTURES / "orlen.rdf").read_bytes(), "https://orlen.example/rss")
    assert [d.published_at for d in rdf] == [
        datetime(2026, 11, 20, 7, tzinfo=UTC),
        datetime(2026, 11, 26, 7, tzinfo=UTC),
    ]
    # Ids depend on the feed and the guid/link only: a re-poll maps items to the same ids.
    again = parse_feed((FIXTURES / "latin1.rss").read_bytes(), "http://valdria.example/rss")
    assert [d.id for d in again] == [d.id for d in latin] and len({d.id for d in latin}) == 3


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ((FIXTURES / "broken.xml").read_bytes(), "malformed feed: SAXParseException"),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "not an RSS or Atom feed"),
        (bytes(range(256)) * 8, "malformed feed"),
        (b"", "empty response body"),
    ],
)
def test_malformed_feeds_name_the_url_and_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(FeedError) as info:
        parse_feed(body, "http://broken.example/feed")
    assert info.value.url == "http://broken.example/feed"
    assert problem in str(info.value)
    assert info.value.retryable is False  # the same bytes fail the same way: not retried within a poll


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1", "it does not parse (Invalid IPv6 URL)"),
        ("http://127.0.0.1:99999/feed", "it does not parse (Port out of range 0-65535)"),
        ("http://127.0.0.1:0/feed", "port 0 cannot be connected to"),
        ("http://exa mple.com/feed", "it contains a space or a control character (percent-encode it: %20)"),
        ("http://example.com/a\tb", "it contains a space or a control character (percent-encode it: %20)"),
        ("ftp://example.com/feed", "only http:// and https:// feeds can be polled"),
        ("notaurl", "only http:// and https:// feeds can be polled"),
        ("http:///feed", "it names no host"),
    ],
)
def test_urls_that_cannot_be_polled_are_refused_before_any_request(url: str, problem: str) -> None:
    with pytest.raises(FeedUrlError) as info:
        check_url(url, "--url")
    assert str(info.value) == f"--url {url!r} is not a feed URL: {problem}"


def test_feed_urls_are_stripped_and_a_feeds_file_names_the_bad_line() -> None:
    assert check_url("  https://[::1]:8080/feed.xml \n") == "https://[::1]:8080/feed.xml"
    text = "# feeds\nhttp://a.example/rss\n\nhttp://b.example/ rss  # a typo\n"
    with pytest.raises(FeedUrlError, match=r"^feeds\.txt line 4: 'http://b\.example/ rss' is not a feed URL"):
        read_feeds_file(text, "feeds.txt")
    assert read_feeds_file("http://a.example/rss  # ok\n", "feeds.txt") == ["http://a.example/rss"]


# --- polling -----------------------------------------------------------------------------------


def test_items_are_published_once_across_polls_304s_and_restarts(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    settings = settings_for(broker, topics, tmp_path / "state")
    with FeedServer() as server:
        urls = [server.add_file(f"/{f}", FIXTURES / f) for f in ("latin1.rss", "kessa.atom", "orlen.rdf")]
        first = poll_once(settings, urls)
        assert (first.items, first.published, first.not_modified) == (7, 7, 0)
        second = poll_once(settings, urls)  # the server answers 304 to every conditional GET
        assert (second.not_modified, second.published) == (3, 0)
        assert all(server.count(f"/{f}", 304) == 1 for f in ("latin1.rss", "kessa.atom", "orlen.rdf"))
        server.conditional = False  # a server without validators: full responses, all items known
        third = poll_once(settings, urls)
        assert (third.items, third.published) == (7, 0)
        # A new item appears in one feed: only it is published.
        body = (
            (FIXTURES / "orlen.rdf")
            .read_text()
            .replace(
                "</rdf:RDF>",
                '<item rdf:about="https://orlen.example/r/19"><title>Dividend raised</title>'
                "<link>https://orlen.example/r/19</link><description>The board raised the dividend.</description>"
                "</item></rdf:RDF>",
            )
        )
        server.add("/orlen.rdf", body.encode())
        fourth = poll_once(settings, urls)
        assert fourth.published == 1
    docs = raw_documents(broker, topics.raw)
    assert len(docs) == 8 and len({d.id for d in docs}) == 8
    assert Counter(d.source for d in docs) == Counter({urls[0]: 3, urls[1]: 2, urls[2]: 3})
    # Every document of a source went to the same partition (order per source).
    records = list(read(KafkaSettings(bootstrap_servers=broker), topics.raw))
    assert all(
        len({r.partition for r in records if json.loads(r.value or b"")["source"] == u}) == 1 for u in urls
    )


def test_broken_feeds_are_logged_and_retried_while_the_others_keep_flowing(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    with FeedServer() as server:
        good = server.add_file("/kessa.atom", FIXTURES / "kessa.atom")
        refused = f"http://127.0.0.1:{free_port()}/feed.xml"  # nothing listens there
        error = server.fail("/error.rss", 500)
        garbage = server.add("/garbage.rss", (FIXTURES / "broken.xml").read_bytes())
        env = cli_env(
            broker, topics, MBC_HTTP_RETRIES="1", MBC_RETRY_BACKOFF_S="0.05", MBC_HTTP_TIMEOUT_S="3"
        )
        args = ["produce", "feeds", "--interval", "0.5", "--state-dir", str(tmp_path / "state")]
        for url in (refused, good, error, garbage):
            args += ["--url", url]
        log = tmp_path / "producer.log"
        with log.open("w") as err:
            proc = subprocess.Popen([*CLI, *args], env=env, stderr=err, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while server.count("/kessa.atom", 200) < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            # While the broken feeds keep failing, the good one gets a new entry: it must come through.
            newer = (
                (FIXTURES / "kessa.atom")
                .read_text()
                .replace(
                    "</feed>",
                    "<entry><title>Mesk route starts</title><id>urn:kessa:news:303</id>"
                    '<link href="https://kessa.example/news/303"/><updated>2026-11-26T08:00:00Z</updated>'
                    "<summary>The first flight to Mesk left on time.</summary></entry></feed>",
                )
            )
            server.add("/kessa.atom", newer.encode())
            while time.monotonic() < deadline and not (
                len(list(read(KafkaSettings(bootstrap_servers=broker), topics.raw))) == 3
                and server.count("/error.rss") >= 4
                and server.count("/garbage.rss") >= 4
            ):
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
    assert code == 0  # SIGTERM: flush and exit 0
    titles = sorted(d.title for d in raw_documents(broker, topics.raw))
    assert titles == [
        "Kessa Air adds three routes from Tarn",
        "Mesk route starts",
        "Winter timetable published",
    ]
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    failures = [e for e in events if e["event"].startswith("feed poll failed")]
    problems = {url: {e["problem"] for e in failures if e["url"] == url} for url in (refused, error, garbage)}
    assert any("ConnectError" in p for p in problems[refused]), problems
    assert problems[error] == {"HTTP 500 Internal Server Error"}
    assert all(p.startswith("malformed feed: SAXParseException") for p in problems[garbage]), problems
    assert {e["attempt"] for e in failures if e["url"] == error} == {1, 2}  # retried within a poll…
    # …a malformed feed is not (the same bytes fail the same way), only polled again next round
    assert {(e["attempt"], e["permanent"]) for e in failures if e["url"] == garbage} == {(1, True)}
    gave_up = [e for e in failures if e["url"] == error and e["event"] == "feed poll failed"]
    assert gave_up and {e["permanent"] for e in gave_up} == {False}
    assert server.count("/error.rss") >= 4  # …and polled again on the next rounds
    assert not [e for e in failures if e["url"] == good]


def test_once_reports_failing_feeds_with_exit_code_3(broker: str, topics: Topics, tmp_path: Path) -> None:
    with FeedServer() as server:
        good = server.add_file("/orlen.rdf", FIXTURES / "orlen.rdf")
        bad = server.fail("/gone.rss", 404)
        garbage = server.add("/garbage.rss", (FIXTURES / "broken.xml").read_bytes())
        env = cli_env(broker, topics, MBC_RETRY_BACKOFF_S="0.01")
        args = ["produce", "feeds", "--once", "--url", good, "--url", bad, "--url", garbage]
        result = run_cli([*args, "--state-dir", str(tmp_path)], env)
        assert server.count("/gone.rss") == 1  # a 404 is not retried within the poll
        assert server.count("/garbage.rss") == 1  # nor is a feed that does not parse
    assert result.returncode == 3, result.stderr
    assert "failing feeds 2" in result.stderr
    assert len(raw_documents(broker, topics.raw)) == 2


# --- acceptance: the shared feed files end to end ------------------------------------------------


@pytest.mark.shared_data
def test_shared_feeds_reach_docs_clean_exactly_once(
    shared_data: Path,
    broker: str,
    topics: Topics,
    stage_factory: Callable[..., StageProcess],
    collect: Callable[..., Collector],
    tmp_path: Path,
) -> None:
    files = sorted((shared_data / "feeds").iterdir())
    expected = {f.name: len(feedparser.parse(f.read_bytes()).entries) for f in files}
    out = collect(topics.clean, topics.dlq)
    stage = stage_factory(topics).start()
    with FeedServer() as server:
        url_of = {server.add_file(f"/{f.name}", f): f.name for f in files}
        feeds_file = tmp_path / "feeds.txt"
        feeds_file.write_text("# the shared test feeds\n" + "\n".join(url_of) + "\n")
        env = cli_env(broker, topics)
        args = [
            "produce",
            "feeds",
            "--once",
            "--feeds-file",
            str(feeds_file),
            "--state-dir",
            str(tmp_path / "state"),
        ]
        runs = [run_cli(args, env)]  # first poll: everything is new
        runs.append(run_cli(args, env))  # a restarted producer, and every feed answers 304
        assert all(server.count(f"/{name}", 304) == 1 for name in expected)
        server.conditional = False
        runs.append(run_cli(args, env))  # restarted again, full responses: nothing is re-published
    assert [r.returncode for r in runs] == [0, 0, 0], runs[-1].stderr
    assert [r.stderr.splitlines()[-1].split(", ")[2] for r in runs] == [
        f"published {sum(expected.values())}",
        "published 0",
        "published 0",
    ]
    total = sum(expected.values())
    out.wait_for(lambda: len(out.of(topics.clean)) >= total, 90, "all feed items in docs.clean", stage)
    time.sleep(1.0)  # anything extra would arrive now
    clean = [json.loads(r.value or b"") for r in out.of(topics.clean)]
    assert len(clean) == total and len({d["id"] for d in clean}) == total
    assert Counter(url_of[d["source"]] for d in clean) == Counter(expected)
    assert out.of(topics.dlq) == []
    assert stage.metrics()["mbc_pipeline_duplicate_total"] == 0
