"""Command-line options shared by `mbc train` and `mbc pretrain-amortizer`: the quantizer's shape."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from learner.model.config import CodeCombine, ModelConfig

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
CodeCombineOption = Annotated[
    CodeCombine | None,
    typer.Option(
        "--code-combine",
        help="rows: every code decodes to a memory row (K·G rows per document, exact counts aggregation); "
        "sum: a vector's G codes add up to one row (product quantization; with G·d = D it starts as plain "
        "PQ of a float-memory checkpoint's vectors; read with --oracle or --retrieve). Default: the preset's.",
        show_default=False,
    ),
]


def with_code_space(
    cfg: ModelConfig,
    codes_per_vector: int | None,
    code_dim: int | None,
    cosine: bool | None,
    combine: CodeCombine | None = None,
) -> ModelConfig:
    """``cfg`` with the quantizer options given on the command line (None keeps the preset's)."""
    changes: dict[str, object] = {}
    if combine is not None:
        changes["code_combine"] = combine
    if codes_per_vector is not None:
        changes["codes_per_vector"] = codes_per_vector
    if code_dim is not None:
        changes["code_dim"] = code_dim or None
    if cosine is not None:
        changes["code_cosine"] = cosine
    return dataclasses.replace(cfg, **changes).validate()  # type: ignore[arg-type]


CODE_FIELDS = (
    "codebook_size",
    "codes_per_vector",
    "code_dim",
    "code_standardize",
    "code_cosine",
    "code_combine",
)


def code_space_of(source: ModelConfig, cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with the quantizer of ``source`` (a run started with --init-from takes its checkpoint's)."""
    return dataclasses.replace(cfg, **{f: getattr(source, f) for f in CODE_FIELDS})
