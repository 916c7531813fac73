"""The reader service (``mbc store serve``): the memory over HTTP, read-mostly.

Every endpoint but ``/health`` needs ``Authorization: Bearer <token>`` of a scope
(:mod:`infra.auth`): the *read* token opens stats, counts, codebooks, nearest and documents; the
*admin* token opens those and ``DELETE /documents/{id}`` and ``POST /codebooks/{v}/reindex``. 401
for a missing or wrong token, 403 for a read token on an admin route. No request does work that
grows with the memory: counts come from the per-day count tables (O(days x sources x C) rows plus
the documents of at most two partial UTC days at the window's edges, see
:mod:`memory_store.counts`), ``nearest`` is capped (:class:`ApiLimits`), windows are validated
(:mod:`infra.http`). OpenAPI is at ``/openapi.json``
(browsable at ``/docs``). Errors are JSON ``{"detail": "<one line>"}`` with 4xx for bad requests
(401/403 token, 404 unknown version or document, 400/422 bad parameters) and 503 when the database
cannot be reached.

Codebooks are served in codec codebook format 1 (see :mod:`memory_store.codec`) as
``application/vnd.mbc.codebook``: ``b"MBCB"``, uint16 format, uint32 C, uint32 D, uint8 dtype
(1 = float32, 2 = float16), 3 zero bytes, then C x D little-endian values, row-major.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, params
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr

from infra.auth import ScopedTokens
from infra.http import limit_body_size, one_line_validation_errors, window_problem
from memory_store.errors import (
    DatabaseUnreachable,
    InvalidRecord,
    StoreBusy,
    StoreError,
    UnknownCodebookVersion,
    UnknownDocument,
)
from memory_store.records import CodebookInfo
from memory_store.store import MemoryStore

CODEBOOK_MEDIA_TYPE = "application/vnd.mbc.codebook"
READ, ADMIN = "read", "admin"
_STATUS = {UnknownCodebookVersion: 404, UnknownDocument: 404, InvalidRecord: 400}

MAX_BODY_BYTES = 16 * 1024 * 1024  # nearest: up to 1,024 query vectors of a few hundred floats as JSON


class StatsOut(BaseModel):
    backend: str
    schema_revision: str | None
    documents: int
    sources: int
    codebook_versions: int
    code_bytes: int = Field(description="bytes of packed codes stored")
    float_equivalent_bytes: int = Field(
        description="bytes a float32 memory (K x D x 4 per document) would need"
    )
    compression_ratio: float | None
    first_ingested_at: datetime | None
    last_ingested_at: datetime | None


class CountOut(BaseModel):
    codebook_version: int
    code: int
    count: int


class CountsOut(BaseModel):
    since: datetime | None
    until: datetime | None
    source: str | None
    codebook_version: int | None
    total: int = Field(description="sum of all counts: stored codes in the slice")
    counts: list[CountOut]


class CodebookOut(BaseModel):
    version: int
    parent_version: int | None
    num_codes: int
    dim: int
    groups: int = Field(description="G: groups of num_codes / G codes; code format 2 packs by them")
    dtype: str
    vectors_sha256: str
    created_at: datetime
    perplexity: float | None
    resets: int | None
    dead_codes: int | None


class DocumentOut(BaseModel):
    id: str
    source: str
    url: str | None
    title: str | None
    published_at: datetime
    ingested_at: datetime
    content_sha256: str
    k: int
    codebook_version: int
    code_format: int
    codes_hex: str = Field(description="packed codes (codec code format `code_format`), hex")
    indices: list[int] = Field(description="the K code indices, decoded")
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None


@dataclass(frozen=True)
class ApiLimits:
    """Caps on the work one request may ask for (settings ``api_max_nearest_*``)."""

    max_nearest_vectors: int = 1024
    max_nearest_k: int = 64


_Finite = Annotated[float, Field(allow_inf_nan=False)]


class NearestIn(BaseModel):
    vectors: list[Annotated[list[_Finite], Field(max_length=65536)]] = Field(
        description="N query vectors of the codebook's dimension D (N <= MBC_API_MAX_NEAREST_VECTORS)"
    )
    k: int = Field(1, ge=1, description="nearest codes per vector (<= MBC_API_MAX_NEAREST_K and C)")


class NearestOut(BaseModel):
    codebook_version: int
    codes: list[list[int]]
    distances: list[list[float]] = Field(description="squared L2 distances")


def reader_tokens(read_token: SecretStr | str | None, admin_token: SecretStr | str | None) -> ScopedTokens:
    """The reader service's scopes: ``read``, and ``admin`` (which also reads)."""
    return ScopedTokens({READ: read_token, ADMIN: admin_token}, implies={ADMIN: frozenset({READ})})


