"""Memory-store benchmark: bulk write rate and counts-query latency over a large memory.

For each backend (PostgreSQL, SQLite) it creates a fresh database, stores ``--docs`` documents
(K = 12 codes each, C = 512, time-ordered over ``--days`` days from ``--sources`` sources, in
batches of ``--batch`` with their consumed offsets, exactly as the learner writes them) and times
every ``write_batch``. Then it times exact counts queries over the whole memory and over slices
(whole days, partial days, one source) and the growth view, and checks the answers.

    .venv/bin/python bench/store_bench.py                       # throwaway Postgres + SQLite, 1M docs
    .venv/bin/python bench/store_bench.py --postgres-url postgresql+psycopg://postgres@127.0.0.1/postgres
    .venv/bin/python bench/store_bench.py --docs 100000 --backends sqlite

With ``--postgres-url`` a database ``mbc_bench_<random>`` is created on that server and dropped
afterwards. Results go to ``bench/results/store_bench.json`` (command, machine, date, settings).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from infra.throwaway_postgres import ThrowawayPostgres
from memory_store.codec import pack_codes_batch
from memory_store.records import ConsumedOffset, DocumentRecord
from memory_store.store import MemoryStore

K, C, D = 12, 512, 768  # distilgpt2 preset: 12 codes per document, 512 codes of size 768
T0 = datetime(2025, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


def batches(n: int, batch: int, sources: int, days: int, seed: int) -> Iterator[list[DocumentRecord]]:
    """Time-ordered documents with uniform random codes, ``batch`` at a time."""
    rng = np.random.default_rng(seed)
    step = timedelta(days=days) / n
    for start in range(0, n, batch):
        m = min(batch, n - start)
        blobs = pack_codes_batch(rng.integers(0, C, size=(m, K)), C)  # (m,) blobs of 14 bytes
        src = rng.integers(0, sources, size=m)
        yield [
            DocumentRecord(
                id=f"doc-{start + i:09d}",
                source=f"source-{src[i]}",
                published_at=T0 + (start + i) * step,
                content_sha256=hashlib.sha256(b"%d" % (start + i)).hexdigest(),
                k=K,
                codebook_version=1,
                codes=blobs[i],
            )
            for i in range(m)
        ]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[dict[str, float], Any]:
    """Run ``fn`` ``repeat`` times; milliseconds (median, min, max) and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}, result


