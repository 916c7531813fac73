"""The ``/ask`` HTTP endpoint: ``POST /ask`` with a question and an optional slice.

Bearer-token auth (:mod:`infra.auth`, scope ``ask``) when a token is configured
(``MBC_QA_TOKEN``); ``GET /health`` is open. ``mbc ask-serve`` refuses to listen on a non-loopback
address without a token.

Bounded work per request (:class:`AskLimits`, settings ``qa_*``):

* the memory slice is always built from the store's exact counts (:mod:`memory_store.counts`;
  the model attends over O(distinct codes) rows): the naive aggregation (every stored code,
  O(documents)) is not served over HTTP — it stays available to ``mbc ask --aggregation naive``
  on the shell;
* the question's length and the source's length are capped; windows are validated
  (:mod:`infra.http`);
* at most ``max_concurrent`` requests are admitted at once (waiting for the model or running on
  it; the model answers one at a time): one more gets 429;
* a blank question (empty or no words) gets 422, as ``mbc ask`` exits 2 on it; so does a whole-slice
  question (``"retrieve": 0``) to a summed-code checkpoint, which answers from retrieved documents only;
* a slice with no documents is refused, not answered closed-book: 200 with ``"answer": null`` and
  ``refusal`` saying why (``mbc ask`` prints the same decision and exits 3);
* a request that has no answer after ``timeout_s`` gets 503. Its thread cannot be killed: it keeps
  its admission slot until it ends, so timed-out work still counts against the concurrency limit,
  and one that never got the model gives up without running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from infra.http import limit_body_size, one_line_validation_errors, window_problem
from learner.ask.answerer import Answer
from learner.ask.question import question_problem
from learner.ask.settings import ASK_SCOPE, MAX_RETRIEVE, qa_tokens
from learner.errors import RetrievalRequired

MAX_BODY_BYTES = 64 * 1024  # a question of at most a few thousand characters and a slice


class AnswersQuestions(Protocol):
    """What the service needs of :class:`learner.ask.answerer.Answerer` (tests pass fakes)."""

    @property
    def device(self) -> Any: ...

    def ask(
        self,
        question: str,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        aggregation: Literal["counts", "naive"] = "counts",
        retrieve: int = 0,
    ) -> Answer: ...


@dataclass(frozen=True)
class AskLimits:
    """Caps on one request's work (settings ``qa_max_question_chars``, ``qa_max_concurrent``,
    ``qa_request_timeout_s``)."""

    max_question_chars: int = 2000
    max_concurrent: int = 4
    timeout_s: float = 30.0
    retrieve: int = 0  # a request's retrieve when it sends none (setting ``retrieve``)


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=100_000, description="the question")
    since: datetime | None = Field(None, description="only documents published at or after this time")
    until: datetime | None = Field(None, description="only documents published before this time")
    source: str | None = Field(None, max_length=200, description="only documents of this source")
    retrieve: int | None = Field(
        None,
        ge=0,
        le=MAX_RETRIEVE,
        description="answer from the top-k documents of the slice (0: the whole slice); "
        "default: the service's MBC_RETRIEVE",
    )
    aggregation: Literal["counts"] = Field(
        "counts", description="always counts (exact, O(distinct codes)); naive is shell-only"
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if problem := question_problem(v):
            raise ValueError(problem)
        return v

    @field_validator("aggregation", mode="before")
    @classmethod
    def _counts_only(cls, v: object) -> object:
        if v != "counts":
            raise ValueError(
                "only 'counts' is served over HTTP (naive decodes every stored code of the slice; "
                "use `mbc ask --aggregation naive` on the shell)"
            )
        return v


class CitationOut(BaseModel):
    id: str
    title: str | None
    url: str | None
    source: str
    published_at: str
    attention_mass: float = Field(description="share of the aggregation's attention on this document")
    score: float = Field(description="retrieval score (inner product of document key and query)")


class AskResponse(BaseModel):
    question: str
    answer: str | None = Field(description="null when refused: the slice holds no documents")
    documents: int
    memory_rows: int
    codebook_versions: list[int]
    aggregation: str
    latency_ms: float
    since: str | None = None
    until: str | None = None
    source: str | None = None
    refusal: str | None = Field(None, description="why there is no answer; null when answered")
    retrieve: int = Field(0, description="documents retrieved before aggregation; 0: the whole slice")
    citations: list[CitationOut] = Field(
        default_factory=list, description="the documents the answer drew on, by attention mass"
    )
    uncited_mass: float = Field(0.0, description="attention mass on documents not cited")


class _TimedOut(Exception):
    """The request's deadline passed before the model was free."""


def build_app(answerer: AnswersQuestions, token: str | None, limits: AskLimits | None = None) -> FastAPI:
    lim = limits or AskLimits()
    app = FastAPI(title="mbc-stream QA", description="Answers questions from the compressed memory bank.")
    one_line_validation_errors(app)
    limit_body_size(app, MAX_BODY_BYTES)
    model_lock = threading.Lock()  # the model is not re-entrant on one device
    slots = threading.BoundedSemaphore(lim.max_concurrent)  # held until the work really ends
    pool = ThreadPoolExecutor(lim.max_concurrent, thread_name_prefix="ask")
    app.router.on_shutdown.append(lambda: pool.shutdown(wait=False, cancel_futures=True))

    def work(req: AskRequest, deadline: float) -> dict[str, Any]:
        try:
            if not model_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise _TimedOut
            try:
                if time.monotonic() >= deadline:
                    raise _TimedOut
                k = lim.retrieve if req.retrieve is None else req.retrieve
                return answerer.ask(req.question, req.since, req.until, req.source, "counts", k).to_dict()
            finally:
                model_lock.release()
        finally:
            slots.release()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "device": str(answerer.device)}

    @app.post(
        "/ask",
        response_model=AskResponse,
        dependencies=[Depends(qa_tokens(token).require(ASK_SCOPE))],
        responses={429: {"description": "too many requests at once"}, 503: {"description": "timed out"}},
    )
    async def ask(req: AskRequest) -> Any:
        if len(req.question) > lim.max_question_chars:
            raise HTTPException(
                422,
                f"question is longer than {lim.max_question_chars} characters (MBC_QA_MAX_QUESTION_CHARS)",
            )
        if problem := window_problem(req.since, req.until):
            raise HTTPException(400, problem)
        if not slots.acquire(blocking=False):
            return JSONResponse(
                {
                    "detail": f"busy: {lim.max_concurrent} questions already in progress (MBC_QA_MAX_CONCURRENT)"
                },
                status_code=429,
                headers={"Retry-After": "1"},
            )
        deadline = time.monotonic() + lim.timeout_s
        try:
            future = pool.submit(work, req, deadline)
        except BaseException:
            slots.release()
            raise
        # Waiting does not cancel the work (a queued job never run would never free its slot).
        answer = asyncio.wrap_future(future)
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
        done, _ = await asyncio.wait({answer}, timeout=lim.timeout_s)
        try:
            if not done:
                raise _TimedOut
            return answer.result()
        except _TimedOut:
            return JSONResponse(
                {"detail": f"no answer within {lim.timeout_s:g} s (MBC_QA_REQUEST_TIMEOUT_S)"},
                status_code=503,
            )
        except RetrievalRequired as e:  # a summed-code checkpoint asked about a whole slice
            return JSONResponse({"detail": str(e)}, status_code=422)

    return app
