"""``mbc train --init-from CKPT``: start meta-training from the weights of another checkpoint.

Meant for the checkpoint of `mbc pretrain-amortizer` (:mod:`learner.pretraining.run`),
but any checkpoint of the same preset works (e.g. a previous meta-training run). Unlike
``--resume`` it takes only the *weights*: optimizer, LR schedule, step count, early stopping and
epoch position start afresh, and the run's own settings apply.

Every stored tensor must exist in the new model with the same shape, and every trainable
parameter of the new model must be stored — otherwise the presets differ and the run stops with
one line. A checkpoint trained on a GGUF base names its file (sha256); another base file is
refused (:func:`learner.checkpoint.check_base_identity`). A checkpoint pretrained with
``--memory full`` has an untrained codebook: meta-training it compressed starts from that one.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from infra.logging import get_logger
from learner.checkpoint import check_base_identity, read_meta, resolve_checkpoint
from learner.errors import CheckpointError
from learner.model.mbc import MBCModel

log = get_logger("learner.training.init_from")


def init_weights_from(model: MBCModel, path: Path, lm_source: str | None, skip: tuple[str, ...] = ()) -> Path:
    """Copy the stored weights of checkpoint ``path`` (a checkpoint folder, or a run folder: its
    ``checkpoints/last``) into ``model`` in place; returns the checkpoint folder used. Tensors whose
    names start with one of ``skip`` keep the model's own values (e.g. ``("codebook.",)``: a new
    quantizer on a float-memory checkpoint)."""
    path = resolve_checkpoint(Path(path), "last")
    meta = read_meta(path)
    if meta.model.encoder != model.config.encoder or meta.model.preset != model.config.preset:
        raise CheckpointError(
            f"--init-from {path}: preset {meta.model.preset!r} (encoder {meta.model.encoder}) does not "
            f"match this run's {model.config.preset!r} (encoder {model.config.encoder})"
        )
    if lm_source is not None:
        check_base_identity(meta, lm_source)
    state = load_file(str(path / "model.safetensors"))
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    for alias, target in aliases.items():
        state[alias] = state[target]
    state = {k: t for k, t in state.items() if not k.startswith(skip)} if skip else state
    own = model.state_dict()
    wrong = [k for k, t in state.items() if k not in own or own[k].shape != t.shape]
    trainable = {
        n for n, p in model.named_parameters() if p.requires_grad and not (skip and n.startswith(skip))
    }
    missing = sorted(trainable - state.keys())
    if wrong or missing:
        raise CheckpointError(
            f"--init-from {path}: weights do not fit this model (unexpected or reshaped {wrong[:3]}, "
            f"missing {missing[:3]}); pretrain with the same preset"
        )
    model.load_state_dict(state, strict=False)
    log.info("initialised from checkpoint", checkpoint=str(path), tensors=len(state), step=meta.step)
    return path
