"""Watching the stream while the services work, and reading its books once they stopped: the
stage's Prometheus counters, the topics' high watermarks, the learner's stored offsets, the stage's
accounting changelog and the dead-letter topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mbc.demo.progress import Progress
from mbc.demo.supervisor import Child, Children

LEARNER_GROUP = "mbc-learner"


def stage_counts(port: int) -> dict[str, float]:
    """The stage's decisions so far, scraped from its ``/metrics`` on 127.0.0.1:``port``."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {"accepted": 0.0, "duplicate": 0.0, "rejected": 0.0, "skipped": 0.0}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key in out:
                if sample.name == f"mbc_pipeline_{key}_total":
                    out[key] += sample.value
    return out


def records_in(kafka: Any, topic: str) -> int:
    """Records in ``topic``: its high watermarks summed over the partitions."""
    from pipeline.topic_reader import watermarks

    return sum(high for _, high in watermarks(kafka, topic).values())


def wait_for_stream(
    children: Children,
    stage: Child,
    learner: Child,
    stage_port: int,
    store: Any,
    kafka: Any,
    clean_topic: str,
    published: int,
    left: Callable[[], float],
    progress: Progress,
) -> tuple[int, int, int]:
    """Until the stage decided every raw event and the learner stored every clean document."""
    import httpx
    from tqdm import tqdm

    decided = stored = clean = 0
    counts: dict[str, float] = {}
    last_note = time.monotonic()
    with tqdm(total=published, unit="event", desc="      pipeline", disable=None, leave=False) as bar:
        while True:
            left()
            children.check(stage)
            children.check(learner)
            try:
                counts = stage_counts(stage_port)
            except httpx.HTTPError:
                counts = {}  # the stage is still starting
            decided = int(sum(counts.values()))
            clean = records_in(kafka, clean_topic)
            stored = sum(store.stored_offsets(LEARNER_GROUP, clean_topic).values())
            bar.total = published + int(counts.get("accepted", 0))
            bar.n = decided + stored
            bar.set_postfix_str(f"decided {decided}/{published}, stored {stored}/{clean}")
            if bar.disable and time.monotonic() - last_note > 10:
                progress.note(f"stage decided {decided}/{published}, learner stored {stored}/{clean}")
                last_note = time.monotonic()
            if decided >= published and clean >= counts.get("accepted", 0) and stored >= clean:
                return decided, stored, clean
            time.sleep(0.5)


def books(kafka: Any, topics: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stage's exact books (from its changelog) and the dead-letter topic by who wrote it."""
    from infra.settings import load_settings
    from pipeline.settings import PipelineSettings
    from pipeline.stage.accounting import read_accounting
    from pipeline.topic_reader import read

    books = read_accounting(load_settings(PipelineSettings)).summary()
    by_stage: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for rec in read(kafka, topics.dlq, timeout=30):
        who = rec.header("mbc-stage") or "pipeline"
        by_stage[who] = by_stage.get(who, 0) + 1
        reason = rec.header("mbc-reason") or "?"
        by_reason[reason] = by_reason.get(reason, 0) + 1
    books["dead_lettered"] = sum(books["rejected"].values())
    return books, {"total": sum(by_stage.values()), "by_stage": by_stage, "by_reason": by_reason}
