"""Soak: `mbc learn` over many documents on the embedded broker, its resident memory sampled.

The worker runs exactly as users run it (a child process: `mbc learn`, the pipelined worker,
the online codebook in ``ema`` mode publishing a version every ``--publish-every`` documents,
/metrics served) with the tiny preset on CPU and a SQLite store in a temporary folder. This
process holds the embedded broker, feeds the topic while the worker consumes (at most
:data:`bench.learner_e2e.LEAD` documents ahead of the store: the mock cluster keeps only a few
MB per partition) and samples the worker's RSS every ``--interval`` seconds, together with how
many documents the store holds.

After a warm-up (the first ``--warmup`` documents: model loading, allocator pools, SQLite's page
cache and librdkafka's queues filling), the documents that remain are split in two halves by
the store's count; the figure that matters is the peak RSS of the second half over the peak of
the first. A worker whose memory grows per document (a list of batch ids, a cache without a
bound, log records kept) shows a ratio above 1 that grows with the run; a bounded one stays at
about 1. The store must end holding exactly the produced documents, with offsets summing to
their number.

    python bench/worker_soak.py                                     # 50,000 documents
    python bench/worker_soak.py --docs 5000 --out /tmp/soak.json    # a quick look

tests/worker/test_soak.py runs :func:`run_soak` and asserts the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import learner_e2e as e2e  # noqa: E402
from bench.learner_e2e import build_checkpoint, events, exactness, feed, stored, worker_env  # noqa: E402
from bench.machine import host_machine, load_average  # noqa: E402

MB = 1024 * 1024


def make_texts(n: int) -> list[str]:
    """``n`` distinct texts of 10 to 150 words (the tiny preset truncates at 128 tokens), so that
    batches have many different padded lengths, as a real stream does."""
    return e2e.make_texts(n, 10, max_words=150)


def memory_bytes(pid: int) -> tuple[int, int]:
    """(RSS, anonymous part of it) of ``pid``: /proc/<pid>/status VmRSS and RssAnon on Linux, psutil
    elsewhere (where the anonymous part is not known: -1). Growth that is a leak is anonymous
    memory; the file-backed rest (shared libraries paged in) moves with what the machine does."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        fields = dict(ln.split(":", 1) for ln in status.read_text().splitlines() if ":" in ln)
        kb = lambda name: int(fields[name].split()[0]) * 1024  # noqa: E731
        return kb("VmRSS"), kb("RssAnon")
    import psutil

    return int(psutil.Process(pid).memory_info().rss), -1


class Sample(NamedTuple):
    seconds: float  # since the worker started
    documents: int  # stored so far
    rss: int  # bytes
    anon: int  # bytes of RSS that are anonymous memory (-1: unknown)


@dataclass
class SoakResult:
    documents: int
    warmup_documents: int
    samples: list[Sample]
    exact: dict[str, Any]
    exit_code: int | None
    docs_per_s: float | None
    halves: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""


def halves(samples: list[Sample], total: int, warmup: int) -> dict[str, Any]:
    """Peak, median, first and last RSS (and its anonymous part) of the two halves of the documents
    after ``warmup``, split by the store's count."""
    middle = warmup + (total - warmup) // 2
    first = [s for s in samples if warmup <= s.documents < middle]
    second = [s for s in samples if middle <= s.documents <= total]
    if len(first) < 3 or len(second) < 3:
        raise ValueError(f"too few RSS samples in a half ({len(first)}, {len(second)}): lower --interval")

    def figures(part: list[Sample], name: str) -> dict[str, Any]:
        out: dict[str, Any] = {f"{name}_documents": [part[0].documents, part[-1].documents]}
        out[f"{name}_samples"] = len(part)
        for kind in ("rss", "anon"):
            values = [getattr(s, kind) for s in part]
            out[f"{name}_peak_{kind}_mb"] = round(max(values) / MB, 2)
            out[f"{name}_median_{kind}_mb"] = round(statistics.median(values) / MB, 2)
            out[f"{name}_start_{kind}_mb"] = round(values[0] / MB, 2)
            out[f"{name}_end_{kind}_mb"] = round(values[-1] / MB, 2)
        return out

    out = {**figures(first, "first_half"), **figures(second, "second_half")}
    for kind in ("rss", "anon"):
        for stat in ("peak", "median"):
            second_mb, first_mb = out[f"second_half_{stat}_{kind}_mb"], out[f"first_half_{stat}_{kind}_mb"]
            out[f"{stat}_{kind}_ratio"] = round(second_mb / first_mb, 4) if first_mb > 0 else None
    return out


