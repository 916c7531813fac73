"""Settings of the memory store and its reader service (``[store]`` table, ``MBC_*`` variables)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from infra.settings import DatabaseSettings, ServiceSettings


class StoreSettings(ServiceSettings):
    """Where the memory lives (database, FAISS indexes) and how the reader service listens."""

    section: ClassVar[str] = "store"

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    index_dir: Path | None = Field(
        None,
        description="directory of the FAISS indexes; default: next to the SQLite file, or mbc-data/faiss",
    )
    api_read_token: SecretStr | None = Field(
        None,
        description="bearer token of the reader service's read scope: stats, counts, codebooks, "
        "nearest, documents",
    )
    api_admin_token: SecretStr | None = Field(
        None,
        description="bearer token of the reader service's admin scope: everything read opens, plus "
        "DELETE /documents/{id} and POST /codebooks/{v}/reindex",
    )
    api_max_nearest_vectors: int = Field(
        1024, ge=1, le=1_000_000, description="most query vectors one POST /codebooks/{v}/nearest takes"
    )
    api_max_nearest_k: int = Field(
        64, ge=1, le=100_000, description="largest k (nearest codes per vector) one request may ask for"
    )
    api_host: str = Field("127.0.0.1", description="address the reader service binds to")
    api_port: int = Field(8600, ge=1, le=65535, description="port the reader service listens on")
    auto_migrate: bool = Field(
        False, description="upgrade the schema on open instead of failing with 'migration needed'"
    )