def create_app(
    store: MemoryStore,
    read_token: SecretStr | str | None = None,
    admin_token: SecretStr | str | None = None,
    limits: ApiLimits | None = None,
) -> FastAPI:
    """The reader service over ``store``; at least one of the two tokens must be set."""
    tokens = reader_tokens(read_token, admin_token)
    if tokens.open:
        raise ValueError("the reader service needs a read or an admin token")
    app = FastAPI(
        title="mbc-stream memory store",
        version="1",
        description="Read the compressed memory: stats, codebooks, exact code counts for any slice, documents.",
    )

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), None)
        if status is None:
            status = 503 if isinstance(exc, DatabaseUnreachable | StoreBusy) else 500
        return JSONResponse({"detail": str(exc)}, status_code=status)

    one_line_validation_errors(app)
    limit_body_size(app, MAX_BODY_BYTES)

    @app.get("/health", tags=["service"], summary="Liveness and database reachability (no token needed).")
    def health() -> JSONResponse:
        try:
            with store.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as e:
            return JSONResponse({"status": "unavailable", "detail": type(e).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "backend": store.backend})

    read, admin = [Depends(tokens.require(READ))], [Depends(tokens.require(ADMIN))]
    _add_read_routes(app, store, read, limits or ApiLimits())
    _add_document_routes(app, store, read, admin)
    return app


