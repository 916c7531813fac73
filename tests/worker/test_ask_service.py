"""POST /ask's guards with a fake answerer (no model): token, naive refused, sizes, windows,
the concurrency limit (429), the timeout (503), and `mbc ask-serve` refusing to listen openly."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from learner.ask.answerer import Answer
from learner.ask.service import AskLimits, build_app
from tests.mbc_process import run_mbc
from tests.worker.conftest import REPO

AUTH = {"Authorization": "Bearer s3cret"}


class FakeAnswerer:
    """Answers at once, or, when ``blocking``, only after ``release`` is set."""

    device = "cpu"

    def __init__(self, blocking: bool = False, retrieval_only: bool = False) -> None:
        """``retrieval_only``: refuse whole-slice questions, as a summed-code checkpoint does."""
        self.retrieval_only = retrieval_only
        self.started, self.release, self.finished = threading.Event(), threading.Event(), threading.Event()
        self.calls: list[tuple[str, str]] = []
        if not blocking:
            self.release.set()

    def ask(
        self,
        question: str,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        aggregation: str = "counts",
        retrieve: int = 0,
    ) -> Answer:
        if self.retrieval_only and retrieve == 0:
            from learner.errors import RetrievalRequired

            raise RetrievalRequired("answers from the documents a question retrieves; give --retrieve K")
        self.calls.append((question, aggregation))
        self.started.set()
        assert self.release.wait(10)
        self.finished.set()
        if self.retrieval_only:
            return Answer(question, "rates held", 3, 36, [1], "per-document", 1.5, retrieve=retrieve)
        return Answer(question, "rates held", 3, 5, [1], aggregation, 1.5, source=source)


@pytest.fixture
def fake() -> Iterator[FakeAnswerer]:
    f = FakeAnswerer(blocking=True)
    yield f
    f.release.set()  # never leave a worker thread blocked


def _client(answerer: FakeAnswerer, token: str | None = "s3cret", **limits: float) -> TestClient:
    return TestClient(build_app(answerer, token, AskLimits(**limits)))  # type: ignore[arg-type]


def test_token_naive_sizes_and_windows() -> None:
    fake = FakeAnswerer()
    client = _client(fake, max_question_chars=10)
    assert client.get("/health").json() == {"status": "ok", "device": "cpu"}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "s3cret"}):
        r = client.post("/ask", json={"question": "q"}, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
        assert r.json() == {"detail": "missing or wrong bearer token"}
    r = client.post("/ask", json={"question": "which fell", "source": "wire-b"}, headers=AUTH)
    assert r.status_code == 200
    assert (r.json()["answer"], r.json()["aggregation"], r.json()["source"]) == (
        "rates held",
        "counts",
        "wire-b",
    )

    r = client.post("/ask", json={"question": "q", "aggregation": "naive"}, headers=AUTH)
    assert r.status_code == 422 and "only 'counts' is served over HTTP" in r.json()["detail"]
    r = client.post("/ask", json={"question": "x" * 11}, headers=AUTH)
    assert r.status_code == 422
    assert r.json() == {"detail": "question is longer than 10 characters (MBC_QA_MAX_QUESTION_CHARS)"}
    assert client.post("/ask", json={"question": ""}, headers=AUTH).status_code == 422
    r = client.post("/ask", json={"question": "q", "source": "s" * 201}, headers=AUTH)
    assert r.status_code == 422 and "source" in r.json()["detail"]
    windows = [
        ({"since": "2026-03-05T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "since must not be after until"),
        ({"since": "0001-01-01T00:00:00+05:00"}, "since must lie between 1900-01-01 and 2200-01-01 (UTC)"),
        ({"until": "2400-01-01T00:00:00Z"}, "until must lie between 1900-01-01 and 2200-01-01 (UTC)"),
    ]
    for window, message in windows:
        r = client.post("/ask", json={"question": "q", **window}, headers=AUTH)
        assert (r.status_code, r.json()) == (400, {"detail": message}), window
    assert fake.calls == [("which fell", "counts")]  # nothing refused reached the model


def test_without_a_token_the_service_is_open() -> None:
    r = _client(FakeAnswerer(), token=None).post("/ask", json={"question": "q"})
    assert r.status_code == 200 and r.json()["answer"] == "rates held"


def test_over_the_concurrency_limit_gets_429(fake: FakeAnswerer) -> None:
    with _client(fake, max_concurrent=1, timeout_s=10) as client:
        first: list[Response] = []
        t = threading.Thread(
            target=lambda: first.append(client.post("/ask", json={"question": "a"}, headers=AUTH))
        )
        t.start()
        assert fake.started.wait(10)  # the first request holds the only slot, on the model
        r = client.post("/ask", json={"question": "b"}, headers=AUTH)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json() == {"detail": "busy: 1 questions already in progress (MBC_QA_MAX_CONCURRENT)"}
        fake.release.set()
        t.join(10)
        assert first[0].status_code == 200 and first[0].json()["question"] == "a"
        assert client.post("/ask", json={"question": "c"}, headers=AUTH).status_code == 200
    assert [q for q, _ in fake.calls] == ["a", "c"]


def test_past_the_timeout_gets_503_and_keeps_its_slot_until_done(fake: FakeAnswerer) -> None:
    with _client(fake, max_concurrent=2, timeout_s=0.3) as client:
        t0 = time.monotonic()
        r = client.post("/ask", json={"question": "slow"}, headers=AUTH)
        assert r.status_code == 503 and time.monotonic() - t0 < 5
        assert r.json() == {"detail": "no answer within 0.3 s (MBC_QA_REQUEST_TIMEOUT_S)"}
        # The second waits for the model (held by the first), times out and never runs.
        r = client.post("/ask", json={"question": "queued"}, headers=AUTH)
        assert r.status_code == 503
        # Both slots are still taken: the first is running, the second is giving up.
        fake.release.set()
        assert fake.finished.wait(10)
        deadline = time.monotonic() + 10
        while (r := client.post("/ask", json={"question": "next"}, headers=AUTH)).status_code == 429:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 200
    assert [q for q, _ in fake.calls] == ["slow", "next"]


def _ask_serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MBC_QA", "MBC_CHECKPOINT"))}
    return run_mbc("ask-serve", *args, cwd=REPO, env={**base, "PYTHONPATH": str(REPO), **env})


def test_ask_serve_refuses_a_non_loopback_address_without_a_token() -> None:
    for out in (_ask_serve("--host", "0.0.0.0"), _ask_serve(MBC_QA_HOST="10.1.2.3")):
        assert out.returncode == 2 and "Traceback" not in out.stderr
        host = "0.0.0.0" if "0.0.0.0" in out.stderr else "10.1.2.3"
        assert out.stderr.strip().splitlines() == [
            f"error: refusing to listen on {host} without a token: set MBC_QA_TOKEN "
            "(or qa_token in [ask]), or listen on 127.0.0.1"
        ]
    # On loopback, or with a token, the bind check passes: what stops it now is the missing checkpoint.
    for out in (_ask_serve("--host", "127.0.0.1"), _ask_serve("--host", "0.0.0.0", MBC_QA_TOKEN="t")):
        assert out.returncode == 2 and "no checkpoint" in out.stderr and "refusing" not in out.stderr


def test_a_whole_slice_question_to_a_retrieval_only_checkpoint_is_422_with_one_line() -> None:
    client = _client(FakeAnswerer(retrieval_only=True))
    r = client.post("/ask", json={"question": "which fell"}, headers=AUTH)
    assert r.status_code == 422 and "give --retrieve K" in r.json()["detail"]
    r = client.post("/ask", json={"question": "which fell", "retrieve": 3}, headers=AUTH)
    assert r.status_code == 200 and r.json()["aggregation"] == "per-document"
