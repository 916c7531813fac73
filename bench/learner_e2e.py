"""End-to-end documents/s of the learner worker: consume from Kafka -> tokenize -> amortize ->
quantize -> store commit (documents, packed codes and offsets in one transaction) -> Kafka commit.

Runs `mbc learn` exactly as users do (a child process) against the embedded broker and a SQLite
store, for each batch size and precision asked for, over the same pre-produced topic of
documents whose texts are longer than the model's 1,024-token window, fed while the worker runs (so every document is
amortized at the full length). Throughput is measured from the store: the time between the
first and the last committed batch, over the documents committed in between (start-up, model
loading and compilation are excluded).

    python bench/learner_e2e.py --out bench/results/learner_e2e.json               # GPU
    python bench/learner_e2e.py --preset tiny --docs 300 --configs 32:auto --device cpu --out /tmp/e2e.json
    python bench/learner_e2e.py --checkpoint mbc/demo/assets/checkpoint --device cpu --words 150 \
        --docs 4000 --configs 64:auto:1,64:auto:3 --out bench/results/learner_e2e_cpu.json

A configuration is ``batch_size:precision[:pipeline_depth]`` (depth 1: the serial worker). For
each distinct batch size and precision the bench also measures the encode-only rate in this
process first — pre-tokenized ids -> amortize -> quantize -> codes on the host, no Kafka, no
store (the "GPU-side" figure) — so that each run reports end-to-end / encode-only. After each
run the store must hold exactly the produced documents (ids compared) and offsets summing to
their number: no document lost, none duplicated.

Random weights (built from the preset's config) with a tokenizer trained here: speed does not
depend on training.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LEAD = 2048  # documents produced ahead of the store at most (see feed)
sys.path.insert(0, str(REPO))

from bench.machine import host_machine, load_average, torch_machine  # noqa: E402


def make_texts(n: int, words_per_doc: int, seed: int = 0, max_words: int | None = None) -> list[str]:
    """``n`` distinct texts of ``words_per_doc`` words (of ``words_per_doc`` to ``max_words`` when given)."""
    rng = random.Random(seed)
    syll = ["ka", "to", "ren", "mi", "sol", "ver", "an", "del", "qu", "or", "ist", "ban", "lo", "tre", "ux"]
    vocab = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 3))) for _ in range(3000)]
    length = (lambda: rng.randint(words_per_doc, max_words)) if max_words else (lambda: words_per_doc)
    return [" ".join(rng.choice(vocab) for _ in range(length())) + f" doc {i}." for i in range(n)]


def build_checkpoint(preset_name: str, texts: list[str], out: Path) -> None:
    import torch

    from learner.checkpoint import CheckpointMeta, save_checkpoint
    from learner.model.build import arch_configs, build_model
    from learner.model.presets import get_preset
    from learner.text.tokenizers import Tokenizers, train_tokenizer

    torch.manual_seed(0)
    preset = get_preset(preset_name)
    tok = train_tokenizer(texts[:500], vocab_size=4000)
    toks = Tokenizers(tok, tok, shared=True)
    model = build_model(preset.model, "scratch", toks)
    meta = CheckpointMeta(preset.model, preset.train, "scratch", "compressed", arch_configs(model), None, 0)
    save_checkpoint(out, model, toks, meta)


def events(texts: list[str], run: str) -> list[tuple[bytes, bytes]]:
    """Document events (key, value); ``run`` makes ids distinct per configuration."""
    from pipeline.events import make_document

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i, text in enumerate(texts):
        doc = make_document(
            source="bench", ref=f"{run}-{i}", text=text, title=f"d{i}", published_at=t0 + timedelta(seconds=i)
        )
        out.append((doc.key, doc.to_json()))
    return out


def feed(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], db: Path, stop: threading.Event
) -> None:
    """Produce ``messages`` while keeping at most LEAD of them ahead of what the store holds.

    librdkafka's mock cluster keeps only about 5 MB per partition and silently drops older
    messages, so producing a whole run of 1,024-token documents up front would lose most of them.
    """
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    sent = 0
    while sent < len(messages) and not stop.is_set():
        if sent - stored(db) >= LEAD:
            p.poll(0.05)
            continue
        for key, value in messages[sent : sent + 256]:
            p.produce(topic, key=key, value=value)
        sent = min(sent + 256, len(messages))
        p.poll(0)
    p.flush(60)


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM documents").fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet
        return 0


def worker_env(bootstrap: str, db: Path, group: str, topic: str, **extra: str) -> dict[str, str]:
    """The environment of an `mbc learn` child: this repository importable, the broker, a SQLite store,
    its own consumer group and topics, JSON logs."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "MBC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "MBC_DATABASE__URL": f"sqlite:///{db}",
        "MBC_GROUP_ID": group,
        "MBC_TOPICS__CLEAN": topic,
        "MBC_TOPICS__DLQ": topic + ".dlq",
        "MBC_LOG_JSON": "true",
        "MBC_BATCH_MAX_WAIT_S": "0.5",
        **extra,
    }


