"""The online learner worker (``mbc learn``): consumes clean documents from Kafka in batches,
amortizes and quantizes them, and commits codes, metadata and consumed offsets to the memory store
in one transaction before committing Kafka offsets.

Steps, in the order a batch goes through them (arroyo strategies, STYLE.md):

    Kafka docs.clean ─> Reduce (max size / max wait) ─> StoreStep:
        decode events (poison -> DLQ) ─> encode (tokenize, amortize, quantize)
        ─> store.write_batch(documents + offsets)   # one DB transaction: durable
        ─> commit Kafka offsets                      # last, only after the write
"""
