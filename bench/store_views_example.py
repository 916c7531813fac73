"""Build the README's example memory from real documents and print the views' output.

Documents: the first ``--reuters`` stories of Reuters-21578 (``../shared/data/reuters``) and every
dated item of the RSS/Atom files in ``../shared/data/feeds``, with their real ids, titles, sources
and publication times. Their codes are random (skewed toward some codes, as trained codebooks
are) because no trained model exists yet; sizes, counts and growth do not depend on that.
Ingestion is simulated as a replay that starts 2026-11-20 06:00 UTC and stores one document every
40 seconds; codebook version 2 (a child of 1) takes over after 60 % of the documents, 1 % of the
documents are deleted again at the end, and each version's health gets the perplexity of its
code usage.

    .venv/bin/python bench/store_views_example.py                      # SQLite and a throwaway Postgres
    .venv/bin/python bench/store_views_example.py --postgres-url URL   # a database created on URL

Writes the queries and their output (PostgreSQL, then a check that SQLite gives the same numbers)
to ``bench/results/store_views_example.md``.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from memory_store.codec import pack_codes_batch
from memory_store.records import CodebookHealth, DocumentRecord
from memory_store.store import MemoryStore

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
K, C, D = 12, 512, 768
REPLAY_START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
QUERIES = {
    "Growth per day": "SELECT * FROM memory_growth_daily ORDER BY bucket",
    "Growth per hour (last 6 hours)": "SELECT * FROM memory_growth_hourly ORDER BY bucket DESC LIMIT 6",
    "Codebook usage": (
        "SELECT version, parent_version, num_codes, dim, documents, stored_codes, codes_used, "
        "usage_fraction, perplexity FROM codebook_usage ORDER BY version"
    ),
    "Sources": "SELECT * FROM source_activity ORDER BY documents DESC, source",
    "Most used codes of Reuters stories published in March 1987, codebook version 2": (
        "SELECT code, sum(n) AS n FROM code_counts_by_day WHERE source = 'reuters' AND codebook_version = 2 "
        "AND day >= '1987-03-01' AND day < '1987-04-01' GROUP BY code ORDER BY n DESC, code LIMIT 5"
    ),
}


def reuters(n: int) -> Iterator[tuple[str, str, str, datetime]]:
    with open(DATA / "reuters" / "reuters21578.jsonl") as f:
        for line, _ in zip(f, range(n), strict=False):
            r = json.loads(line)
            yield (
                r["id"],
                "reuters",
                r["title"],
                datetime.fromisoformat(r["published_at"].replace("Z", "+00:00")),
            )


def feeds() -> Iterator[tuple[str, str, str, datetime]]:
    import feedparser

    for path in sorted((DATA / "feeds").iterdir()):
        for i, e in enumerate(feedparser.parse(path.read_bytes()).entries):
            when = e.get("published_parsed") or e.get("updated_parsed")
            if when is None:
                continue
            ts = datetime.fromtimestamp(calendar.timegm(when), UTC)
            yield f"{path.stem}-{i}", path.stem, e.get("title", ""), ts


def documents(n_reuters: int, seed: int) -> list[tuple[DocumentRecord, bool]]:
    """(record, uses version 2) in ingestion order."""
    rng = np.random.default_rng(seed)
    items = list(reuters(n_reuters))
    for item in feeds():  # feed items arrive at random moments of the replay
        items.insert(int(rng.integers(0, len(items) + 1)), item)
    popularity = rng.dirichlet(np.full(C, 0.3))  # skewed code usage
    codes = rng.choice(C, size=(len(items), K), p=popularity)
    blobs = pack_codes_batch(codes, C)
    switch = int(len(items) * 0.6)
    out = []
    for i, (doc_id, source, title, published) in enumerate(items):
        record = DocumentRecord(
            id=doc_id,
            source=source,
            published_at=published,
            content_sha256=hashlib.sha256(doc_id.encode()).hexdigest(),
            k=K,
            codebook_version=1,
            codes=blobs[i],
            title=title,
            ingested_at=REPLAY_START + timedelta(seconds=40 * i),
        )
        out.append((record, i >= switch))
    return out


def build(url: str, args: argparse.Namespace, index_dir: Path) -> MemoryStore:
    store = MemoryStore(url, auto_migrate=True, index_dir=index_dir)
    rng = np.random.default_rng(args.seed)
    v1 = store.add_codebook_version(rng.normal(size=(C, D)).astype(np.float32))
    docs = documents(args.reuters, args.seed)
    first = [d for d, late in docs if not late]
    for i in range(0, len(first), 500):
        store.write_batch(first[i : i + 500])
    v2 = store.add_codebook_version(rng.normal(size=(C, D)).astype(np.float32), parent=v1)
    late = [DocumentRecord(**{**_fields(d), "codebook_version": v2}) for d, is_late in docs if is_late]
    for i in range(0, len(late), 500):
        store.write_batch(late[i : i + 500])
    ids = [d.id for d, _ in docs]
    store.delete_documents([ids[int(j)] for j in rng.choice(len(ids), size=len(ids) // 100, replace=False)])
    used: dict[int, list[int]] = {}  # version -> the counts of its used codes (counts() lists n > 0)
    for row in store.counts():
        used.setdefault(row.codebook_version, []).append(row.n)
    for version, ns in used.items():  # usage perplexity, as the learner reports it
        p = np.asarray(ns, dtype=np.float64) / sum(ns)
        store.update_codebook_health(
            version, CodebookHealth(perplexity=round(float(np.exp(-(p * np.log(p)).sum())), 1))
        )
    return store


def _fields(d: DocumentRecord) -> dict[str, Any]:
    return {f: getattr(d, f) for f in d.__slots__}


def run_queries(store: MemoryStore) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    out = {}
    with store.engine.connect() as conn:
        for title, sql in QUERIES.items():
            result = conn.execute(sa.text(sql))
            out[title] = (list(result.keys()), [tuple(r) for r in result])
    return out


def cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return (v.astimezone(UTC) if v.tzinfo else v).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] == " ":
        return v[:19]  # SQLite text timestamps
    if isinstance(v, float | Decimal):
        return f"{float(v):g}"
    return str(v)


def table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [columns, *[[cell(v) for v in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reuters", type=int, default=3000, help="Reuters stories to store")
    p.add_argument("--seed", type=int, default=1, help="random seed of codes, codebooks and deletions")
    p.add_argument("--postgres-url", help="server to create the example database on (default: throwaway)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "store_views_example.md")
    args = p.parse_args()
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    from store_bench import postgres_database

    with tempfile.TemporaryDirectory() as tmp, postgres_database(args.postgres_url) as (url, facts):
        pg = build(url, args, Path(tmp) / "pg")
        lite = build(f"sqlite:///{tmp}/example.db", args, Path(tmp) / "lite")
        pg_out, lite_out = run_queries(pg), run_queries(lite)
        for title in QUERIES:  # same numbers on both backends
            a = [[cell(v) for v in r] for r in pg_out[title][1]]
            b = [[cell(v) for v in r] for r in lite_out[title][1]]
            assert a == b, (title, a[:2], b[:2])
        stats = pg.stats()
        pg.close()
        lite.close()
    lines = [
        f"Example memory: {stats.documents:,} documents, {stats.code_bytes:,} code bytes "
        f"({stats.code_bytes / stats.documents:.0f} per document); a float memory would need "
        f"{stats.float_equivalent_bytes:,} bytes (x{stats.compression_ratio:,.0f}).",
        f"Produced by `.venv/bin/python bench/store_views_example.py` on {datetime.now(UTC):%Y-%m-%d}, "
        f"PostgreSQL {facts['version'].split()[1]}; SQLite returned the same rows.",
        "",
    ]
    for title, sql in QUERIES.items():
        lines += [f"### {title}", "", "```sql", sql + ";", "```", "", "```", table(*pg_out[title]), "```", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
