"""`mbc train` and the registration of `mbc synth` (:mod:`learner.data.synth.cli`), `mbc eval`
(:mod:`learner.eval.cli`) and `mbc pretrain-amortizer` (:mod:`learner.pretraining.cli`).

Heavy imports (torch, transformers) happen inside the commands so that `mbc --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from corpora.formats import QAFormat
from learner.cli_options import (
    CodeCombineOption,
    CodeCosine,
    CodeDim,
    CodesPerVector,
    code_space_of,
    with_code_space,
)
from learner.data.synth.cli import synth
from learner.eval.cli import FORMAT_HELP, evaluate
from learner.keys.cli import train_keys
from learner.model.config import MemoryQuery, TrainMemoryMode
from learner.model.presets import PRESETS
from learner.pretraining.cli import pretrain_amortizer
from learner.settings import setup_learner as _setup

PRESET_HELP = f"Model preset: {', '.join(PRESETS)}."
Init = Literal["scratch", "pretrained"]
MixedPrecision = Literal["auto", "no", "bf16"]
CodebookUpdate = Literal["gradient", "ema"]  # ModelConfig.codebook_update


def _format_breakdown(title: str, rows: list[tuple[str, int]]) -> str:
    lines = [f"trainable parameters — {title}"]
    lines += [f"  {name:<30}{count:>16,}" for name, count in rows]
    counts = dict(rows)
    lines.append("bytes in bf16 (2 per parameter)")
    for label, key in (("trainable (checkpoint)", "trainable total"), ("frozen base LM", "frozen base LM")):
        lines.append(f"  {label:<30}{2 * counts[key] / 2**20:>14.1f} MiB")
    return "\n".join(lines)


def _breakdown_for_preset(name: str) -> str:
    from learner.model.build import build_on_meta, param_breakdown
    from learner.model.presets import get_preset

    model = build_on_meta(get_preset(name).model)
    return _format_breakdown(f"{name} (config shapes, meta device)", param_breakdown(model).rows())


def _train_overrides(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def train(
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "tiny",
    init: Annotated[
        Init, typer.Option(help="pretrained (HF names or local paths) or scratch (random weights).")
    ] = "scratch",
    train_data: Annotated[
        Path | None,
        typer.Option(
            "--train", "--train-data", help="Training QA file. [default: none; required unless --dry-run]"
        ),
    ] = None,
    val_data: Annotated[
        Path | None,
        typer.Option(
            "--val", "--val-data", help="Validation QA file. [default: none; required unless --dry-run]"
        ),
    ] = None,
    data_format: Annotated[QAFormat, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    documents: Annotated[
        Path | None,
        typer.Option(help="Documents file for --train (StreamingQA JSONL, ArchivalQA). [default: none]"),
    ] = None,
    val_documents: Annotated[
        Path | None, typer.Option(help="Documents file for --val. [default: none]")
    ] = None,
    lm_corpus: Annotated[
        Path | None, typer.Option(help="QA file whose texts pretrain a from-scratch base LM. [default: none]")
    ] = None,
    base_lm: Annotated[
        Path | None,
        typer.Option(help="Local trained base LM (+ tokenizer) to use instead. [default: the preset's]"),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Run folder. [default: RUNS_DIR/PRESET-MEMORY; RUNS_DIR is runs, MBC_RUNS_DIR]"),
    ] = None,
    memory: Annotated[
        TrainMemoryMode,
        typer.Option(
            help="compressed (MBC), full (MAC baseline), none (closed-book baseline: KV-LoRA on the question "
            "alone) or paragraph (KV-LoRA with the gold paragraph in the prompt: the ceiling)."
        ),
    ] = "compressed",
    oracle_fraction: Annotated[
        float | None,
        typer.Option(
            help="Share of training questions whose memory is only their own document (the others: "
            "the whole batch). [default: 0]"
        ),
    ] = None,
    freeze_writer: Annotated[
        bool,
        typer.Option(
            help="Keep the memory's writer (amortizer and codebook) as --init-from left it; only the "
            "reading side (aggregator, question encoder, prefix, KV-LoRA) learns."
        ),
    ] = False,
    codes_per_vector: CodesPerVector = None,
    code_dim: CodeDim = None,
    code_cosine: CodeCosine = None,
    code_combine: CodeCombineOption = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs. [default: the preset's]")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Documents with gradients per micro-batch. [default: the preset's]")
    ] = None,
    grad_accum: Annotated[
        int | None, typer.Option(help="Micro-batches per optimizer step. [default: the preset's]")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate. [default: the preset's]")] = None,
    backprop_fraction: Annotated[
        float | None, typer.Option(help="MAC backprop dropout fraction (0, 1]. [default: the preset's]")
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="Early-stopping patience in evaluations (-1 disables). [default: the preset's]"),
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option(help="Evaluate every N optimizer steps. [default: each epoch]")
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(help="Stop (saving `last`) after this many optimizer steps. [default: no limit]"),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            help="Stop in time to save `last` within this many minutes of wall-clock time. [default: no limit]"
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed. [default: the preset's]")] = None,
    retrieval_warmup: Annotated[
        int | None,
        typer.Option(help="Retrieval warm-up steps (random-init encoders). [default: the preset's]"),
    ] = None,
    retrieval_warmup_lr: Annotated[
        float | None, typer.Option(help="Adam learning rate of the retrieval warm-up. [default: 1e-3]")
    ] = None,
    lm_pretrain_epochs: Annotated[
        int | None, typer.Option(help="Epochs of base-LM pretraining on --lm-corpus. [default: the preset's]")
    ] = None,
    codebook_update: Annotated[
        CodebookUpdate | None,
        typer.Option(help="gradient (the paper) or ema (EMA k-means codes). [default: the preset's]"),
    ] = None,
    lora_r: Annotated[
        int | None, typer.Option(help="Rank of the answering side's KV-LoRA. [default: the preset's]")
    ] = None,
    lora_last_n: Annotated[
        int | None,
        typer.Option(
            help="KV-LoRA on the last N layers of the base LM (all: its layer count). [default: the preset's]"
        ),
    ] = None,
    memory_query: Annotated[
        MemoryQuery | None,
        typer.Option(
            help="What the aggregator's query reads: question (MAC/MBC) or reconstruct (amortizer "
            "pretraining's fixed query: the prefix restates the memory, the LM reads the question in its "
            "prompt; train with --oracle-fraction 1). [default: the preset's]"
        ),
    ] = None,
    tokenizer_vocab_size: Annotated[
        int | None, typer.Option(help="Vocabulary size of a from-scratch tokenizer. [default: the preset's]")
    ] = None,
    mixed_precision: Annotated[MixedPrecision, typer.Option(help="auto (bf16 on GPU), no or bf16.")] = "auto",
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --run-dir from its `last` checkpoint.")
    ] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start from the weights of this checkpoint (or run folder: its `last`), e.g. "
            "`mbc pretrain-amortizer`'s; optimizer and schedule start afresh. [default: none]"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Only print the configuration and parameter breakdown.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    trace_batches: Annotated[
        bool,
        typer.Option(
            help="Debugging: each process appends the example ids of every micro-batch it trains on "
            "to RUN_DIR/trace/rankR.jsonl."
        ),
    ] = False,
) -> None:
    """Meta-train an MBC (or MAC) model; checkpoints and metrics.jsonl go to the run folder.

    Several processes: `torchrun --nproc_per_node N $(which mbc) train ...` (gloo on CPU, NCCL on
    GPUs). N processes with --grad-accum A take the same steps as one process with N·A; a run
    resumed on another number of processes keeps its micro-batches per step. (`accelerate launch
    --cpu --num_processes N` starts a single process unless given an MPI hostfile.)
    """
    from learner.errors import ConfigValueError
    from learner.model.presets import get_preset

    settings = _setup()
    if preset not in PRESETS:
        raise ConfigValueError(f"--preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    p = get_preset(preset)
    if dry_run:
        typer.echo(_breakdown_for_preset(preset))
        return
    import torch

    if mixed_precision == "auto":
        mixed_precision = "bf16" if torch.cuda.is_available() else "no"
    tcfg = dataclasses.replace(
        p.train,
        memory=memory,
        mixed_precision=mixed_precision,
        **_train_overrides(
            epochs=epochs,
            batch_size=batch_size,
            grad_accum=grad_accum,
            lr=lr,
            backprop_fraction=backprop_fraction,
            oracle_fraction=oracle_fraction,
            freeze_writer=freeze_writer or None,
            eval_every_steps=eval_every,
            seed=seed,
            retrieval_warmup_steps=retrieval_warmup,
            retrieval_warmup_lr=retrieval_warmup_lr,
            lm_pretrain_epochs=lm_pretrain_epochs,
            tokenizer_vocab_size=tokenizer_vocab_size,
        ),
    )
    mcfg = with_code_space(p.model, codes_per_vector, code_dim, code_cosine, code_combine)
    if init_from is not None and not resume:
        from learner.checkpoint import read_meta, resolve_checkpoint

        mcfg = code_space_of(read_meta(resolve_checkpoint(init_from, "last")).model, mcfg)
    if codebook_update is not None:
        mcfg = dataclasses.replace(mcfg, codebook_update=codebook_update)
    if memory_query is not None:
        mcfg = dataclasses.replace(mcfg, memory_query=memory_query).validate()
    if lora_r is not None or lora_last_n is not None:
        mcfg = dataclasses.replace(
            mcfg,
            lora_r=lora_r or mcfg.lora_r,
            lora_alpha=2 * (lora_r or mcfg.lora_r),  # alpha = 2r, as every preset
            lora_last_n=mcfg.lora_last_n if lora_last_n is None else lora_last_n,
        ).validate()
    if patience is not None:
        tcfg = dataclasses.replace(tcfg, patience=None if patience < 0 else patience)
    tcfg.validate()
    if train_data is None or val_data is None:
        raise ConfigValueError("--train and --val are required (or use --dry-run)")
    from corpora.qa import load_dataset
    from learner.model.build import param_breakdown
    from learner.training.spec import RunSpec
    from learner.training.trainer import Trainer

    train_ds = load_dataset(train_data, data_format, documents)
    val_ds = load_dataset(val_data, data_format, val_documents)
    corpus = load_dataset(lm_corpus, data_format) if lm_corpus is not None else None
    run_dir = run_dir or settings.runs_dir / f"{preset}-{memory}"
    spec = RunSpec(
        run_dir,
        mcfg,
        tcfg,
        init,
        str(base_lm) if base_lm else None,
        corpus,
        trace_batches=trace_batches,
        init_from=init_from,
    )
    trainer = Trainer(spec, train_ds, val_ds, resume=resume, progress=progress)
    main = trainer.acc.is_main_process  # several processes: one report
    model = trainer.mbc_model
    if main:
        typer.echo(_format_breakdown(f"{preset} ({init})", param_breakdown(model).rows()))
    result = trainer.run(max_steps=max_steps, max_minutes=max_minutes)
    if not main:
        return
    out = {
        "run_dir": str(run_dir),
        **dataclasses.asdict(result.state),
        "last_validation": result.last_metrics,
    }
    typer.echo(json.dumps(out, default=str))


def register(app: typer.Typer) -> None:
    """Add the learner's commands to the root `mbc` app."""
    app.command("synth")(synth)
    app.command("train")(train)
    app.command("pretrain-amortizer")(pretrain_amortizer)
    app.command("eval")(evaluate)
    app.command("train-keys")(train_keys)
