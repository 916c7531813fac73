"""The online learner worker (``mbc learn``): consumes clean documents from Kafka in batches,
amortizes and quantizes them, and commits codes, metadata and consumed offsets to the memory store
in one transaction before committing Kafka offsets.

Steps, in the order a batch goes through them (arroyo strategies, STYLE.md):

    Kafka docs.clean ─> Reduce (max size / max wait) ─> terminal step:
        decode events (poison -> DLQ) ─> tokenize ─> encode (amortize, quantize)
        ─> store.write_batch(documents + offsets)   # one DB transaction: durable
        ─> commit Kafka offsets                      # last, only after the write

The terminal step is :class:`learner.worker.step.StoreStep` (``pipeline_depth = 1``: one batch at
a time) or :class:`learner.worker.pipeline.PipelinedStore` (tokenize n+1, encode n and write n-1 at
once; same order and the same guarantee).
"""