def _add_read_routes(app: FastAPI, store: MemoryStore, auth: list[params.Depends], limits: ApiLimits) -> None:
    @app.get("/stats", tags=["memory"], dependencies=auth, summary="Size of the memory.")
    def stats() -> StatsOut:
        s = store.stats()
        return StatsOut(**{f: getattr(s, f) for f in StatsOut.model_fields})

    @app.get("/counts", tags=["memory"], dependencies=auth, summary="Exact code counts for a slice.")
    def counts(
        since: Annotated[
            datetime | None, Query(description="published_at >= since (ISO 8601; naive = UTC)")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="published_at < until (ISO 8601; naive = UTC)")
        ] = None,
        source: Annotated[
            str | None, Query(max_length=200, description="only documents of this source")
        ] = None,
        version: Annotated[int | None, Query(ge=1, description="only this codebook version")] = None,
    ) -> CountsOut:
        if problem := window_problem(since, until):
            raise HTTPException(400, problem)
        if version is not None:
            store.codebook_info(version)  # 404 when unknown
        rows = store.counts(since=since, until=until, source=source, version=version)
        return CountsOut(
            since=since,
            until=until,
            source=source,
            codebook_version=version,
            total=sum(r.n for r in rows),
            counts=[CountOut(codebook_version=r.codebook_version, code=r.code, count=r.n) for r in rows],
        )

    @app.get("/codebooks", tags=["codebooks"], dependencies=auth, summary="Every codebook version.")
    def codebooks() -> list[CodebookOut]:
        return [_codebook_out(i) for i in store.codebook_versions()]

    @app.get(
        "/codebooks/{version}",
        tags=["codebooks"],
        dependencies=auth,
        summary="A codebook's vectors in codec codebook format 1.",
        response_class=Response,
        responses={
            200: {
                "content": {CODEBOOK_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                "description": "18-byte header (MBCB, format, C, D, dtype, 3 zero bytes) then C x D little-endian values.",
            },
            404: {"description": "unknown version"},
        },
    )
    def codebook(version: int) -> Response:
        info = store.codebook_info(version)
        headers = {
            "X-Codebook-Version": str(info.version),
            "X-Codebook-Num-Codes": str(info.num_codes),
            "X-Codebook-Dim": str(info.dim),
            "X-Codebook-Groups": str(info.groups),
            "ETag": f'"{info.vectors_sha256}"',
        }
        return Response(store.codebook_blob(version), media_type=CODEBOOK_MEDIA_TYPE, headers=headers)

    @app.post(
        "/codebooks/{version}/nearest",
        tags=["codebooks"],
        dependencies=auth,
        summary="Nearest codes of vectors (exact, FAISS).",
    )
    def nearest(version: int, body: NearestIn) -> NearestOut:
        if len(body.vectors) > limits.max_nearest_vectors:
            raise HTTPException(
                422,
                f"at most {limits.max_nearest_vectors} vectors per request (MBC_API_MAX_NEAREST_VECTORS)",
            )
        num_codes = store.codebook_info(version).num_codes  # 404 when unknown
        if body.k > min(limits.max_nearest_k, num_codes):
            raise HTTPException(
                422,
                f"k must be at most {min(limits.max_nearest_k, num_codes)} (MBC_API_MAX_NEAREST_K "
                f"= {limits.max_nearest_k}; the codebook has {num_codes} codes)",
            )
        index = store.code_index(version)
        if not body.vectors:
            return NearestOut(codebook_version=version, codes=[], distances=[])
        distances, codes = index.search(body.vectors, body.k)  # (N, k) each
        return NearestOut(codebook_version=version, codes=codes.tolist(), distances=distances.tolist())


def _add_document_routes(
    app: FastAPI, store: MemoryStore, read: list[params.Depends], admin: list[params.Depends]
) -> None:
    @app.get(
        "/documents/{doc_id:path}", tags=["documents"], dependencies=read, summary="A document and its codes."
    )
    def document(doc_id: str) -> DocumentOut:
        d = store.document(doc_id)
        if d is None:
            raise UnknownDocument(f"document {doc_id!r} is not stored")
        return DocumentOut(
            id=d.id,
            source=d.source,
            url=d.url,
            title=d.title,
            published_at=d.published_at,
            ingested_at=d.ingested_at,
            content_sha256=d.content_sha256,
            k=d.k,
            codebook_version=d.codebook_version,
            code_format=d.code_format,
            codes_hex=d.codes.hex(),
            indices=list(d.indices),
            source_topic=d.position.topic if d.position else None,
            source_partition=d.position.partition if d.position else None,
            source_offset=d.position.offset if d.position else None,
        )

    @app.delete(
        "/documents/{doc_id:path}",
        tags=["documents"],
        dependencies=admin,
        status_code=204,
        summary="Delete a document; its codes leave the counts in the same transaction (admin scope).",
    )
    def delete(doc_id: str) -> Response:
        if not store.delete_document(doc_id):
            raise UnknownDocument(f"document {doc_id!r} is not stored")
        return Response(status_code=204)

    @app.post(
        "/codebooks/{version}/reindex",
        tags=["codebooks"],
        dependencies=admin,
        summary="Rebuild the FAISS index of a codebook version from the database (admin scope).",
    )
    def reindex(version: int) -> CodebookOut:
        info = store.codebook_info(version)  # 404 when unknown
        store.indexes.rebuild(version)  # O(C x D): one codebook, not the memory
        return _codebook_out(info)


def _codebook_out(info: CodebookInfo) -> CodebookOut:
    return CodebookOut(
        version=info.version,
        parent_version=info.parent_version,
        num_codes=info.num_codes,
        dim=info.dim,
        groups=info.groups,
        dtype=info.dtype,
        vectors_sha256=info.vectors_sha256,
        created_at=info.created_at,
        perplexity=info.health.perplexity,
        resets=info.health.resets,
        dead_codes=info.health.dead_codes,
    )
