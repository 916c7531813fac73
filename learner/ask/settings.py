"""Settings of the question-answering reader (environment ``MBC_*``, TOML table ``[ask]``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from infra.settings import DatabaseSettings, ServiceSettings


class AskSettings(ServiceSettings):
    """Which checkpoint answers, from which store, and how the /ask endpoint is served."""

    section: ClassVar[str] = "ask"
    database: DatabaseSettings = DatabaseSettings()
    checkpoint: Path | None = Field(None, description="trained checkpoint directory")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    aggregation: Literal["counts", "naive"] = Field(
        "counts", description="how the memory slice is aggregated"
    )
    max_new_tokens: int = Field(16, ge=1, le=256)
    qa_token: SecretStr | None = Field(None, description="bearer token required by the /ask endpoint")
    qa_host: str = "127.0.0.1"
    qa_port: int = Field(8700, ge=0, le=65535)
