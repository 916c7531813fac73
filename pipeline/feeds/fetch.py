"""One HTTP GET of a feed: conditional (ETag / Last-Modified), bounded in time and size."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

# Statuses worth trying again soon; other 4xx mean the URL is wrong (tried again next poll only).
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Transport errors that the same request will meet again: the URL or the server's answer is wrong.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.InvalidURL,
    httpx.UnsupportedProtocol,
    httpx.TooManyRedirects,
    httpx.DecodingError,
)


class FeedError(Exception):
    """A feed could not be fetched or parsed; ``retryable`` says whether retrying soon may help."""

    def __init__(self, url: str, problem: str, *, retryable: bool = True) -> None:
        super().__init__(f"{url}: {problem}")
        self.url = url
        self.problem = problem
        self.retryable = retryable


@dataclass(frozen=True)
class Response:
    """A feed body (``not_modified`` when the server answered 304)."""

    url: str
    status: int
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    max_bytes: int = 20_000_000,
) -> Response:
    """GET ``url`` once; raise :class:`FeedError` for transport errors and bad statuses."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        async with client.stream("GET", url, headers=headers) as r:
            if r.status_code == 304:
                return Response(url, 304, headers=_lower(r.headers))
            if not 200 <= r.status_code < 300:
                raise FeedError(
                    url,
                    f"HTTP {r.status_code} {r.reason_phrase}",
                    retryable=r.status_code in RETRYABLE_STATUS,
                )
            body = bytearray()
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise FeedError(url, f"response larger than {max_bytes} bytes", retryable=False)
            return Response(url, r.status_code, bytes(body), _lower(r.headers))
    except httpx.TimeoutException as e:
        raise FeedError(url, f"timed out ({type(e).__name__})") from e
    except (httpx.InvalidURL, httpx.HTTPError) as e:
        permanent = isinstance(e, PERMANENT_ERRORS)
        raise FeedError(
            url, f"{type(e).__name__}: {e or 'connection failed'}", retryable=not permanent
        ) from e


def _lower(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
