"""Oversized request bodies get 413 and one line before anything parses them."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from infra.http import limit_body_size


def _app(limit: int) -> TestClient:
    app = FastAPI()
    limit_body_size(app, limit)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    return TestClient(app)


def _chunks(total: int, size: int = 16) -> Iterator[bytes]:
    for i in range(0, total, size):
        yield b"x" * min(size, total - i)


def test_declared_length_over_the_limit_is_refused() -> None:
    client = _app(100)
    assert client.post("/echo", content=b"x" * 100).json() == {"received": 100}
    r = client.post("/echo", content=b"x" * 101)
    assert r.status_code == 413
    assert r.json() == {"detail": "request body larger than 100 bytes"}


def test_chunked_body_is_counted_and_replayed_when_it_fits() -> None:
    client = _app(100)
    ok = client.post("/echo", content=_chunks(96))
    assert ok.status_code == 200 and ok.json() == {"received": 96}
    big = client.post("/echo", content=_chunks(500))
    assert big.status_code == 413


def test_ask_service_refuses_a_huge_body_with_413() -> None:
    from learner.ask.service import MAX_BODY_BYTES
    from tests.worker.test_ask_service import FakeAnswerer, _client

    client = _client(FakeAnswerer())
    r = client.post(
        "/ask",
        content=b'{"question": "' + b"q" * MAX_BODY_BYTES + b'"}',
        headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
