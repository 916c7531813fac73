"""Request checks both HTTP services share (auth is :mod:`infra.auth`).

* Time windows: a bound must lie in ``[EARLIEST, LATEST]`` (UTC; naive = UTC) — which also keeps
  every conversion to UTC from overflowing — and ``since`` must not be after ``until``. The
  services answer a violation with 400 and the message :func:`window_problem` returns.
* Invalid requests: 422 with ``{"detail": "<one line>"}`` naming each bad field
  (:func:`one_line_validation_errors`).
* Oversized bodies: 413 before anything is parsed (:func:`limit_body_size`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _utc(ts: datetime) -> datetime | None:
    try:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except OverflowError:
        return None


def window_problem(since: datetime | None, until: datetime | None) -> str | None:
    """Why ``[since, until)`` is not an acceptable window, in one line; None if it is."""
    bounds: dict[str, datetime] = {}
    for name, ts in (("since", since), ("until", until)):
        if ts is None:
            continue
        t = _utc(ts)
        if t is None or not EARLIEST <= t <= LATEST:
            return f"{name} must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
        bounds[name] = t
    if "since" in bounds and "until" in bounds and bounds["since"] > bounds["until"]:
        return "since must not be after until"
    return None


def one_line_validation_errors(app: FastAPI) -> None:
    """Answer request validation errors with 422 and one line: ``<where>: <what>; …``."""

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{' '.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 and one line, before any of it
    is parsed. A declared Content-Length is checked up front; a chunked body is counted as it
    arrives (and replayed to the app when it fits)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:  # no length declared: read it all, within the limit, before the app sees it
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def limit_body_size(app: FastAPI, max_bytes: int) -> None:
    """Refuse request bodies over ``max_bytes`` with 413 (see :class:`BodyLimit`)."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes)
