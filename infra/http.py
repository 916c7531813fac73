"""Request checks both HTTP services share (auth is :mod:`infra.auth`).

* Time windows: a bound must lie in ``[EARLIEST, LATEST]`` (UTC; naive = UTC) — which also keeps
  every conversion to UTC from overflowing — and ``since`` must not be after ``until``. The
  services answer a violation with 400 and the message :func:`window_problem` returns.
* Invalid requests: 422 with ``{"detail": "<one line>"}`` naming each bad field
  (:func:`one_line_validation_errors`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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
