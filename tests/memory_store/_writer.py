"""A writer process for the concurrency test: ``python -m tests.memory_store._writer URL NAME GO_FILE``.

Writes the shared ids s0..s299 (in an order of its own, in batches of 30, each batch with the
offsets it "consumed") and its private ids NAME0..NAME99, deleting every other private id again.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from memory_store.records import ConsumedOffset
from memory_store.store import MemoryStore
from tests.memory_store.helpers import T0, doc

SHARED, PRIVATE, BATCH = 300, 100, 30


def codes_of(doc_id: str) -> list[int]:
    """Deterministic codes per id, so both writers agree on a shared document's content."""
    return np.random.default_rng(sum(map(ord, doc_id)) * 7919 + len(doc_id)).integers(0, 512, 12).tolist()


def published_of(doc_id: str) -> datetime:
    return T0 + timedelta(hours=codes_of(doc_id)[0] % 96)


def main(url: str, name: str, go_file: str, version: int) -> None:
    store = MemoryStore(url)
    rng = np.random.default_rng(ord(name))
    ids = [f"s{i}" for i in rng.permutation(SHARED)] + [f"{name}{i}" for i in range(PRIVATE)]
    rng.shuffle(ids)
    partition = 1 if name == "a" else 2
    Path(f"{go_file}.{name}.ready").touch()
    while not Path(go_file).exists():  # start together
        time.sleep(0.01)
    began = time.time()
    other = "b" if name == "a" else "a"
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        if start + BATCH >= len(ids):
            # Interleave for sure, however the OS schedules us: the last batch waits until the
            # other writer has committed its first one.
            deadline = time.monotonic() + 120
            while not Path(f"{go_file}.{other}.wrote").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        docs = [doc(i, codes_of(i), version, source=i[0], published_at=published_of(i)) for i in chunk]
        offsets = [
            ConsumedOffset("g", "t", 0, start + len(chunk)),
            ConsumedOffset("g", "t", partition, start + len(chunk)),
        ]
        store.write_batch(docs, offsets)
        store.delete_documents([i for i in chunk if i.startswith(name) and int(i[len(name) :]) % 2 == 0])
        Path(f"{go_file}.{name}.wrote").touch()
    store.close()
    # The test checks that the two writers overlapped in time. A file, not stdout: the store may
    # log (e.g. a retried serialization conflict) and logs go to stdout.
    Path(f"{go_file}.{name}.span").write_text(f"{began} {time.time()}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
