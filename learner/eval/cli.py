"""`mbc eval`: online-adaptation evaluation from the shell (:mod:`learner.eval.online`).

Registered by :func:`learner.cli.register`; heavy imports (torch) happen inside the command.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from corpora.formats import QAFormat
from infra.cli import setting_help
from learner.ask.settings import Aggregation
from learner.settings import Device, LearnerSettings
from learner.settings import setup_learner as _setup

FORMAT_HELP = "Dataset format (auto: from the extension and the CSV header)."
EvalMemory = Literal["compressed", "full", "none", "paragraph"]
Decoding = Literal["greedy", "paper"]
Retriever = Literal["keys", "bm25", "sketch"]  # learner.eval.online.RETRIEVERS


def evaluate(
    checkpoint: Annotated[
        Path, typer.Option(help="Checkpoint folder, or a run folder (uses checkpoints/best-loss).")
    ],
    data: Annotated[Path, typer.Option(help="Test QA file.")],
    data_format: Annotated[QAFormat, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    documents: Annotated[
        Path | None, typer.Option(help="Documents file (StreamingQA JSONL, ArchivalQA). [default: none]")
    ] = None,
    num_docs: Annotated[
        int | None, typer.Option(help="Bank size: the first N documents. [default: all]")
    ] = None,
    memory: Annotated[
        EvalMemory,
        typer.Option(
            help="compressed, full, none (base LM alone) or paragraph (gold paragraph in the prompt, KV-LoRA, no memory)."
        ),
    ] = "compressed",
    aggregation: Annotated[
        Aggregation, typer.Option(help="counts (exact, O(distinct codes)) or naive (every stored code).")
    ] = "counts",
    oracle: Annotated[
        bool,
        typer.Option(
            "--oracle/--no-oracle",
            help="--oracle: each question's memory is its own document only (what compression keeps); "
            "--no-oracle: the whole bank (what a user gets).",
        ),
    ] = False,
    decoding: Annotated[
        Decoding, typer.Option(help="greedy, or paper (12 beams, 4 groups, diversity 10).")
    ] = "greedy",
    batch_size: Annotated[int, typer.Option(help="Documents / questions per batch.")] = 16,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for STEM_questions.csv and STEM_summary.json. [default: CHECKPOINT/eval]"),
    ] = None,
    device: Annotated[
        Device | None,
        typer.Option(help=setting_help("auto: CUDA when available.", LearnerSettings, "device")),
    ] = None,
    bf16: Annotated[bool, typer.Option("--bf16/--no-bf16", help="bf16 autocast (GPU).")] = False,
    retrieve: Annotated[
        int,
        typer.Option(
            min=0,
            help="Each question's memory: the K bank documents it retrieves (see --retriever); reports "
            "recall_at_k. 0: the whole bank.",
        ),
    ] = 0,
    retriever: Annotated[
        Retriever,
        typer.Option(
            help="How --retrieve ranks the bank: keys (FAISS over the stored documents' keys, as mbc ask "
            "--retrieve; --memory compressed; the checkpoint's learned keys when `mbc train-keys` made "
            "them), bm25 (the documents' text; any memory) or sketch (a 2 KB hashed BM25 sketch of each "
            "document's text, the key a store could keep instead of the text; any memory)."
        ),
    ] = "keys",
    base_lm: Annotated[
        str | None,
        typer.Option(
            help="Where the checkpoint's base LM is now (e.g. a .gguf path); must be the same file. "
            "[default: where the checkpoint says]"
        ),
    ] = None,
) -> None:
    """Online adaptation: store the test documents in a bank, answer every question, report EM/F1, bytes, ms."""
    import torch

    from corpora.qa import load_dataset
    from learner.checkpoint import load_checkpoint, resolve_checkpoint
    from learner.checkpoint_option import require_checkpoint
    from learner.eval.online import DecodeConfig, online_eval, write_report
    from learner.keys.head import load_key_head

    settings = _setup()
    choice = device or settings.device
    dev = torch.device(
        "cuda" if choice == "auto" and torch.cuda.is_available() else ("cpu" if choice == "auto" else choice)
    )
    path = require_checkpoint(checkpoint, True)
    ds = load_dataset(data, data_format, documents)  # a wrong file is reported before the model loads
    model, tokenizers, meta = load_checkpoint(path, dev, lm_source=base_lm)
    key_head = load_key_head(resolve_checkpoint(path), dev) if retrieve and retriever == "keys" else None
    dec = (
        DecodeConfig.paper()
        if decoding == "paper"
        else DecodeConfig(max_new_tokens=meta.model.max_answer_tokens)
    )
    if decoding == "paper":
        dec = dataclasses.replace(dec, max_new_tokens=meta.model.max_answer_tokens)
    report = online_eval(
        model,
        tokenizers,
        ds,
        num_docs=num_docs,
        memory=memory,
        aggregation=aggregation,
        decode=dec,
        batch_size=batch_size,
        device=dev,
        bf16=bf16,
        preset=meta.model.preset,
        oracle=oracle,
        retrieve=retrieve,
        retriever=retriever,
        key_head=key_head,
    )
    report.summary["checkpoint"] = str(checkpoint)
    report.summary["from_scratch"] = meta.init == "scratch"
    out_dir = out or Path(checkpoint) / "eval"
    bm25 = retriever if retriever in ("bm25", "sketch") else ""
    bank = "oracle" if oracle else (f"retrieve{retrieve}{bm25}" if retrieve else aggregation)
    stem = f"{memory}-{bank}-{report.summary['num_docs']}docs-{dec.name}"
    csv_path, json_path = write_report(report, out_dir, stem)
    report.summary["questions_csv"], report.summary["summary_json"] = str(csv_path), str(json_path)
    typer.echo(json.dumps(report.summary, indent=2))
