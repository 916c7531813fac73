"""The frozen base language model, taking a per-layer prefix as past key/values.

:class:`BaseLM` wraps a Hugging Face causal LM of a family of :mod:`learner.model.families`. A prefix — P key/value
positions for every layer, from :mod:`learner.model.prefix` — is handed to the model as a
``DynamicCache`` that already holds P positions; the attention mask gets P leading ones and the
real tokens take positions P, P+1, … (left padding is skipped over). The same mechanism serves
training (``forward`` with labels) and decoding with a KV cache (:mod:`learner.decoding`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.cache_utils import DynamicCache

from learner.decoding import greedy_search, group_beam_search
from learner.decoding.step import StepOutput
from learner.errors import ModelLoadError
from learner.model.config import LMSpec
from learner.model.families import family
from learner.model.gguf_source import resolve_lm_source
from learner.model.prefix import Prefix


def lm_config_from_spec(spec: LMSpec, vocab_size: int, pad_id: int, eos_id: int, bos_id: int) -> Any:
    """A transformers config for a randomly initialised base LM of the spec's shape and family."""
    fam = family(spec.arch)
    return AutoConfig.for_model(fam.model_type, **fam.config_kwargs(spec, vocab_size, pad_id, eos_id, bos_id))


def load_pretrained_lm(spec: LMSpec, source: str) -> PreTrainedModel:
    """``from_pretrained`` on a local directory, (when the hub is allowed) a model name, or a GGUF
    source (``pkg:<package>/<file>.gguf`` or a ``.gguf`` path, read through its local cache:
    :mod:`learner.model.gguf_source`)."""
    source = resolve_lm_source(source)[0]
    kwargs: dict[str, Any] = {}
    if spec.quantization == "nf4":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ModelLoadError(
                f"preset {spec.name!r} loads the base LM in nf4, which needs the bitsandbytes package "
                "(GPU only); install it or use --init scratch"
            ) from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_type="nf4"
        )
    try:
        return AutoModelForCausalLM.from_pretrained(source, **kwargs)  # type: ignore[no-any-return]
    except OSError as e:
        raise ModelLoadError(f"cannot load base LM from {source!r}: {e}") from None


def lm_from_config(config: Any) -> PreTrainedModel:
    return AutoModelForCausalLM.from_config(config)  # type: ignore[no-any-return]


def prefix_positions(attention_mask: Tensor, past: int) -> Tensor:
    """Position ids of the real tokens after ``past`` prefix positions; pads get ``past``. (B, T)."""
    return past + (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class BaseLM(nn.Module):
    """A causal LM that accepts a prefix of past key/values in forward and in decoding."""

    def __init__(self, model: PreTrainedModel, arch: str) -> None:
        super().__init__()
        self.model = model
        self.arch = arch
        self.family = family(arch)  # UnknownModelFamily here, before any adapter is attached
        cfg = model.config
        self.num_layers: int = cfg.num_hidden_layers
        self.num_heads: int = cfg.num_attention_heads
        self.hidden: int = cfg.hidden_size
        self.head_dim: int = getattr(cfg, "head_dim", None) or self.hidden // self.num_heads
        # grouped-query attention (Llama): keys/values, and so the prefix, have fewer heads
        self.num_kv_heads: int = getattr(cfg, "num_key_value_heads", None) or self.num_heads

    def make_cache(self, prefix: Prefix | None) -> DynamicCache | None:
        if prefix is None:
            return None
        return DynamicCache(ddp_cache_data=[(k, v) for k, v in prefix])

    def prepare(
        self, input_ids: Tensor, attention_mask: Tensor, prefix: Prefix | None
    ) -> tuple[DynamicCache | None, Tensor, Tensor]:
        """Cache, full attention mask (B, P+T) and position ids (B, T) for a prefixed call."""
        past = 0 if prefix is None else int(prefix[0][0].shape[2])
        mask = attention_mask
        if past:
            ones = attention_mask.new_ones(attention_mask.shape[0], past)
            mask = torch.cat([ones, attention_mask], dim=1)  # (B, P+T)
        return self.make_cache(prefix), mask, prefix_positions(attention_mask, past)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        prefix: Prefix | None = None,
        labels: Tensor | None = None,
    ) -> Any:
        """Logits (and loss when ``labels`` given, -100 = ignored) with an optional prefix."""
        cache, mask, positions = self.prepare(input_ids, attention_mask, prefix)
        return self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            labels=labels,
            use_cache=cache is not None,
        )

    def prefill(self, input_ids: Tensor, attention_mask: Tensor, prefix: Prefix | None) -> StepOutput:
        """Decoding's first call (:class:`learner.decoding.StepModel`): the prompt after the prefix."""
        cache, mask, positions = self.prepare(input_ids, attention_mask, prefix)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        return out.logits[:, -1].float(), out.past_key_values, mask, positions[:, -1:]

    def advance(self, tokens: Tensor, cache: Any, mask: Tensor, last_pos: Tensor) -> StepOutput:
        """One more token per row (B,) after what ``cache`` holds."""
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)  # (B, S+1)
        pos = last_pos + 1  # (B, 1)
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
        )
        return out.logits[:, -1].float(), out.past_key_values, mask, pos

    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        prefix: Prefix | None,
        eos_id: int,
        max_new_tokens: int = 16,
        num_beams: int = 1,
        num_beam_groups: int = 1,
        diversity_penalty: float = 0.0,
    ) -> list[list[int]]:
        """Answer tokens (EOS excluded) for left-padded prompts, with a KV cache that starts as the prefix."""
        if num_beams == 1:
            return greedy_search(self, input_ids, attention_mask, prefix, eos_id, max_new_tokens)
        return group_beam_search(
            self,
            input_ids,
            attention_mask,
            prefix,
            eos_id,
            max_new_tokens,
            num_beams,
            num_beam_groups,
            diversity_penalty,
        )