def run_once(
    args: argparse.Namespace,
    bootstrap: str,
    batch: int,
    precision: str,
    depth: int,
    work: Path,
    messages: list[tuple[bytes, bytes]],
) -> dict[str, Any]:
    name = f"{batch}-{precision}-{depth}"
    db = work / f"e2e-{name}-{time.time_ns()}.db"
    topic = f"{args.topic}.{name.replace('+', '-')}.{time.time_ns()}"
    group = f"bench-{name}-{time.time_ns()}"
    env = worker_env(bootstrap, db, group, topic)
    cmd = [
        sys.executable,
        "-c",
        "from mbc.cli import main; main()",
        "learn",
        "--checkpoint",
        str(work / "checkpoint" if args.checkpoint is None else args.checkpoint.resolve()),
        "--batch-max-size",
        str(batch),
        "--device",
        args.device,
        "--precision",
        precision.removesuffix("+compile"),
        "--compile" if precision.endswith("+compile") else "--no-compile",
        "--pipeline-depth",
        str(depth),
    ]
    log = work / f"e2e-{name}.log"
    log.unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO)
    stop = threading.Event()
    producer = threading.Thread(target=feed, args=(bootstrap, topic, messages, db, stop), daemon=True)
    producer.start()
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            n = stored(db)
            samples.append((time.monotonic(), n))
            if n >= args.docs or proc.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    row: dict[str, Any] = {
        "batch_size": batch,
        "precision": precision,
        "pipeline_depth": depth,
        "stored": samples[-1][1],
        "exit_code": proc.returncode,
        "exact": exactness(db, messages, group, topic),
        "from_worker_log": stage_times(log),
    }
    moved = [(t, n) for t, n in samples if n > 0]
    if len(moved) < 2 or moved[-1][1] == moved[0][1]:
        row["error"] = "no throughput measured: " + log.read_text(errors="replace")[-600:]
        return row
    (t_first, n_first), (t_last, n_last) = moved[0], moved[-1]
    row["docs_per_s"] = (n_last - n_first) / (t_last - t_first)
    row["measured_docs"] = n_last - n_first
    return row


def exactness(db: Path, messages: list[tuple[bytes, bytes]], group: str, topic: str) -> dict[str, Any]:
    """The store against what was produced: every id once (ids are the primary key), offsets summing
    to the number of documents consumed."""
    want = {json.loads(v)["id"] for _, v in messages}
    with sqlite3.connect(db, timeout=30) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM documents")]
        offsets = conn.execute(
            "SELECT coalesce(sum(next_offset), 0) FROM consumed_offsets WHERE consumer_group = ? AND topic = ?",
            (group, topic),
        ).fetchone()[0]
    got = set(ids)
    return {
        "produced": len(want),
        "stored": len(ids),
        "missing": len(want - got),
        "unexpected": len(got - want),
        "duplicated": len(ids) - len(got),
        "stored_offsets_sum": int(offsets),
        "ok": got == want and len(ids) == len(got) and int(offsets) == len(want),
    }


def stage_times(log: Path) -> dict[str, Any]:
    """Mean per-batch figures from the worker's 'batch stored' log lines (steady state: the first
    two batches dropped)."""
    rows = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"batch stored"' in line:
            e = json.loads(line)
            rows.append((datetime.fromisoformat(e["timestamp"]), e))
    rows = rows[2:]
    if len(rows) < 3:
        return {}
    span = (rows[-1][0] - rows[0][0]).total_seconds()
    docs = sum(e["inserted"] + e["duplicates"] for _, e in rows[1:])
    mean = lambda key: round(sum(float(e.get(key) or 0) for _, e in rows) / len(rows), 1)  # noqa: E731
    return {
        "batches": len(rows),
        "docs_per_s": round(docs / span, 1) if span > 0 else None,
        "mean_batch_interval_ms": round(1000 * span / (len(rows) - 1), 1),
        "mean_tokenize_ms": mean("tokenize_ms"),
        "mean_encode_ms": mean("encode_ms"),
    }


