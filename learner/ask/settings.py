"""Settings of the question-answering reader (environment ``MBC_*``, TOML table ``[ask]``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, SecretStr

from infra.settings import DatabaseSettings, ServiceSettings
from learner.settings import Device

if TYPE_CHECKING:
    from infra.auth import ScopedTokens

ASK_SCOPE = "ask"  # the one scope of POST /ask
Aggregation = Literal["counts", "naive"]  # how a memory slice is aggregated (learner.model.memory)
Retriever = Literal["keys", "sketch"]  # what --retrieve ranks: keys from the codes, or text sketches
MAX_RETRIEVE = 1024  # most documents one question may retrieve (the aggregation then reads K·G codes each)


def qa_tokens(token: str | None) -> ScopedTokens:
    """The QA service's tokens: ``ask`` (open when ``token`` is None or empty)."""
    from infra.auth import ScopedTokens  # FastAPI: not for every settings import

    return ScopedTokens({ASK_SCOPE: token})


class AskSettings(ServiceSettings):
    """Which checkpoint answers, from which store, and how the /ask endpoint is served."""

    section: ClassVar[str] = "ask"
    database: DatabaseSettings = DatabaseSettings()
    checkpoint: Path | None = Field(None, description="trained checkpoint directory")
    device: Device = "auto"
    aggregation: Aggregation = Field(
        "counts", description="how `mbc ask` aggregates the memory slice (POST /ask: always counts)"
    )
    retrieve: int = Field(
        0,
        ge=0,
        le=MAX_RETRIEVE,
        description="answer from the top-k documents of the slice for the question (FAISS over "
        "document keys); 0: the whole slice",
    )
    retriever: Retriever = Field(
        "keys",
        description="what retrieval ranks by: keys (from each document's codes; a checkpoint's learned "
        "keys when `mbc train-keys` made them) or sketch (each document's text sketch, written by the "
        "learner with its codes: found by the question's words)",
    )
    cite: int = Field(8, ge=1, le=100, description="documents a whole-slice answer (retrieve 0) cites")
    max_new_tokens: int = Field(16, ge=1, le=256)
    qa_token: SecretStr | None = Field(
        None, description="bearer token required by /ask; without one ask-serve listens on loopback only"
    )
    qa_host: str = "127.0.0.1"
    qa_port: int = Field(8700, ge=0, le=65535)
    qa_max_question_chars: int = Field(2000, ge=1, le=100_000, description="longest question /ask takes")
    qa_max_concurrent: int = Field(
        4,
        ge=1,
        le=256,
        description="/ask requests admitted at once (running or waiting for the model); 429 beyond",
    )
    qa_request_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="seconds until an /ask request gets 503 instead of an answer"
    )
