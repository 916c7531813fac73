"""``--checkpoint`` of ``mbc learn``, ``mbc ask`` and ``mbc ask-serve``: one spelling, one setting.

All three read the flag, else ``MBC_CHECKPOINT`` (or ``checkpoint`` in the config file), and report
a missing or wrong checkpoint in the same words, naming where the path came from. ``mbc ask``
must use the checkpoint that ``mbc learn`` stored the codes with: the codes index its codebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from learner.errors import CheckpointError

CHECKPOINT_ENV = "MBC_CHECKPOINT"
DEMO_CHECKPOINT = "mbc/demo/assets/checkpoint"  # the small trained checkpoint in the repository

CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        help="Trained checkpoint folder (`mbc train` writes them; the repository ships "
        f"{DEMO_CHECKPOINT}), or a run folder. [default: {CHECKPOINT_ENV}]",
        show_default=False,
    ),
]


def require_checkpoint(path: Path | None, from_flag: bool) -> Path:
    """The checkpoint folder to load, or :class:`CheckpointError` naming the flag or the variable.

    Checked before anything slow (the model, the broker, the database) so a mistake shows at once.
    """
    if path is None:
        raise CheckpointError(
            f"no checkpoint: pass --checkpoint DIR or set {CHECKPOINT_ENV} (e.g. {DEMO_CHECKPOINT})"
        )
    from learner.checkpoint import resolve_checkpoint

    try:
        return resolve_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f"{'--checkpoint' if from_flag else CHECKPOINT_ENV}: {e}") from None
