"""Base-LM families: the one table that says how each family is built and where its adapters go
(as peft's per-model target-module mapping does). ``LMSpec.arch`` names a row; adding a family is
adding a row here, and nothing else names a family.

Per family:

* how a random-weight Hugging Face config is made from a :class:`~learner.model.config.LMSpec`
  (``--init scratch``);
* where the attention layers are (``layers_path``, each layer's ``attention`` module);
* KV-LoRA (docs/DESIGN.md §1.6, :mod:`learner.model.lora`): ``fused`` — one QKV projection
  (GPT-2's ``c_attn``) wrapped by :class:`~learner.model.lora.FusedKVLoRA` — or ``peft`` —
  separate key and value projections given to peft by name;
* the LoRA targets of the ``encoder="lm"`` adapters (:mod:`learner.model.adapters`); a family
  without them cannot host ``encoder="lm"``.

An unknown family is :class:`~learner.errors.UnknownModelFamily`, never a silent default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from learner.errors import ConfigValueError, UnknownModelFamily


class LMShape(Protocol):
    """The shape fields of :class:`learner.model.config.LMSpec` a family's config is built from
    (a protocol, so that config.py can import this table without a cycle)."""

    @property
    def hidden(self) -> int: ...
    @property
    def layers(self) -> int: ...
    @property
    def heads(self) -> int: ...
    @property
    def kv_heads(self) -> int | None: ...
    @property
    def ffn(self) -> int: ...
    @property
    def max_positions(self) -> int: ...
    @property
    def dropout(self) -> float: ...
    @property
    def tie_embeddings(self) -> bool: ...


# (spec, vocab_size, pad_id, eos_id, bos_id) -> keyword arguments of AutoConfig.for_model
ConfigKwargs = Callable[[LMShape, int, int, int, int], dict[str, Any]]


@dataclass(frozen=True)
class Family:
    """Everything the model code needs to know about one base-LM family."""

    name: str
    model_type: str  # transformers' model_type, for AutoConfig.for_model
    config_kwargs: ConfigKwargs  # the random-weight config of a spec's shape
    layers_path: str  # dotted path from the HF causal LM to its list of decoder layers
    layers_pattern: str  # the last part of layers_path: peft's layers_pattern
    attention: str  # each decoder layer's attention module
    kv_lora: Literal["fused", "peft"]  # how KV-LoRA attaches to the key/value projections
    kv_targets: tuple[str, ...]  # fused: the one QKV projection; peft: the key and value projections
    encoder_targets: tuple[str, ...] | None  # LoRA targets of encoder="lm"; None: not supported

    def require_encoder_targets(self) -> tuple[str, ...]:
        """:attr:`encoder_targets`, or :class:`ConfigValueError` for a family that has none."""
        if self.encoder_targets is None:
            raise ConfigValueError(f'encoder="lm" is not available for base-LM family {self.name!r}')
        return self.encoder_targets

    def kv_module_names(self, layers: list[int]) -> list[str]:
        """The full names of the modules KV-LoRA wraps in ``layers``."""
        return [f"{self.layers_path}.{i}.{self.attention}.{t}" for i in layers for t in self.kv_targets]


def _gpt2_config(spec: LMShape, vocab_size: int, pad_id: int, eos_id: int, bos_id: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "n_positions": spec.max_positions,
        "n_embd": spec.hidden,
        "n_layer": spec.layers,
        "n_head": spec.heads,
        "n_inner": spec.ffn,
        "resid_pdrop": spec.dropout,
        "embd_pdrop": spec.dropout,
        "attn_pdrop": spec.dropout,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "loss_type": "ForCausalLM",
    }


def _llama_config(spec: LMShape, vocab_size: int, pad_id: int, eos_id: int, bos_id: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.ffn,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads or spec.heads,
        "max_position_embeddings": spec.max_positions,
        "attention_dropout": spec.dropout,
        "tie_word_embeddings": spec.tie_embeddings,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "loss_type": "ForCausalLM",
    }


FAMILIES: dict[str, Family] = {
    "gpt2": Family(
        name="gpt2",
        model_type="gpt2",
        config_kwargs=_gpt2_config,
        layers_path="transformer.h",
        layers_pattern="h",
        attention="attn",
        kv_lora="fused",
        kv_targets=("c_attn",),
        encoder_targets=None,
    ),
    "llama": Family(
        name="llama",
        model_type="llama",
        config_kwargs=_llama_config,
        layers_path="model.layers",
        layers_pattern="layers",
        attention="self_attn",
        kv_lora="peft",
        kv_targets=("k_proj", "v_proj"),
        encoder_targets=("q_proj", "k_proj", "v_proj", "o_proj"),
    ),
}


def family(name: str) -> Family:
    """The row of :data:`FAMILIES` for ``name``; :class:`UnknownModelFamily` when there is none."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownModelFamily(
            f"unknown base-LM family {name!r}; known: {', '.join(FAMILIES)} (learner/model/families.py)"
        ) from None
