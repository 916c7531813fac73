"""`mbc train-keys`: learn a checkpoint's retrieval keys from QA pairs (:mod:`learner.keys.train`).

Registered by :func:`learner.cli.register`; heavy imports (torch) happen inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from corpora.formats import QAFormat
from infra.cli import setting_help
from learner.eval.cli import FORMAT_HELP
from learner.settings import Device, LearnerSettings
from learner.settings import setup_learner as _setup


def train_keys(
    checkpoint: Annotated[
        Path, typer.Option(help="Checkpoint folder, or a run folder (uses checkpoints/best-loss).")
    ],
    data: Annotated[Path, typer.Option(help="Training QA file (questions and their documents).")],
    data_format: Annotated[QAFormat, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    num_docs: Annotated[
        int | None, typer.Option(min=2, help="Train on the first N documents. [default: all]")
    ] = None,
    val_data: Annotated[
        Path | None,
        typer.Option(
            help="A QA file to report recall@1/8/32 on, each question against all its documents. "
            "[default: none]"
        ),
    ] = None,
    val_format: Annotated[QAFormat, typer.Option(help=FORMAT_HELP)] = "auto",
    val_num_docs: Annotated[
        int | None, typer.Option(min=1, help="Report on the first N documents of --val-data. [default: all]")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 600,
    batch_size: Annotated[int, typer.Option(min=2, help="Documents per step (one question each).")] = 256,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (one-cycle).")] = 1e-3,
    key_dim: Annotated[int, typer.Option(min=1, help="Dimensions of a key.")] = 128,
    hidden: Annotated[int, typer.Option(min=1, help="Hidden width of the question side's MLP.")] = 512,
    heldout: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of the training documents held out for recall.")
    ] = 0.1,
    encode_batch: Annotated[int, typer.Option(min=1, help="Texts per forward pass of the model.")] = 32,
    device: Annotated[
        Device | None,
        typer.Option(help=setting_help("auto: CUDA when available.", LearnerSettings, "device")),
    ] = None,
    bf16: Annotated[bool, typer.Option("--bf16/--no-bf16", help="bf16 autocast (GPU).")] = False,
    base_lm: Annotated[
        str | None,
        typer.Option(
            help="Where the checkpoint's base LM is now (e.g. a .gguf path); must be the same file. "
            "[default: where the checkpoint says]"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split and the batches.")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
) -> None:
    """Learn retrieval keys for a checkpoint: document keys from stored codes, question queries, trained
    contrastively on the file's (question, document) pairs with the model frozen. Writes
    CHECKPOINT/key_head.safetensors, which `mbc eval --retrieve K --retriever keys` then uses; prints
    recall@k (held-out documents, and --val-data) as JSON."""
    from corpora.qa import load_dataset
    from learner.checkpoint import load_checkpoint, read_meta, resolve_checkpoint
    from learner.checkpoint_option import require_checkpoint
    from learner.errors import ConfigValueError
    from learner.inference.device import pick_device
    from learner.keys.head import save_key_head
    from learner.keys.train import KeyTrainConfig, features, recall, train_key_head

    settings = _setup()
    dev = pick_device(device or settings.device)
    path = resolve_checkpoint(require_checkpoint(checkpoint, True))
    ds = load_dataset(data, data_format).first_docs(num_docs)  # a wrong file fails before the model loads
    val = load_dataset(val_data, val_format).first_docs(val_num_docs) if val_data else None
    trained = read_meta(path).train_memory  # refused before the model loads
    if trained != "compressed":
        raise ConfigValueError(
            f"{path}: trained with --memory {trained}; keys are learned from the stored codes of a "
            "compressed-memory checkpoint"
        )
    model, tokenizers, _ = load_checkpoint(path, dev, lm_source=base_lm)
    cfg = KeyTrainConfig(key_dim, hidden, steps, batch_size, lr, heldout=heldout, seed=seed)
    f = features(model, tokenizers, ds, dev, bf16, encode_batch, progress, "train ")
    try:
        head, report = train_key_head(f, cfg, dev, progress)
    except ValueError as e:
        raise ConfigValueError(str(e)) from None
    report["data"] = str(data)
    if val is not None:
        vf = features(model, tokenizers, val, dev, bf16, encode_batch, progress, "val ")
        report["val"] = {"data": str(val_data), "documents": len(vf.docs), "questions": len(vf.gold)}
        report["val"] |= recall(head, vf)
    report["file"] = str(save_key_head(head, path, report))
    typer.echo(json.dumps(report, indent=2))
