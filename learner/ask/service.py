"""The ``/ask`` HTTP endpoint: ``POST /ask`` with a question and an optional slice.

Bearer-token auth when a token is configured (``MBC_QA_TOKEN``); ``GET /health`` is open.
Requests are answered one at a time (the model is not re-entrant on one device).
"""

from __future__ import annotations

import hmac
import threading
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, Field

from learner.ask.answerer import Answerer


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=2000, description="the question")
    since: datetime | None = Field(None, description="only documents published at or after this time")
    until: datetime | None = Field(None, description="only documents published before this time")
    source: str | None = Field(None, description="only documents of this source")
    aggregation: Literal["counts", "naive"] = "counts"


class AskResponse(BaseModel):
    question: str
    answer: str
    documents: int
    memory_rows: int
    codebook_versions: list[int]
    aggregation: str
    latency_ms: float
    since: str | None = None
    until: str | None = None
    source: str | None = None


def build_app(answerer: Answerer, token: str | None) -> FastAPI:
    app = FastAPI(title="mbc-stream QA", description="Answers questions from the compressed memory bank.")
    lock = threading.Lock()

    def auth(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        expected = f"Bearer {token}"
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "device": str(answerer.device)}

    @app.post("/ask", response_model=AskResponse, dependencies=[Depends(auth)])
    def ask(req: AskRequest) -> dict[str, Any]:
        if req.since and req.until and req.since > req.until:
            raise HTTPException(400, "since must not be after until")
        with lock:
            return answerer.ask(req.question, req.since, req.until, req.source, req.aggregation).to_dict()

    return app
