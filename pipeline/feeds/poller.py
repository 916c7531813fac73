"""`mbc produce feeds`: poll many feeds concurrently and publish their new items.

Each feed has its own asyncio task, so a slow or broken feed never holds up the others. One poll
of a feed is::

    conditional GET (ETag / Last-Modified)  --304-->  nothing to do
        | 200
    parse (feedparser)  -- error: retried with exponential backoff, then again next poll
        |
    drop ids already published (SQLite seen-set)
        |
    produce the rest; wait for every delivery report
        |
    record delivered ids as published; store the validators only if all were delivered

Recording happens only after Kafka confirmed delivery, so a crash can re-publish (the stage drops
it as a duplicate) but never lose an item.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from confluent_kafka import KafkaError

from infra.logging import get_logger
from infra.retry import Backoff, retry_async
from pipeline.errors import FeedUrlError
from pipeline.events import Document
from pipeline.feeds.fetch import FeedError, fetch
from pipeline.feeds.parse import parse_feed
from pipeline.feeds.state import FeedState
from pipeline.producer import DocumentProducer
from pipeline.settings import ProducerSettings

log = get_logger(__name__)


def url_problem(url: str) -> str | None:
    """Why ``url`` (already stripped) cannot be a feed URL, in a few words; None if it can.

    Everything decided here is permanent: such a URL is refused before any request, never retried.
    """
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "it contains a space or a control character (percent-encode it: %20)"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
    except ValueError as e:
        return f"it does not parse ({e})"
    if parts.scheme not in ("http", "https"):
        return "only http:// and https:// feeds can be polled"
    if not parts.hostname:
        return "it names no host"
    if port == 0:
        return "port 0 cannot be connected to"
    return None


def check_url(url: str, given_as: str = "--url") -> str:
    """``url`` stripped, or :class:`FeedUrlError` (naming ``given_as``) if it cannot be polled."""
    url = url.strip()
    if problem := url_problem(url):
        raise FeedUrlError(f"{given_as} {url!r} is not a feed URL: {problem}")
    return url


def read_feeds_file(text: str, given_as: str = "feeds file") -> list[str]:
    """URLs of a feeds file: one per line; blank lines and ``#`` comments ignored."""
    lines = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.splitlines(), 1)]
    return [check_url(u, f"{given_as} line {n}:") for n, u in lines if u]


@dataclass
class PollSummary:
    """What a run of the poller did, over all feeds."""

    polls: int = 0
    not_modified: int = 0
    items: int = 0
    published: int = 0
    lost: int = 0
    failed_feeds: set[str] = field(default_factory=set)


