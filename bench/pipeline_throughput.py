"""Documents per second of the pipeline on this machine, with the Reuters-21578 file:

1. replay → docs.raw: `produce replay`'s code path (read, normalize, idempotent produce, wait for
   every delivery report), timed from the first send to the last delivery report;
2. faust stage docs.raw → docs.clean/docs.dlq: `mbc pipeline run` in a child process, fed the whole
   file with backpressure (the embedded broker keeps only 5 MiB per partition), timed from its first
   decision to its 20,000th, read from its Prometheus counters; with ``--stage-workers 1,2`` also
   two such processes in one consumer group (their counters summed).

Starts its own embedded broker unless --bootstrap is given. Writes the figures, the exact command,
the machine and the date to bench/results/pipeline_throughput.json.

    .venv/bin/python bench/pipeline_throughput.py [--repeats 3] [--stage-workers 1,2] [--skip-replay]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import host_machine, load_average  # noqa: E402
from corpora.documents import load_records  # noqa: E402
from infra.broker import BrokerProcess  # noqa: E402
from infra.settings import KafkaSettings, TopicSettings  # noqa: E402
from pipeline.replay.run import replay  # noqa: E402
from pipeline.settings import ProducerSettings  # noqa: E402
from pipeline.stage.faust_config import TABLE_NAME  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "reuters" / "reuters21578.jsonl"
STALL_S = 60.0  # a stage run with no decision for this long is reported as stalled
MAX_LAG = 2_500  # documents the feeder may run ahead of the stage (5 MiB per partition on the mock)


def fresh_topics(bootstrap: str, prefix: str, *extra: str) -> TopicSettings:
    stem = f"{prefix}-{uuid.uuid4().hex[:6]}"
    topics = TopicSettings(raw=f"{stem}.raw", clean=f"{stem}.clean", dlq=f"{stem}.dlq")
    producer = Producer({"bootstrap.servers": bootstrap})
    for name in (topics.raw, topics.clean, topics.dlq, *extra):
        producer.list_topics(name, timeout=15)  # the embedded broker auto-creates on metadata requests
    return topics


def bench_replay(bootstrap: str, data: Path) -> dict[str, Any]:
    topics = fresh_topics(bootstrap, "bench-replay")
    settings = ProducerSettings(kafka=KafkaSettings(bootstrap_servers=bootstrap), topics=topics)
    s = replay(data, settings, progress=False)
    assert s.lost == 0 and s.delivered == s.records
    return {"documents": s.delivered, "seconds": round(s.seconds, 3), "docs_per_s": round(s.rate, 1)}


def counters(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def decided(port: int) -> int:
    c = counters(port)
    return int(
        c["mbc_pipeline_accepted_total"]
        + c["mbc_pipeline_duplicate_total"]
        + c["mbc_pipeline_rejected_total"]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def feed(data: Path, settings: ProducerSettings, total: int, sources: int, pace: Any) -> None:
    """Replay ``data`` to ``docs.raw``; with ``sources`` > 1, as that many sources at once (the file
    cut in equal parts, each replayed under its own source name by its own thread).

    The raw topic is keyed by source, so one source is one partition and one stage worker however
    many there are: a second worker only helps when the stream has several sources."""
    if sources <= 1:
        replay(data, settings, progress=False, pace=pace)
        return
    chunk = -(-total // sources)
    sent = [0] * sources

    def part(i: int) -> None:
        def pace_part(n: int) -> None:
            sent[i] = n
            pace(sum(sent))

        replay(
            data,
            settings,
            skip=i * chunk,
            limit=chunk,
            source=f"reuters21578-part{i}",
            progress=False,
            pace=pace_part,
        )

    threads = [threading.Thread(target=part, args=(i,)) for i in range(sources)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def bench_stage(
    bootstrap: str, data: Path, workdir: Path, workers: int = 1, sources: int = 1
) -> dict[str, Any]:
    """``workers`` stage processes in one consumer group (one app id) on 4-partition topics, fed
    ``sources`` sources at once."""
    app_id = f"bench-stage-{uuid.uuid4().hex[:6]}"
    topics = fresh_topics(bootstrap, "bench-stage", f"{app_id}-{TABLE_NAME}-changelog")
    ports = [free_port() for _ in range(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBC_")}
    env.update(
        {
            "MBC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "MBC_TOPICS__RAW": topics.raw,
            "MBC_TOPICS__CLEAN": topics.clean,
            "MBC_TOPICS__DLQ": topics.dlq,
            "MBC_LOG_LEVEL": os.environ.get("BENCH_STAGE_LOG_LEVEL", "WARNING"),
            "MBC_LOG_JSON": "true",
            "MBC_SESSION_TIMEOUT_S": "6",
        }
    )
    stages, logs = [], []
    for i, port in enumerate(ports):
        cmd = [
            sys.executable,
            "-c",
            "from mbc.cli import main; main()",
            "pipeline",
            "run",
            "--app-id",
            app_id,
            "--metrics-port",
            str(port),
            "--state-dir",
            str(workdir / f"{app_id}-{i}"),
        ]
        logs.append((workdir / f"{app_id}-{i}.log").open("wb"))
        stages.append(subprocess.Popen(cmd, env=env, stdout=logs[-1], stderr=subprocess.STDOUT, cwd=REPO))

    def all_decided() -> int:
        return sum(decided(p) for p in ports)

    try:
        for _ in range(300):
            try:
                all_decided()
                break
            except (httpx.HTTPError, KeyError):
                time.sleep(0.2)
        if workers > 1:
            time.sleep(15)  # let the group settle (every member assigned) before the stream starts
        total = len(load_records(data, "jsonl"))
        samples: list[tuple[float, int]] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                samples.append((time.monotonic(), all_decided()))
                done.wait(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        def pace(n: int) -> None:
            while samples and n - samples[-1][1] > MAX_LAG * workers:
                time.sleep(0.02)

        settings = ProducerSettings(kafka=KafkaSettings(bootstrap_servers=bootstrap), topics=topics)
        feed(data, settings, total, sources, pace)
        deadline = time.monotonic() + 600
        while (not samples or samples[-1][1] < total) and time.monotonic() < deadline:
            stalled = [n for t, n in samples if t > time.monotonic() - STALL_S]
            if samples[0][0] < time.monotonic() - STALL_S and len(set(stalled)) <= 1:
                break  # no decision for STALL_S seconds: report it instead of waiting out the deadline
            time.sleep(0.1)
        done.set()
        watcher.join()
        if samples[-1][1] < total:
            return {
                "workers": workers,
                "error": f"stalled at {samples[-1][1]} of {total} decisions",
                "decided_per_worker": [int(decided(p)) for p in ports],
                "logs": [f.name for f in logs],
            }
        first = next(t for t, n in samples if n > 0)
        last = next(t for t, n in samples if n >= total)
        lag_free = sum(1 for _, n in samples if 0 < n < total)  # samples while the stage was working
        per_worker = [int(decided(p)) for p in ports]
        return {
            "workers": workers,
            "sources": sources,
            "documents": total,
            "seconds": round(last - first, 3),
            "docs_per_s": round(total / (last - first), 1),
            "decided_per_worker": per_worker,
            "counters": {k: sum(counters(p).get(k, 0.0) for p in ports) for k in counters(ports[0])},
            "note": f"feeder kept at most {MAX_LAG * workers} documents ahead; {lag_free} samples at 10 Hz "
            "while busy",
        }
    finally:
        for stage in stages:
            stage.terminate()
        for stage in stages:
            stage.wait(60)
        for log in logs:
            log.close()


def machine() -> dict[str, Any]:
    import aiokafka
    import confluent_kafka
    import faust

    return {
        **host_machine(),
        "versions": {
            "confluent-kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0],
            "faust-streaming": faust.__version__,
            "aiokafka": aiokafka.__version__,
        },
        "broker": "embedded (librdkafka mock cluster, 1 broker, in a child process)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Reuters jsonl file")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting the embedded broker")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (median reported)")
    parser.add_argument(
        "--output", type=Path, default=REPO / "bench" / "results" / "pipeline_throughput.json"
    )
    parser.add_argument(
        "--stage-workers",
        default="1",
        help="comma-separated stage process counts to measure (one consumer group each), e.g. 1,2",
    )
    parser.add_argument("--skip-replay", action="store_true", help="measure the stage only")
    parser.add_argument(
        "--sources",
        type=int,
        default=1,
        help="feed the stage as this many sources at once (raw is keyed by source: 1 = one partition)",
    )
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data} not found (../shared/data/reuters)")
    result: dict[str, Any] = {
        "benchmark": "pipeline throughput (documents/s), Reuters-21578 jsonl",
        "command": " ".join([os.path.relpath(sys.executable, REPO), *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip(),
        "machine": machine(),
        "data": str(args.data),
        "note": "CPU machine shared with other work (see load averages): figures are lower bounds. "
        "replay: read + normalize + idempotent produce + all delivery reports; stage: first to last "
        "decision of the faust worker(s) fed with backpressure, embedded broker (4 partitions); "
        "N workers share one consumer group and split the partitions.",
    }
    workdir = REPO / "mbc-data" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    broker = None if args.bootstrap else BrokerProcess()
    try:
        bootstrap = args.bootstrap or broker.start()  # type: ignore[union-attr]
        runs: dict[str, list[dict[str, Any]]] = {}
        if not args.skip_replay:
            runs["replay_to_raw"] = [bench_replay(bootstrap, args.data) for _ in range(args.repeats)]
        for workers in (int(w) for w in args.stage_workers.split(",")):
            name = "stage_raw_to_clean" + ("" if workers == 1 else f"_{workers}_workers")
            runs[name] = [
                bench_stage(bootstrap, args.data, workdir, workers, args.sources) for _ in range(args.repeats)
            ]
    finally:
        if broker is not None:
            broker.stop()
    for name, items in runs.items():
        rates = [r["docs_per_s"] for r in items if "docs_per_s" in r]
        result[name] = {"median_docs_per_s": statistics.median(rates) if rates else None, "runs": items}
    result["machine"]["load_average_at_end"] = load_average()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k]["median_docs_per_s"] for k in runs}, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
