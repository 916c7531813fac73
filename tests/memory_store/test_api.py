"""The reader service: scoped auth, counts for slices, deletion, codebooks, documents, limits, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from infra.errors import ConfigError
from memory_store.api import CODEBOOK_MEDIA_TYPE, ApiLimits, create_app
from memory_store.codec import decode_codebook
from memory_store.records import SourcePosition
from memory_store.store import MemoryStore
from tests.memory_store.helpers import T0, as_dict, codebook, doc, random_docs, recount

TOKEN = "s3cret-token"  # admin scope
READ_TOKEN = "read-only-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN_ROUTES = [("DELETE", "/documents/x"), ("POST", "/codebooks/{v}/reindex")]
READ_ROUTES = [
    ("GET", "/stats"),
    ("GET", "/counts"),
    ("GET", "/codebooks"),
    ("GET", "/codebooks/{v}"),
    ("POST", "/codebooks/{v}/nearest"),
    ("GET", "/documents/x"),
]


@pytest.fixture
def client(store: MemoryStore) -> TestClient:
    return TestClient(create_app(store, READ_TOKEN, TOKEN, ApiLimits(max_nearest_vectors=3, max_nearest_k=4)))


def counts_of(response: object) -> dict[tuple[int, int], int]:
    body = response.json()  # type: ignore[attr-defined]
    return {(c["codebook_version"], c["code"]): c["count"] for c in body["counts"]}


def test_token_is_required_everywhere_but_health(
    client: TestClient, store: MemoryStore, version: int
) -> None:
    assert client.get("/health").json() == {"status": "ok", "backend": store.backend}
    for method, route in READ_ROUTES + ADMIN_ROUTES:
        path = route.format(v=version)
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": "Basic eDp5"},
        ):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "token" in r.json()["detail"]
    assert client.get("/stats", headers=AUTH).status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/health", "/stats", "/counts", "/codebooks/{version}", "/documents/{doc_id}"} <= set(
        spec["paths"]
    )
    assert CODEBOOK_MEDIA_TYPE in spec["paths"]["/codebooks/{version}"]["get"]["responses"]["200"]["content"]


def test_counts_for_slices_and_deletion(client: TestClient, store: MemoryStore, version: int) -> None:
    store.write_batch(random_docs(300, version, hours=96))
    cases = [
        {},
        {"source": "src1"},
        {"since": (T0 + timedelta(hours=30)).isoformat()},
        {"until": "2024-03-03T07:30:00"},  # naive: UTC
        {"since": "2024-03-01T13:00:00+02:00", "until": "2024-03-04T00:00:00Z", "source": "src2"},
    ]
    for params in cases:
        r = client.get("/counts", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        since = params.get("since")
        until = params.get("until")
        expected = recount(
            store,
            _parse(since) if since else None,
            _parse(until) if until else None,
            params.get("source"),
        )
        assert counts_of(r) == expected, params
        assert r.json()["total"] == sum(expected.values())
    assert client.get("/counts", params={"source": "nobody"}, headers=AUTH).json()["counts"] == []

    target = store.document("d7")
    assert target is not None
    before = as_dict(store.counts())
    assert client.delete("/documents/d7", headers=AUTH).status_code == 204
    after = counts_of(client.get("/counts", headers=AUTH))
    for code in target.indices:
        before[(version, code)] -= 1
    assert after == {k: n for k, n in before.items() if n > 0}
    assert client.delete("/documents/d7", headers=AUTH).status_code == 404
    assert client.get("/documents/d7", headers=AUTH).status_code == 404
    assert client.get("/stats", headers=AUTH).json()["documents"] == 299


def _parse(text: str) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def test_bad_requests_get_4xx_with_a_message(client: TestClient, version: int) -> None:
    for params in ({"since": "yesterday"}, {"until": "2024-13-01"}, {"version": "x"}, {"version": "0"}):
        r = client.get("/counts", params=params, headers=AUTH)
        assert r.status_code == 422, params
        detail = r.json()["detail"]
        assert isinstance(detail, str) and detail.startswith("query ") and next(iter(params)) in detail
    r = client.get("/counts", params={"since": "2024-03-02", "until": "2024-03-01"}, headers=AUTH)
    assert r.status_code == 400 and "since" in r.json()["detail"]
    for path in ("/codebooks/99", "/codebooks/abc", "/documents/none"):
        r = client.get(path, headers=AUTH)
        assert r.status_code in (404, 422) and r.json()["detail"], path
    r = client.get("/counts", params={"version": 99}, headers=AUTH)
    assert r.status_code == 404 and "99" in r.json()["detail"]
    r = client.post(f"/codebooks/{version}/nearest", json={"vectors": [[1.0, 2.0]]}, headers=AUTH)
    assert r.status_code == 400 and "shape" in r.json()["detail"]


def test_codebook_document_and_nearest(client: TestClient, store: MemoryStore, version: int) -> None:
    r = client.get(f"/codebooks/{version}", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == CODEBOOK_MEDIA_TYPE
    assert (r.headers["x-codebook-num-codes"], r.headers["x-codebook-dim"]) == ("512", "16")
    np.testing.assert_array_equal(decode_codebook(r.content), codebook())
    listed = client.get("/codebooks", headers=AUTH).json()
    assert [(c["version"], c["num_codes"], c["dim"]) for c in listed] == [(version, 512, 16)]

    store.write_batch(
        [doc("feeds/a b", list(range(12)), version, position=SourcePosition("docs.clean", 2, 9))]
    )
    body = client.get("/documents/feeds/a b", headers=AUTH).json()
    assert body["indices"] == list(range(12)) and body["source_partition"] == 2
    assert bytes.fromhex(body["codes_hex"]) == doc("x", list(range(12)), version).codes

    vectors = codebook()[[5, 9]] + 1e-3
    r = client.post(f"/codebooks/{version}/nearest", json={"vectors": vectors.tolist(), "k": 2}, headers=AUTH)
    assert r.status_code == 200 and [row[0] for row in r.json()["codes"]] == [5, 9]


def test_read_token_reads_and_gets_403_on_admin_routes(
    client: TestClient, store: MemoryStore, version: int
) -> None:
    store.write_batch([doc("x", list(range(12)), version)])
    nearest = {"vectors": codebook()[:1].tolist()}
    for method, route in READ_ROUTES:
        body = nearest if route.endswith("nearest") else None
        r = client.request(method, route.format(v=version), headers=READ, json=body)
        assert r.status_code == 200, (method, route, r.text)
    for method, route in ADMIN_ROUTES:
        r = client.request(method, route.format(v=version), headers=READ)
        assert r.status_code == 403, (method, route)
        assert r.json() == {"detail": "this token lacks the admin scope"}
    assert client.get("/stats", headers=READ).json()["documents"] == 1  # nothing was deleted

    # The admin token does both.
    assert client.get("/documents/x", headers=AUTH).status_code == 200
    r = client.post(f"/codebooks/{version}/reindex", headers=AUTH)
    assert r.status_code == 200 and (r.json()["version"], r.json()["num_codes"]) == (version, 512)
    assert client.post("/codebooks/99/reindex", headers=AUTH).status_code == 404
    assert client.delete("/documents/x", headers=AUTH).status_code == 204
    assert client.get("/stats", headers=READ).json()["documents"] == 0


def test_one_scope_configured(store: MemoryStore, version: int) -> None:
    read_only = TestClient(create_app(store, read_token=READ_TOKEN))
    assert read_only.get("/stats", headers=READ).status_code == 200
    assert read_only.delete("/documents/x", headers=READ).status_code == 403
    assert read_only.delete("/documents/x", headers=AUTH).status_code == 401  # not a token here
    admin_only = TestClient(create_app(store, admin_token=TOKEN))
    assert admin_only.get("/stats", headers=AUTH).status_code == 200
    assert admin_only.get("/stats", headers=READ).status_code == 401
    with pytest.raises(ValueError, match="read or an admin token"):
        create_app(store)
    with pytest.raises(ConfigError, match="must differ"):
        create_app(store, TOKEN, TOKEN)


def test_oversize_requests_and_bad_windows_get_4xx(client: TestClient, version: int) -> None:
    vectors = codebook()[:4].tolist()
    r = client.post(f"/codebooks/{version}/nearest", json={"vectors": vectors}, headers=READ)
    assert r.status_code == 422
    assert r.json()["detail"] == "at most 3 vectors per request (MBC_API_MAX_NEAREST_VECTORS)"
    r = client.post(f"/codebooks/{version}/nearest", json={"vectors": vectors[:1], "k": 5}, headers=READ)
    assert r.status_code == 422 and r.json()["detail"].startswith(
        "k must be at most 4 (MBC_API_MAX_NEAREST_K"
    )
    r = client.post(f"/codebooks/{version}/nearest", json={"vectors": vectors[:1], "k": 4}, headers=READ)
    assert r.status_code == 200 and len(r.json()["codes"][0]) == 4
    r = client.post("/codebooks/99/nearest", json={"vectors": vectors[:1]}, headers=READ)
    assert r.status_code == 404
    r = client.get("/counts", params={"since": "2024-03-02", "until": "2024-03-01"}, headers=READ)
    assert r.status_code == 400 and r.json()["detail"] == "since must not be after until"
    for params in ({"since": "0001-01-01T00:00:00+05:00"}, {"until": "9999-12-31T23:59:59-05:00"}):
        r = client.get("/counts", params=params, headers=READ)
        assert r.status_code == 400, params
        assert r.json()["detail"].endswith("must lie between 1900-01-01 and 2200-01-01 (UTC)")
    r = client.get("/counts", params={"source": "s" * 201}, headers=READ)
    assert r.status_code == 422 and "source" in r.json()["detail"]
