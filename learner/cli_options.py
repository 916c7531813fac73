"""What the learner's commands share: the start-up every command runs (:func:`start_command`) and the
quantizer's shape options of `mbc train` and `mbc pretrain-amortizer`."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Annotated

import typer

from learner.model.config import ModelConfig

if TYPE_CHECKING:
    from learner.settings import LearnerSettings


def start_command(service: str = "learner") -> LearnerSettings:
    """Settings, logging, offline hub and thread count: what every learner command does first."""
    from infra.logging import configure_logging
    from infra.settings import load_settings
    from learner.settings import LearnerSettings

    settings = load_settings(LearnerSettings)
    configure_logging(service, settings.log_level, settings.log_json)
    if settings.hf_offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if settings.num_threads:
        import torch

        torch.set_num_threads(settings.num_threads)
    return settings


CodesPerVector = Annotated[
    int | None,
    typer.Option(
        help="Codes per context vector (product quantization: G groups of C codes; bytes per document "
        "grow with it). Default: the preset's."
    ),
]
CodeDim = Annotated[
    int | None,
    typer.Option(
        help="Size d of each group's code-space vectors (a learned projection of the standardized context "
        "vector); 0 quantizes the raw vectors as the papers do. Default: the preset's."
    ),
]
CodeCosine = Annotated[
    bool | None,
    typer.Option(
        "--code-cosine/--no-code-cosine",
        help="l2-normalised code-space vectors and codes. Default: the preset's.",
        show_default=False,
    ),
]


def with_code_space(
    cfg: ModelConfig, codes_per_vector: int | None, code_dim: int | None, cosine: bool | None
) -> ModelConfig:
    """``cfg`` with the quantizer options given on the command line (None keeps the preset's)."""
    changes: dict[str, object] = {}
    if codes_per_vector is not None:
        changes["codes_per_vector"] = codes_per_vector
    if code_dim is not None:
        changes["code_dim"] = code_dim or None
    if cosine is not None:
        changes["code_cosine"] = cosine
    return dataclasses.replace(cfg, **changes).validate()  # type: ignore[arg-type]


CODE_FIELDS = ("codebook_size", "codes_per_vector", "code_dim", "code_standardize", "code_cosine")


def code_space_of(source: ModelConfig, cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with the quantizer of ``source`` (a run started with --init-from takes its checkpoint's)."""
    return dataclasses.replace(cfg, **{f: getattr(source, f) for f in CODE_FIELDS})