def run_soak(
    docs: int,
    work: Path,
    bootstrap: str,
    warmup: int | None = None,
    interval_s: float = 0.1,
    timeout_s: float = 1800,
    batch_size: int = 64,
    publish_every: int = 2000,
    checkpoint: Path | None = None,
) -> SoakResult:
    """Run `mbc learn` until the store holds ``docs`` documents, sampling its RSS (module docstring).

    ``checkpoint``: None builds a tiny-preset one in ``work`` (random weights: speed and memory do
    not depend on training)."""
    warmup = docs // 10 if warmup is None else warmup
    work.mkdir(parents=True, exist_ok=True)
    texts = make_texts(docs)
    if checkpoint is None:
        checkpoint = work / "checkpoint"
    if not checkpoint.exists():
        build_checkpoint("tiny", texts, checkpoint)
    run = f"soak-{time.time_ns()}"
    messages = events(texts, run)
    db, topic = work / f"{run}.db", f"{run}.clean"
    env = worker_env(bootstrap, db, run, topic, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-c",
        "from mbc.cli import main; main()",
        "learn",
        "--checkpoint",
        str(checkpoint),
        "--device",
        "cpu",
        "--batch-max-size",
        str(batch_size),
        "--codebook",
        "ema",
        "--publish-every",
        str(publish_every),
        "--metrics-port",
        "0",
    ]
    log = work / f"{run}.log"
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO)
    stop = threading.Event()
    producer = threading.Thread(target=feed, args=(bootstrap, topic, messages, db, stop), daemon=True)
    producer.start()
    samples: list[Sample] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout_s and proc.poll() is None:
            n = stored(db)
            samples.append(Sample(round(time.monotonic() - t0, 3), n, *memory_bytes(proc.pid)))
            if n >= docs:
                break
            time.sleep(interval_s)
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        producer.join(70)
    moved = [s for s in samples if warmup <= s.documents]
    rate = (
        (moved[-1].documents - moved[0].documents) / (moved[-1].seconds - moved[0].seconds)
        if len(moved) >= 2
        else None
    )
    result = SoakResult(
        documents=docs,
        warmup_documents=warmup,
        samples=samples,
        exact=exactness(db, messages, run, topic),
        exit_code=proc.returncode,
        docs_per_s=round(rate, 1) if rate else None,
        log_tail=log.read_text(errors="replace")[-2000:],
    )
    if samples and samples[-1].documents >= docs:
        result.halves = halves(samples, docs, warmup)
    return result


def machine() -> dict[str, Any]:
    import torch

    return {**host_machine(), "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--warmup", type=int, default=None, help="documents before the halves (default: 10%%)")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between RSS samples")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--publish-every", type=int, default=2000, help="documents between codebook versions")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds at most")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mbc-bench-soak"))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "worker_soak.json")
    args = ap.parse_args()
    from infra.broker import EmbeddedBroker

    info = machine()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with EmbeddedBroker() as broker:
        r = run_soak(
            args.docs,
            args.work,
            broker.bootstrap_servers,
            warmup=args.warmup,
            interval_s=args.interval,
            timeout_s=args.timeout,
            batch_size=args.batch_size,
            publish_every=args.publish_every,
        )
    info["load_average_at_end"] = load_average()
    every = max(1, len(r.samples) // 200)  # the curve, thinned to about 200 points
    out = {
        "benchmark": "learner worker soak: RSS over a long stream (mbc learn, tiny preset, CPU, SQLite)",
        "command": "python " + " ".join(sys.argv),
        "date": started,
        "machine": info,
        "worker": f"mbc learn --device cpu --batch-max-size {args.batch_size} --codebook ema "
        f"--publish-every {args.publish_every} --metrics-port 0 (pipeline depth 3)",
        "broker": "embedded librdkafka mock cluster (fed at most LEAD documents ahead of the store)",
        "documents": r.documents,
        "warmup_documents": r.warmup_documents,
        "docs_per_s_after_warmup": r.docs_per_s,
        "exit_code": r.exit_code,
        "exact": r.exact,
        **r.halves,
        "samples_total": len(r.samples),
        "curve_seconds_documents_rss_mb_anon_mb": [
            (s.seconds, s.documents, round(s.rss / MB, 2), round(s.anon / MB, 2)) for s in r.samples[::every]
        ],
    }
    summary = {k: v for k, v in out.items() if k not in ("curve_seconds_documents_rss_mb_anon_mb", "machine")}
    print(json.dumps(summary, indent=2))
    if not r.halves:
        print(r.log_tail, file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
