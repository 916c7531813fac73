"""Diverse (group) beam search over a prefixed base LM, with a KV cache.

transformers 5 moved group beam search to a hub repository that cannot be fetched here, so the
papers' decoding (12 beams in 4 groups, diversity penalty 10, top-1; Vijayakumar et al. 2016,
Hamming diversity) lives here. Scores are summed log-probabilities including the diversity
penalty, divided by the generated length (length penalty 1); a group stops when it holds as many
finished hypotheses as beams and none of its running beams can still beat the worst of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from learner.decoding.step import StepModel


@dataclass
class _Hyps:
    """Finished hypotheses of one group of one batch item."""

    size: int
    items: list[tuple[float, list[int]]] = field(default_factory=list)

    def add(self, score: float, tokens: list[int]) -> None:
        self.items.append((score, tokens))
        self.items.sort(key=lambda x: -x[0])
        del self.items[self.size :]

    def worst(self) -> float:
        return self.items[-1][0] if len(self.items) >= self.size else -float("inf")


@torch.no_grad()
def group_beam_search(
    lm: StepModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    prefix: Any,
    eos_id: int,
    max_new_tokens: int,
    num_beams: int,
    num_groups: int,
    diversity_penalty: float,
) -> list[list[int]]:
    """Diverse beam search; returns the best hypothesis (EOS excluded) of every row."""
    if num_beams % num_groups:
        raise ValueError(f"num_beams {num_beams} must be a multiple of num_beam_groups {num_groups}")
    gs, b = num_beams // num_groups, input_ids.shape[0]
    logits, cache, mask, pos = lm.prefill(input_ids, attention_mask, prefix)
    rep = torch.arange(b).repeat_interleave(num_beams)  # (B*nb,) row -> item
    logits, mask, pos = logits[rep], mask[rep], pos[rep]
    cache.batch_repeat_interleave(num_beams)
    scores = torch.full((b, num_beams), -1e9)
    scores[:, ::gs] = 0.0  # only the first beam of each group is live at step 0
    seqs: list[list[int]] = [[] for _ in range(b * num_beams)]
    hyps = [[_Hyps(gs) for _ in range(num_groups)] for _ in range(b)]
    done = [[False] * num_groups for _ in range(b)]
    for step in range(max_new_tokens):
        logp = torch.log_softmax(logits, -1).view(b, num_beams, -1)  # (B, nb, V)
        vocab = logp.shape[-1]
        chosen_tokens = torch.zeros(b, vocab)  # tokens picked this step by earlier groups
        new_rows = torch.arange(b * num_beams)
        new_tokens = torch.full((b * num_beams,), eos_id, dtype=torch.long)
        new_scores = scores.clone()
        for g in range(num_groups):
            sl = slice(g * gs, (g + 1) * gs)
            lp = logp[:, sl] - diversity_penalty * chosen_tokens[:, None, :]  # (B, gs, V)
            cand = (scores[:, sl, None] + lp).view(b, -1)  # (B, gs*V)
            top_v, top_i = cand.topk(2 * gs, dim=1)  # (B, 2gs)
            for i in range(b):
                if done[i][g]:
                    continue
                filled = 0
                for rank, (v, idx) in enumerate(zip(top_v[i].tolist(), top_i[i].tolist(), strict=True)):
                    beam, tok = g * gs + idx // vocab, idx % vocab
                    row = i * num_beams + beam
                    if tok == eos_id:
                        if rank < gs:
                            hyps[i][g].add(v / (step + 1), list(seqs[row]))
                        continue
                    dst = i * num_beams + g * gs + filled
                    new_rows[dst], new_tokens[dst], new_scores[i, g * gs + filled] = row, tok, v
                    chosen_tokens[i, tok] += 1
                    filled += 1
                    if filled == gs:
                        break
                best_running = float(new_scores[i, sl].max()) / (step + 1)
                if hyps[i][g].worst() >= best_running:
                    done[i][g] = True
        seqs = [[*seqs[int(r)], int(t)] for r, t in zip(new_rows.tolist(), new_tokens.tolist(), strict=True)]
        scores = new_scores
        if all(all(d) for d in done) or step == max_new_tokens - 1:
            break
        cache.reorder_cache(new_rows)
        logits, cache, mask, pos = lm.advance(new_tokens, cache, mask[new_rows], pos[new_rows])
    results = []
    for i in range(b):
        pool: list[tuple[float, list[int]]] = []
        for g in range(num_groups):
            pool += hyps[i][g].items
            if not done[i][g]:  # unfinished groups offer their running beams too
                n = len(seqs[i * num_beams])
                pool += [
                    (float(scores[i, g * gs + j]) / max(n, 1), seqs[i * num_beams + g * gs + j])
                    for j in range(gs)
                ]
        results.append(max(pool, key=lambda x: x[0])[1])
    return results