def encode_only(args: argparse.Namespace, texts: list[str], batch: int, precision: str) -> dict[str, Any]:
    """Documents/s of pre-tokenized ids -> amortize -> quantize -> codes on the host, at ``batch``."""
    import torch

    from learner.inference.encode import DocumentEncoder
    from learner.model.codebook_math import quantize

    enc = DocumentEncoder.load(
        args.work / "checkpoint" if args.checkpoint is None else args.checkpoint,
        args.device,
        precision=precision.removesuffix("+compile"),
        compile=precision.endswith("+compile"),
    )
    vectors = enc.initial_codebook().to(enc.device)  # (C, D)
    n = min(len(texts) // batch, args.encode_batches + 2)
    tokens = [enc.tokenize(texts[i * batch : (i + 1) * batch]) for i in range(n)]
    if enc.device.type == "cuda":
        tokens = [(ids.pin_memory(), mask.pin_memory()) for ids, mask in tokens]

    def one(ids: torch.Tensor, mask: torch.Tensor) -> None:
        z = enc.encode_tokens(ids, mask)  # (B, K, D)
        codes, _ = quantize(z, vectors)  # (B, K)
        codes.cpu()

    for ids, mask in tokens[:2]:  # warm-up (and compilation)
        one(ids, mask)
    t0 = time.perf_counter()
    for ids, mask in tokens[2:]:
        one(ids, mask)
    if enc.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    for i in range(2, n):
        enc.tokenize(texts[i * batch : (i + 1) * batch])
    tokenize_s = time.perf_counter() - t1
    docs = batch * (n - 2)
    return {
        "batch_size": batch,
        "precision": precision,
        "documents": docs,
        "docs_per_s": round(docs / seconds, 1),
        "tokenize_only_docs_per_s": round(docs / tokenize_s, 1),
        "device": str(enc.device),
    }


def machine() -> dict[str, Any]:
    import torch

    return {**host_machine(), **torch_machine(), "torch_threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="distilgpt2")
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--words", type=int, default=900, help="words per document (>1,024 tokens)")
    ap.add_argument(
        "--configs",
        default="128:bf16,512:bf16,2048:bf16,512:bf16+compile,512:autocast",
        help="batch_size:precision pairs, comma-separated (precision: auto, bf16, fp32, autocast, X+compile)",
    )
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--timeout", type=float, default=240, help="seconds per configuration at most")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mbc-bench-e2e"))
    ap.add_argument("--topic", default="bench.clean")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "learner_e2e.json")
    ap.add_argument(
        "--checkpoint", type=Path, help="use this checkpoint instead of building one from --preset"
    )
    ap.add_argument("--encode-batches", type=int, default=20, help="batches timed for the encode-only rate")
    args = ap.parse_args()
    from infra.broker import EmbeddedBroker

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    texts = make_texts(args.docs, args.words)
    if args.checkpoint is None:
        build_checkpoint(args.preset, texts, args.work / "checkpoint")
        print(f"checkpoint built in {time.time() - t0:.0f} s", flush=True)
    result: dict[str, Any] = {
        "benchmark": "learner end to end: consume -> tokenize -> amortize -> quantize -> store commit",
        "command": "python " + " ".join(sys.argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "preset": args.preset if args.checkpoint is None else None,
        "checkpoint": str(args.checkpoint)
        if args.checkpoint is not None
        else "built from --preset, random weights",
        "words_per_document": args.words,
        "device": args.device,
        "documents": args.docs,
        "store": "SQLite (file) on local disk",
        "broker": "embedded librdkafka mock cluster (fed at most LEAD documents ahead of the store)",
        "machine": machine(),
        "encode_only": [],
        "runs": [],
    }
    only: dict[tuple[int, str], dict[str, Any]] = {}
    with EmbeddedBroker() as broker:
        for config in args.configs.split(","):
            batch, precision, *rest = config.split(":")
            depth = int(rest[0]) if rest else 1
            key = (int(batch), precision)
            if key not in only:
                only[key] = encode_only(args, texts, int(batch), precision)
                print(json.dumps(only[key]), flush=True)
                result["encode_only"].append(only[key])
            messages = events(texts, config + f"-{time.time_ns()}")
            row = run_once(args, broker.bootstrap_servers, int(batch), precision, depth, args.work, messages)
            if "docs_per_s" in row:
                row["ratio_to_encode_only"] = round(row["docs_per_s"] / only[key]["docs_per_s"], 3)
            print(json.dumps(row), flush=True)
            result["runs"].append(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    result["machine"]["load_average_at_end"] = load_average()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