def load(store: MemoryStore, args: argparse.Namespace) -> dict[str, Any]:
    """Write every batch; return rates and batch latencies (document generation not timed)."""
    store.add_codebook_version(np.random.default_rng(0).normal(size=(C, D)).astype(np.float32))
    latencies, written, offset, kept = [], 0, 0, []
    started = time.perf_counter()
    for i, docs in enumerate(batches(args.docs, args.batch, args.sources, args.days, args.seed)):
        offset += len(docs)
        t = time.perf_counter()
        result = store.write_batch(docs, [ConsumedOffset("bench", "docs.clean", i % 4, offset)])
        latencies.append(time.perf_counter() - t)
        written += result.inserted_count
        if i % max(1, len(range(0, args.docs, args.batch)) // 10) == 0:
            kept.append(docs)
            print(f"  {written:>9,} documents, {len(docs) / latencies[-1]:,.0f} docs/s now", flush=True)
    wall = time.perf_counter() - started
    assert written == args.docs, (written, args.docs)
    rewrite = []
    for docs in kept:  # at-least-once redelivery: the same batches again change nothing
        t = time.perf_counter()
        assert store.write_batch(docs).inserted_count == 0
        rewrite.append(time.perf_counter() - t)
    lat = np.array(latencies) * 1000
    return {
        "documents": written,
        "batch_size": args.batch,
        "documents_per_s": written / sum(latencies),
        "documents_per_s_incl_generation": written / wall,
        "documents_per_s_last_10pct": (len(lat) // 10 * args.batch) / (lat[-(len(lat) // 10) :].sum() / 1000)
        if len(lat) >= 10
        else None,
        "batch_ms_p50": float(np.percentile(lat, 50)),
        "batch_ms_p95": float(np.percentile(lat, 95)),
        "batch_ms_max": float(lat.max()),
        "rewrite_duplicate_batch_ms_median": statistics.median(rewrite) * 1000,
    }


def queries(store: MemoryStore, args: argparse.Namespace) -> dict[str, Any]:
    """Latency of exact counts queries; each answer is checked against the documents."""
    span = timedelta(days=args.days)
    mid = T0 + span / 2
    odd = timedelta(hours=10, minutes=17, seconds=3, microseconds=123)
    cases: dict[str, dict[str, Any]] = {
        "whole_memory": {},
        "30_days_whole_days": {
            "since": mid.replace(hour=0, minute=0, second=0, microsecond=0),
            "until": None,
        },
        "30_days_partial_edges": {"since": mid + odd, "until": None},
        "7_days_partial_edges_one_source": {"since": mid + odd, "until": None, "source": "source-3"},
        "one_source_all_time": {"source": "source-3"},
        "1_hour": {"since": mid + odd, "until": mid + odd + timedelta(hours=1)},
    }
    for name, c in cases.items():
        if "since" in c and c.get("until") is None:
            c["until"] = c["since"] + timedelta(days=7 if name.startswith("7_days") else 30)
    out: dict[str, Any] = {}
    for name, c in cases.items():
        stats, rows = timed(lambda c=c: store.counts(**c), args.repeat)
        total = sum(r.n for r in rows)
        assert total == K * documents_in(store, c), name
        out[name] = {**stats, "stored_codes": total, "distinct_codes": len(rows), **_describe(c)}
        print(f"  counts {name:34} {stats['median_ms']:9.2f} ms  ({total:,} codes)", flush=True)
    for name, fn in {
        "stats()": store.stats,
        "view memory_growth_daily": lambda: _view(store, "memory_growth_daily"),
        "view source_activity": lambda: _view(store, "source_activity"),
    }.items():
        stats, _ = timed(fn, max(1, args.repeat // 2))
        out[name] = stats
        print(f"  {name:41} {stats['median_ms']:9.2f} ms", flush=True)
    return out


def documents_in(store: MemoryStore, c: dict[str, Any]) -> int:
    q = "SELECT count(*) FROM documents d JOIN sources s ON s.id = d.source_id WHERE 1 = 1"
    if c.get("since"):
        q += " AND d.published_at >= :since"
    if c.get("until"):
        q += " AND d.published_at < :until"
    if c.get("source"):
        q += " AND s.name = :source"
    stmt = sa.text(q).bindparams(
        *[sa.bindparam(k, type_=sa.DateTime(timezone=True)) for k in ("since", "until") if c.get(k)]
    )
    params = {k: v for k, v in c.items() if v is not None}
    if store.backend == "sqlite":  # stored as naive UTC text
        params = {k: v.replace(tzinfo=None) if isinstance(v, datetime) else v for k, v in params.items()}
    with store.engine.connect() as conn:
        return int(conn.execute(stmt, params).scalar_one())


def _describe(c: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in c.items()}


def _view(store: MemoryStore, name: str) -> int:
    with store.engine.connect() as conn:
        return len(conn.execute(sa.text(f"SELECT * FROM {name}")).all())


def size_on_disk(store: MemoryStore, sqlite_file: Path | None) -> dict[str, Any]:
    with store.engine.connect() as conn:
        if store.backend == "postgresql":
            total = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
            tables = dict(
                conn.exec_driver_sql(
                    "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
                    "WHERE relname IN ('documents', 'code_counts', 'code_counts_daily')"
                ).all()
            )
        else:
            assert sqlite_file is not None
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            total, tables = sqlite_file.stat().st_size, {}
        daily_rows = conn.exec_driver_sql("SELECT count(*) FROM code_counts_daily").scalar_one()
    return {"database_bytes": int(total), "table_bytes": tables, "code_counts_daily_rows": int(daily_rows)}


@contextmanager
def postgres_database(url: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """A fresh database on ``url``'s server, or on a throwaway cluster when ``url`` is None."""
    server = None
    if url is None:
        server = ThrowawayPostgres()
        url = server.start()
    name = f"mbc_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            facts = {
                "server": "throwaway cluster (infra/throwaway_postgres.py, fsync off)"
                if server
                else "given by --postgres-url",
                "version": c.exec_driver_sql("SELECT version()").scalar_one(),
                **{
                    s: c.exec_driver_sql(f"SHOW {s}").scalar_one()
                    for s in ("fsync", "synchronous_commit", "shared_buffers")
                },
            }
        yield sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False), facts
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        if server is not None:
            server.stop()


def run_backend(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    print(f"{backend}: writing {args.docs:,} documents in batches of {args.batch}", flush=True)
    if backend == "sqlite":
        path = tmp / "bench.db"
        return measure(f"sqlite:///{path}", args, tmp, path, {"version": _sqlite_version()})
    with postgres_database(args.postgres_url) as (url, facts):
        return measure(url, args, tmp, None, facts)


def measure(
    url: str, args: argparse.Namespace, tmp: Path, path: Path | None, facts: dict[str, Any]
) -> dict[str, Any]:
    with MemoryStore(url, auto_migrate=True, index_dir=tmp / "faiss") as store:
        writes = load(store, args)
        print(f"  {writes['documents_per_s']:,.0f} documents/s", flush=True)
        size = size_on_disk(store, path)
        return {"server": facts, "write": writes, "size": size, "queries": queries(store, args)}


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def machine() -> dict[str, Any]:
    import faiss
    import psycopg

    from bench.machine import host_machine

    return {
        **host_machine(),
        "libraries": {
            "sqlalchemy": sa.__version__,
            "psycopg": psycopg.__version__,
            "numpy": np.__version__,
            "faiss": faiss.__version__,
            "sqlite": _sqlite_version(),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=1_000_000, help="documents to store per backend")
    p.add_argument("--batch", type=int, default=1000, help="documents per write_batch (one transaction)")
    p.add_argument("--sources", type=int, default=8, help="distinct sources")
    p.add_argument("--days", type=int, default=365, help="days the documents' publication times span")
    p.add_argument("--repeat", type=int, default=7, help="runs per query (median reported)")
    p.add_argument("--seed", type=int, default=0, help="random seed of codes and sources")
    p.add_argument("--backends", default="postgres,sqlite", help="comma-separated: postgres, sqlite")
    p.add_argument("--postgres-url", help="server to create the benchmark database on (default: throwaway)")
    p.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "store_bench.json", help="result file"
    )
    args = p.parse_args()
    result: dict[str, Any] = {
        "benchmark": "memory_store bulk writes and counts queries",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "postgres_url")}
        | {"K": K, "C": C, "D": D},
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="mbc-store-bench-") as tmp:
        for backend in args.backends.split(","):
            result["backends"][backend] = run_backend(backend.strip(), args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
