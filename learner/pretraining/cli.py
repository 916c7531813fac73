"""`mbc pretrain-amortizer`: self-supervised pretraining of the amortizer on plain text.

Registered by :func:`learner.cli.register`; heavy imports happen inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from corpora.formats import TEXT_FORMATS
from learner.cli_options import CodeCombineOption, CodeCosine, CodeDim, CodesPerVector, with_code_space
from learner.settings import setup_learner

PRESET_HELP = "Model preset (smollm2-135m is the one this was built for; any pretrained-LM preset works)."


def pretrain_amortizer(
    data: Annotated[
        Path, typer.Option(help="Plain texts: a Reuters JSONL, any JSONL with `text`, or SQuAD JSON.")
    ],
    run_dir: Annotated[Path, typer.Option(help="Run folder: metrics.jsonl and checkpoints/last.")],
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "smollm2-135m",
    data_format: Annotated[
        str, typer.Option("--format", help=f"Format of --data: {', '.join(TEXT_FORMATS)}.")
    ] = "reuters",
    base_lm: Annotated[
        str | None,
        typer.Option(help="Base LM: a .gguf path, a local folder or a name (default: the preset's)."),
    ] = None,
    memory: Annotated[
        str,
        typer.Option(help="compressed (through the codebook, as MBC stores codes) or full (float vectors)."),
    ] = "compressed",
    objective: Annotated[
        str, typer.Option(help="reconstruct (autoencode the chunk), continue (the next chunk) or both.")
    ] = "both",
    steps: Annotated[
        int, typer.Option(help="Optimizer steps in total (a resumed run continues to it).")
    ] = 1000,
    batch_size: Annotated[int, typer.Option(help="Text chunks (documents) per step.")] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate (after a linear warm-up).")] = 1e-4,
    warmup_steps: Annotated[int, typer.Option(help="Linear LR warm-up steps.")] = 50,
    doc_tokens: Annotated[
        int | None, typer.Option(help="Tokens per chunk (default: the preset's max_doc_tokens).")
    ] = None,
    cont_tokens: Annotated[int, typer.Option(help="Continuation tokens predicted from the memory.")] = 128,
    log_every: Annotated[
        int, typer.Option(help="Steps between metric records (with the held-out gap).")
    ] = 50,
    eval_chunks: Annotated[int, typer.Option(help="Chunks held out to measure the memory gap.")] = 32,
    kmeans_chunks: Annotated[
        int,
        typer.Option(
            help="Compressed: initialise the codebook by k-means over this many chunks' vectors (0: off)."
        ),
    ] = 1024,
    codes_per_vector: CodesPerVector = None,
    code_dim: CodeDim = None,
    code_cosine: CodeCosine = None,
    code_combine: CodeCombineOption = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start from this checkpoint's weights (a run folder or checkpoint), its quantizer excepted: "
            "e.g. a --memory full run, then --memory compressed quantizes what it learned to write. "
            "Default: none (the preset's fresh adapters)."
        ),
    ] = None,
    max_texts: Annotated[int | None, typer.Option(help="Use only the first N texts of --data.")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop in time to save `last` within this many minutes.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue --run-dir from checkpoints/last, with its settings (only --steps applies)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed (model init, held-out split, chunk order).")] = 42,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Pretrain the amortizer on plain text, in-context-autoencoder style, before meta-training.

    Each text is cut into chunks of --doc-tokens tokens; a chunk is amortized into K vectors
    (quantized by the codebook with --memory compressed), and the frozen base LM with its KV-LoRA,
    reading only the prefix that the model's own aggregation path builds from them (a fixed query
    per task), reconstructs the chunk and/or continues it. Every --log-every steps metrics.jsonl
    gets, for held-out chunks, the loss and token accuracy with the chunk's memory, with a zero
    memory and with another chunk's memory: the gap is what the K vectors carry. The checkpoint
    (checkpoints/last) is in `mbc train`'s format: `mbc train --init-from RUN_DIR ...` starts
    meta-training from it.
    """
    from corpora.texts import load_texts
    from learner.errors import ConfigValueError
    from learner.model.presets import get_preset
    from learner.pretraining.batches import Objective
    from learner.pretraining.objective import PretrainConfig
    from learner.pretraining.run import AmortizerPretrainer

    setup_learner()
    model_cfg = with_code_space(
        get_preset(preset).model, codes_per_vector, code_dim, code_cosine, code_combine
    )
    if memory not in ("compressed", "full"):
        raise ConfigValueError("--memory must be compressed or full")
    if max_texts is not None and max_texts < 1:
        raise ConfigValueError("--max-texts must be >= 1")
    if init_from is not None and resume:
        raise ConfigValueError("--init-from starts a fresh run; --resume continues one: give one of them")
    cfg = PretrainConfig(
        memory=cast(Literal["compressed", "full"], memory),
        objective=cast(Objective, objective),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        doc_tokens=doc_tokens or model_cfg.max_doc_tokens,
        cont_tokens=cont_tokens,
        log_every=log_every,
        eval_chunks=eval_chunks,
        kmeans_chunks=kmeans_chunks,
        seed=seed,
    ).validate()
    texts = load_texts(data, data_format)[:max_texts]
    trainer = AmortizerPretrainer(
        run_dir, model_cfg, cfg, texts, base_lm, resume=resume, progress=progress, init_from=init_from
    )
    result = trainer.run(max_minutes=max_minutes)
    out = {
        "run_dir": str(run_dir),
        "checkpoint": str(trainer.ckpt),
        "texts": len(texts),
        "train_chunks": len(trainer.train_set),
        "seconds_per_step": result.seconds_per_step,
        "state": result.state.__dict__,
        "last_metrics": result.last_metrics,
    }
    typer.echo(json.dumps(out, default=str))
