"""`mbc produce replay`: publish a dataset file to the raw topic in publication order."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from corpora.documents import Record, load_records
from corpora.formats import detect_document_format
from infra.logging import get_logger
from infra.shutdown import ShutdownRequest
from pipeline.events import Document, make_document
from pipeline.producer import DocumentProducer
from pipeline.settings import ProducerSettings

log = get_logger(__name__)


@dataclass
class ReplaySummary:
    """What a replay did: records read, documents sent / confirmed / lost, seconds spent."""

    records: int
    sent: int
    delivered: int
    lost: int
    seconds: float
    stopped: bool

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


def default_source(path: Path) -> str:
    """A replay's source name: the file name without its extensions (``reuters21578``)."""
    return path.name.split(".", 1)[0]


def replay(
    path: Path,
    settings: ProducerSettings,
    *,
    fmt: str | None = None,
    source: str | None = None,
    rate: float | None = None,
    limit: int | None = None,
    skip: int = 0,
    title_as_text: bool = False,
    progress: bool | None = None,
    stop: ShutdownRequest | None = None,
    pace: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Publish ``path`` at most ``rate`` documents per second: in publication order, leaving out the
    first ``skip`` documents, at most ``limit`` of them. ``pace(n)`` is called before the n-th
    document is sent and may block (backpressure from whoever consumes the topic)."""
    fmt = fmt or detect_document_format(path)
    records = load_records(path, fmt)[skip:]
    if limit is not None:
        records = records[:limit]
    source = source or default_source(path)
    stop = stop or ShutdownRequest()
    producer = DocumentProducer(settings)
    log.info("replaying", path=str(path), format=fmt, documents=len(records), source=source, rate=rate)
    fetched_at = datetime.now(UTC)
    start = time.monotonic()
    # tqdm's disable=None hides the bar when stderr is not a terminal.
    with tqdm(
        total=len(records), unit="doc", desc="replay", disable=None if progress is None else not progress
    ) as bar:
        for i, record in enumerate(records):
            if stop.is_set():
                break
            if rate:
                _pace(start + i / rate, stop)
            if pace is not None:
                pace(i)
            producer.send(_document(record, source, fetched_at, title_as_text))
            producer.poll(0)
            bar.update(1)
    lost = producer.close()
    summary = ReplaySummary(
        records=len(records),
        sent=producer.sent,
        delivered=producer.delivered,
        lost=lost,
        seconds=time.monotonic() - start,
        stopped=stop.is_set(),
    )
    log.info(
        "replay finished" if not summary.stopped else "replay stopped",
        sent=summary.sent,
        delivered=summary.delivered,
        lost=summary.lost,
        docs_per_s=round(summary.rate, 1),
    )
    return summary


def _document(record: Record, source: str, fetched_at: datetime, title_as_text: bool) -> Document:
    text = record.text if record.text.strip() or not title_as_text else record.title
    return make_document(
        source=record.source or source,
        ref=record.ref,
        text=text,
        title=record.title,
        url=record.url,
        published_at=record.published_at,
        fetched_at=fetched_at,
    )


def _pace(deadline: float, stop: ShutdownRequest) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        stop.wait(delay)
