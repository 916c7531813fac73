"""Decoding over a prefixed causal LM with a KV cache: greedy and diverse group beam search.

The searches know nothing about the model: they drive a :class:`StepModel` (``prefill`` then
``advance``), which :class:`learner.model.base_lm.BaseLM` implements.
"""

from learner.decoding.beam import group_beam_search
from learner.decoding.greedy import greedy_search
from learner.decoding.step import StepModel

__all__ = ["StepModel", "greedy_search", "group_beam_search"]
