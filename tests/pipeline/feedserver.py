"""A feed server for tests: files over HTTP on 127.0.0.1 with ETag / Last-Modified and 304s, plus
routes that fail on purpose."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

CONTENT_TYPES = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".xml": "application/xml",
    ".rdf": "application/rdf+xml",
}


class FeedServer:
    """``add()`` a body under a path, or ``fail()`` a path with a status; ``url(path)`` to fetch it."""

    def __init__(self) -> None:
        self.bodies: dict[str, tuple[bytes, str, str, str]] = {}  # path -> body, type, etag, last-modified
        self.statuses: dict[str, int] = {}
        self.hits: Counter[tuple[str, int]] = Counter()
        self.conditional = True
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, headers = server._respond(self.path, self.headers.get("If-None-Match"))
                with server._lock:
                    server.hits[(self.path, status)] += 1
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes, content_type: str | None = None) -> str:
        ctype = content_type or CONTENT_TYPES.get(Path(path).suffix, "application/xml")
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        with self._lock:
            version = len(self.bodies)
            self.bodies[path] = (body, ctype, etag, formatdate(1_700_000_000 + version, usegmt=True))
        return self.url(path)

    def add_file(self, path: str, file: Path) -> str:
        return self.add(path, file.read_bytes())

    def fail(self, path: str, status: int) -> str:
        self.statuses[path] = status
        return self.url(path)

    def count(self, path: str, status: int | None = None) -> int:
        with self._lock:
            return sum(n for (p, s), n in self.hits.items() if p == path and (status is None or s == status))

    def _respond(self, path: str, if_none_match: str | None) -> tuple[int, bytes, dict[str, str]]:
        if path in self.statuses:
            return (
                self.statuses[path],
                b"<html><body>Internal Server Error</body></html>",
                {"Content-Type": "text/html"},
            )
        if path not in self.bodies:
            return 404, b"not found", {"Content-Type": "text/plain"}
        body, ctype, etag, modified = self.bodies[path]
        headers = {"Content-Type": ctype}
        if self.conditional:
            headers.update({"ETag": etag, "Last-Modified": modified})
            if if_none_match == etag:
                return 304, b"", headers
        return 200, body, headers

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FeedServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
