"""Checkpoints: one self-contained directory, written atomically.

Layout of ``<run>/checkpoints/<name>/`` (``name`` is ``last``, ``best-loss``, ``best-em`` or ``best-f1``)::

    config.json          format, ModelConfig, TrainConfig, init, train memory, the three networks'
                         transformers configs, base-LM source and — for a GGUF base — its identity
                         (package, file name, sha256), step
    model.safetensors    every parameter and buffer of the model, except the frozen base-LM
                         weights when they come from a pretrained source (recorded in config.json)
    optimizer.pt         optimizer and LR-scheduler state
    trainer_state.json   step, epoch, position in the epoch, best metrics, early-stopping counter
    rng.pt               Python, NumPy and torch RNG states (exact resume)
    tokenizer_lm/        tokenizer(s), saved with save_pretrained
    tokenizer_amort/     (only when the two sides differ)

With a pretrained base LM the checkpoint holds what was trained only: LoRA adapters (KV-LoRA and,
with ``encoder="lm"``, the encoders' adapters), summary tokens, MLPs, codebook, aggregator and
prefix expander. Loading it against another base file than the one recorded raises
:class:`BaseModelMismatch`. Format 1 checkpoints (no identity) still load.

A checkpoint is first written to a hidden sibling directory, flushed, then renamed into place;
the previous one is renamed aside and removed afterwards. If a crash leaves only the renamed-aside
copy, :func:`resolve_checkpoint` restores it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from learner.errors import CheckpointError
from learner.model.build import ArchConfigs, arch_configs, build_from_arch, load_pretrained_lm
from learner.model.config import ModelConfig, TrainConfig, model_config_from_dict, train_config_from_dict
from learner.model.gguf_source import BaseIdentity, identity_of
from learner.model.lora import is_lora_parameter
from learner.model.mbc import MBCModel
from learner.text.tokenizers import Tokenizers

FORMAT = 2  # 2 added base_identity; format 1 is read as "no identity"
READABLE_FORMATS = (1, 2)


class BaseModelMismatch(CheckpointError):
    """The base LM found is not the file the checkpoint was trained on."""


@dataclass
class CheckpointMeta:
    model: ModelConfig
    train: TrainConfig
    init: str
    train_memory: str
    arch: ArchConfigs
    lm_source: str | None  # set when the base-LM weights are not stored in the checkpoint
    step: int
    base_identity: BaseIdentity | None = None  # GGUF base LMs: which file (learner.model.gguf_source)

    def to_json(self) -> dict[str, Any]:
        from learner.model.config import config_to_dict

        return {
            "format": FORMAT,
            "model": config_to_dict(self.model),
            "train": config_to_dict(self.train),
            "init": self.init,
            "train_memory": self.train_memory,
            "arch": {"amort": self.arch.amort, "question": self.arch.question, "lm": self.arch.lm},
            "lm_source": self.lm_source,
            "step": self.step,
            "base_identity": self.base_identity.to_json() if self.base_identity else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckpointMeta:
        if data.get("format") not in READABLE_FORMATS:
            raise CheckpointError(
                f"checkpoint format {data.get('format')} is not supported (expected one of {READABLE_FORMATS})"
            )
        a = data["arch"]
        identity = data.get("base_identity")
        return cls(
            model_config_from_dict(data["model"]),
            train_config_from_dict(data["train"]),
            data["init"],
            data["train_memory"],
            ArchConfigs(a["amort"], a["question"], a["lm"]),
            data["lm_source"],
            int(data["step"]),
            BaseIdentity(**identity) if identity else None,
        )


def _state_to_save(model: MBCModel, store_base_lm: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict without duplicates of tied tensors (aliases returned separately)."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    for name, t in model.state_dict().items():
        if name.startswith("lm.") and not is_lora_parameter(name) and not store_base_lm:
            continue
        key = (t.data_ptr(), tuple(t.shape))
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().cpu().contiguous()
    return tensors, aliases


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    directory: Path,
    model: MBCModel,
    tokenizers: Tokenizers,
    meta: CheckpointMeta,
    trainer_state: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint to ``directory`` atomically (see module docstring)."""
    directory = Path(directory)
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{directory.name}.tmp-{os.getpid()}"
    old = parent / f".{directory.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors, aliases = _state_to_save(model, store_base_lm=meta.lm_source is None)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"aliases": json.dumps(aliases)})
    (tmp / "config.json").write_text(json.dumps(meta.to_json(), indent=2) + "\n")
    tokenizers.save(tmp)
    if trainer_state is not None:
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2) + "\n")
        torch.save(rng_state(), tmp / "rng.pt")
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / "optimizer.pt")
    _fsync_tree(tmp)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def resolve_checkpoint(path: Path, which: str = "best-loss") -> Path:
    """A checkpoint directory from a checkpoint path or a run directory (``<run>/checkpoints/<which>``)."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints" / which
    if not (path / "config.json").is_file():
        leftovers = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
        if leftovers and not path.exists():
            os.replace(leftovers[-1], path)  # a crash between the two renames: restore the previous one
        else:
            raise CheckpointError(f"no checkpoint at {path} (expected {path / 'config.json'})")
    return path


def read_meta(path: Path) -> CheckpointMeta:
    try:
        return CheckpointMeta.from_json(json.loads((path / "config.json").read_text()))
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path / 'config.json'}: unreadable checkpoint config ({e})") from None


def check_base_identity(meta: CheckpointMeta, source: str) -> None:
    """Raise :class:`BaseModelMismatch` unless ``source`` is the GGUF file the checkpoint recorded."""
    if meta.base_identity is None:
        return
    found = identity_of(source)
    want = meta.base_identity
    if found is None or found.sha256 != want.sha256:
        got = f"{found.file} sha256 {found.sha256[:16]}" if found else repr(source)
        raise BaseModelMismatch(
            f"checkpoint was trained on base LM {want.file} (package {want.package}, sha256 "
            f"{want.sha256[:16]}…) but the base LM found is {got}; install the matching file"
        )


def load_checkpoint(
    path: Path, device: torch.device | str = "cpu", lm_source: str | None = None
) -> tuple[MBCModel, Tokenizers, CheckpointMeta]:
    """Rebuild the model from the stored configs and load its weights (base LM from source if not
    stored; ``lm_source`` replaces the recorded source, e.g. a GGUF file elsewhere — it must be the
    same file, see :func:`check_base_identity`)."""
    from learner.model.precision import place_model

    path = resolve_checkpoint(path)
    meta = read_meta(path)
    if meta.lm_source is not None:
        meta.lm_source = lm_source or meta.lm_source
        check_base_identity(meta, meta.lm_source)
    model = build_from_arch(meta.model, meta.arch, meta.train_memory)  # type: ignore[arg-type]
    state = load_file(str(path / "model.safetensors"))
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        stored = f.metadata() or {}
    for alias, target in json.loads(stored.get("aliases", "{}")).items():
        state[alias] = state[target]
    if meta.lm_source is not None:
        base = load_pretrained_lm(meta.model.lm, meta.lm_source).state_dict()
        for name, t in base.items():
            state.setdefault(_lm_key(model, name), t)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return place_model(model, torch.device(device)), Tokenizers.load(path), meta


def _lm_key(model: MBCModel, name: str) -> str:
    """Map a plain HF LM state-dict key to our key: a LoRA-wrapped projection keeps its base weights
    under ``.base`` (:class:`FusedKVLoRA`, the family's ``kv_lora == "fused"``) or ``.base_layer``
    (peft)."""
    key = f"lm.model.{name}"
    if key in model.state_dict():
        return key
    head, _, leaf = key.rpartition(".")
    wrapper = "base" if model.lm.family.kv_lora == "fused" else "base_layer"
    return f"{head}.{wrapper}.{leaf}"


def load_training_state(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """trainer_state.json, optimizer.pt and rng.pt of a checkpoint."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
        opt = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
        rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=False)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: not resumable, {e.filename} is missing") from None
    return state, opt, rng


__all__ = [
    "BaseModelMismatch",
    "CheckpointMeta",
    "arch_configs",
    "load_checkpoint",
    "load_training_state",
    "read_meta",
    "resolve_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]
