"""`mbc synth`: write a synthetic knowledge stream (registered by :mod:`learner.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from learner.settings import setup_learner


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write pretrain/train/val/test files into.")],
    pretrain_docs: Annotated[
        int, typer.Option(min=0, help="Documents of the base-LM pretraining split.")
    ] = 512,
    train_docs: Annotated[int, typer.Option(min=0, help="Documents of the training split.")] = 1536,
    val_docs: Annotated[int, typer.Option(min=0, help="Documents of the validation split.")] = 64,
    test_docs: Annotated[int, typer.Option(min=0, help="Documents of the test split.")] = 64,
    bank_size: Annotated[int, typer.Option(min=1, help="Documents per bank with distinct first names.")] = 32,
    relations: Annotated[
        int, typer.Option(min=1, max=3, help="How many fact kinds (job, city, pet) to use.")
    ] = 3,
    values: Annotated[int, typer.Option(min=2, max=16, help="Possible values per fact kind.")] = 16,
    min_distractors: Annotated[
        int, typer.Option(min=0, help="Fewest distractor sentences per document.")
    ] = 1,
    max_distractors: Annotated[int, typer.Option(min=0, help="Most distractor sentences per document.")] = 2,
    train_people: Annotated[
        int,
        typer.Option(
            min=0, help="Distinct people of the train split (they recur with new facts); 0: all distinct."
        ),
    ] = 640,
    seed: Annotated[int, typer.Option(help="Random seed; the output is a function of all options.")] = 0,
) -> None:
    """Write a synthetic knowledge stream (StreamingQA CSV and JSONL forms) with disjoint people per split."""
    from learner.data.synth.generator import SynthConfig, write_all

    setup_learner()
    cfg = SynthConfig(
        pretrain_docs,
        train_docs,
        val_docs,
        test_docs,
        bank_size,
        relations,
        values,
        min_distractors=min_distractors,
        max_distractors=max_distractors,
        pretrain_max_distractors=max_distractors,
        train_people=train_people or None,
        seed=seed,
    )
    counts = write_all(cfg, out_dir)
    typer.echo(json.dumps({"out_dir": str(out_dir), "rows": counts}))
