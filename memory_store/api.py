"""The reader service (``mbc store serve``): the memory over HTTP, read-mostly.

Every endpoint but ``/health`` needs ``Authorization: Bearer <token>``. OpenAPI is at
``/openapi.json`` (browsable at ``/docs``). Errors are JSON ``{"detail": "<one line>"}`` with 4xx for
bad requests (401 token, 404 unknown version or document, 400/422 bad parameters) and 503 when the
database cannot be reached.

Codebooks are served in codec codebook format 1 (see :mod:`memory_store.codec`) as
``application/vnd.mbc.codebook``: ``b"MBCB"``, uint16 format, uint32 C, uint32 D, uint8 dtype
(1 = float32, 2 = float16), 3 zero bytes, then C x D little-endian values, row-major.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

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
_bearer = HTTPBearer(auto_error=False, description="the store's API token (MBC_API_TOKEN)")
_STATUS = {UnknownCodebookVersion: 404, UnknownDocument: 404, InvalidRecord: 400}


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
    codes_hex: str = Field(description="packed codes (codec code format 1), hex")
    indices: list[int] = Field(description="the K code indices, decoded")
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None


class NearestIn(BaseModel):
    vectors: list[list[float]] = Field(description="N query vectors of the codebook's dimension D")
    k: int = Field(1, ge=1, description="nearest codes per vector")


class NearestOut(BaseModel):
    codebook_version: int
    codes: list[list[int]]
    distances: list[list[float]] = Field(description="squared L2 distances")


def create_app(store: MemoryStore, token: str) -> FastAPI:
    """The reader service over ``store``; requests must carry ``token`` as a bearer token."""
    if not token:
        raise ValueError("the reader service needs a non-empty API token")
    app = FastAPI(
        title="mbc-stream memory store",
        version="1",
        description="Read the compressed memory: stats, codebooks, exact code counts for any slice, documents.",
    )

    def authorized(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), None)
        if status is None:
            status = 503 if isinstance(exc, DatabaseUnreachable | StoreBusy) else 500
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{' '.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    @app.get("/health", tags=["service"], summary="Liveness and database reachability (no token needed).")
    def health() -> JSONResponse:
        try:
            with store.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as e:
            return JSONResponse({"status": "unavailable", "detail": type(e).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "backend": store.backend})

    auth = [Depends(authorized)]
    _add_read_routes(app, store, auth)
    _add_document_routes(app, store, auth)
    return app


def _add_read_routes(app: FastAPI, store: MemoryStore, auth: list[params.Depends]) -> None:
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
        source: Annotated[str | None, Query(description="only documents of this source")] = None,
        version: Annotated[int | None, Query(ge=1, description="only this codebook version")] = None,
    ) -> CountsOut:
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
        index = store.code_index(version)
        if not body.vectors:
            return NearestOut(codebook_version=version, codes=[], distances=[])
        distances, codes = index.search(body.vectors, body.k)  # (N, k) each
        return NearestOut(codebook_version=version, codes=codes.tolist(), distances=distances.tolist())


def _add_document_routes(app: FastAPI, store: MemoryStore, auth: list[params.Depends]) -> None:
    @app.get(
        "/documents/{doc_id:path}", tags=["documents"], dependencies=auth, summary="A document and its codes."
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
        dependencies=auth,
        status_code=204,
        summary="Delete a document; its codes leave the counts in the same transaction.",
    )
    def delete(doc_id: str) -> Response:
        if not store.delete_document(doc_id):
            raise UnknownDocument(f"document {doc_id!r} is not stored")
        return Response(status_code=204)


def _codebook_out(info: CodebookInfo) -> CodebookOut:
    return CodebookOut(
        version=info.version,
        parent_version=info.parent_version,
        num_codes=info.num_codes,
        dim=info.dim,
        dtype=info.dtype,
        vectors_sha256=info.vectors_sha256,
        created_at=info.created_at,
        perplexity=info.health.perplexity,
        resets=info.health.resets,
        dead_codes=info.health.dead_codes,
    )
