"""The fixed queries of the aggregation path (amortizer pretraining's tasks), like ICAE's [AE] / [LM]
tokens: one query per task, so the question encoder learns a "read it all" query. Row index = task id.
Meta-training reads the reconstruction query instead of the question with
``ModelConfig.memory_query = "reconstruct"`` (:meth:`learner.text.batching.TextBatcher.questions_amort`).
"""

from __future__ import annotations

RECONSTRUCT, CONTINUE = 0, 1
TASK_QUERIES: tuple[str, ...] = ("Repeat the text.", "Continue the text.")
