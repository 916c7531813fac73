"""Two writer processes at once, with overlapping batches and deletes, leave a consistent store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from memory_store.store import MemoryStore
from tests.memory_store._writer import PRIVATE, SHARED
from tests.memory_store.helpers import as_dict, recount

REPO = Path(__file__).resolve().parents[2]


def test_two_writer_processes_stay_consistent(store: MemoryStore, version: int, tmp_path: Path) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.memory_store._writer", store.url, name, str(go), str(version)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{name}.ready").exists() for name in "ab"):  # both imported and connected
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a writer did not start"
        time.sleep(0.05)
    go.touch()
    spans = []
    for name, p in zip("ab", procs, strict=True):
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, (out + err)[-3000:]
        spans.append(tuple(map(float, Path(f"{go}.{name}.span").read_text().split())))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, f"the writers did not overlap: {spans}"

    expected = {f"s{i}" for i in range(SHARED)} | {f"{w}{i}" for w in "ab" for i in range(1, PRIVATE, 2)}
    with store.engine.connect() as conn:
        stored = {r[0] for r in conn.exec_driver_sql("SELECT id FROM documents")}
    assert stored == expected
    assert as_dict(store.counts()) == recount(store)
    assert sum(c.n for c in store.counts()) == len(expected) * 12
    for source in ("s", "a", "b"):
        assert as_dict(store.counts(source=source)) == recount(store, source=source)
    total = SHARED + PRIVATE
    assert store.stored_offsets("g", "t") == {0: total, 1: total, 2: total}