class FeedPoller:
    """Polls ``urls`` until stopped (or once each) and publishes new items through ``producer``."""

    def __init__(
        self, settings: ProducerSettings, urls: list[str], producer: DocumentProducer, state: FeedState
    ) -> None:
        self.settings = settings
        self.urls = list(dict.fromkeys(check_url(u) for u in urls))
        self.producer = producer
        self.state = state
        self.summary = PollSummary()
        self._stop = asyncio.Event()
        self._publishing: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, once: bool = False, install_signals: bool = True) -> PollSummary:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_signal, sig)
        reports = asyncio.create_task(self._serve_delivery_reports())
        timeout = httpx.Timeout(self.settings.http_timeout_s)
        headers = {
            "User-Agent": self.settings.user_agent,
            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5",
        }
        try:
            async with httpx.AsyncClient(timeout=timeout, headers=headers, follow_redirects=True) as client:
                feeds = [asyncio.create_task(self._feed_loop(client, url, once)) for url in self.urls]
                stopper = asyncio.create_task(self._stop.wait())
                everything: asyncio.Future[Any] = asyncio.gather(*feeds)
                await asyncio.wait([stopper, everything], return_when=asyncio.FIRST_COMPLETED)
                for task in [*feeds, stopper]:
                    task.cancel()
                await asyncio.gather(*feeds, stopper, return_exceptions=True)
                # Publishing is shielded from cancellation: let in-flight polls record what Kafka confirmed.
                await asyncio.gather(*self._publishing, return_exceptions=True)
        finally:
            reports.cancel()
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        return self.summary

    def _on_signal(self, sig: int) -> None:
        log.info("stopping on signal; flushing what was sent", signal=signal.Signals(sig).name)
        self._stop.set()

    async def _serve_delivery_reports(self) -> None:
        while True:
            self.producer.poll(0)
            await asyncio.sleep(0.02)

    async def _feed_loop(self, client: httpx.AsyncClient, url: str, once: bool) -> None:
        interval = self.settings.poll_interval_s
        # After n failed polls in a row the next one waits interval * 2**(n-1), capped; else interval.
        between = Backoff(first_s=interval, max_s=max(self.settings.max_backoff_s, interval), jitter=0.1)
        failures = 0
        while True:
            ok = await self._poll_with_retries(client, url)
            failures = 0 if ok else failures + 1
            if once:
                return
            delay = between.delay(max(failures, 1))
            if failures:
                log.error(
                    "feed failing; will poll again", url=url, failures=failures, next_poll_s=round(delay, 2)
                )
            await asyncio.sleep(delay)

    async def _poll_with_retries(self, client: httpx.AsyncClient, url: str) -> bool:
        attempts = self.settings.http_retries + 1
        tried = 0

        async def attempt_poll() -> None:
            nonlocal tried
            tried += 1
            await self._poll_logged(client, url)

        def retrying(attempt: int, error: BaseException, _wait: float) -> None:
            log.warning(
                "feed poll failed; retrying",
                url=url,
                problem=_problem(error),
                attempt=attempt,
                attempts=attempts,
            )

        try:
            await retry_async(
                attempt_poll,
                attempts=attempts,
                retry_if=lambda e: not isinstance(e, FeedError) or e.retryable,
                backoff=Backoff(first_s=self.settings.retry_backoff_s, max_s=self.settings.max_backoff_s),
                on_retry=retrying,
            )
        except Exception as e:
            permanent = isinstance(e, FeedError) and not e.retryable  # not retried within this poll
            log.warning(
                "feed poll failed",
                url=url,
                problem=_problem(e),
                attempt=tried,
                attempts=attempts,
                permanent=permanent,
            )
            self.summary.failed_feeds.add(url)
            return False
        self.summary.failed_feeds.discard(url)
        return True

    async def _poll_logged(self, client: httpx.AsyncClient, url: str) -> None:
        try:
            await self.poll_once(client, url)
        except FeedError:
            raise
        except Exception:  # a bug or library failure on this feed must not stop the others
            log.exception("feed poll crashed", url=url)
            raise

    async def poll_once(self, client: httpx.AsyncClient, url: str) -> None:
        """Fetch, parse and publish one feed once; :class:`FeedError` if fetching or parsing failed."""
        etag, last_modified = self.state.validators(url)
        response = await fetch(
            client, url, etag=etag, last_modified=last_modified, max_bytes=self.settings.max_feed_bytes
        )
        self.summary.polls += 1
        if response.not_modified:
            self.summary.not_modified += 1
            log.debug("feed not modified", url=url)
            return
        docs = parse_feed(response.content, url, headers=response.headers)
        self.summary.items += len(docs)
        new = self.state.unpublished(docs)
        publish = asyncio.ensure_future(self._publish(url, new, response.etag, response.last_modified))
        self._publishing.add(publish)
        publish.add_done_callback(self._publishing.discard)
        await asyncio.shield(publish)

    async def _publish(
        self, url: str, docs: list[Document], etag: str | None, last_modified: str | None
    ) -> None:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[KafkaError | None]] = []
        for doc in docs:
            fut: asyncio.Future[KafkaError | None] = loop.create_future()
            futures.append(fut)
            self.producer.send(doc, lambda _doc, err, fut=fut: fut.set_result(err))  # type: ignore[misc]
        errors = await asyncio.gather(*futures)
        delivered = [d for d, err in zip(docs, errors, strict=True) if err is None]
        self.state.mark_published(delivered)
        lost = len(docs) - len(delivered)
        self.summary.published += len(delivered)
        self.summary.lost += lost
        if lost == 0:
            self.state.save_validators(url, etag, last_modified)
        log.info("feed polled", url=url, new=len(docs), published=len(delivered), lost=lost)


def _problem(error: BaseException) -> str:
    return error.problem if isinstance(error, FeedError) else f"{type(error).__name__}: {error}"
