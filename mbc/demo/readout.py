"""What the memory store holds after the run: its stats, the SQL views and the codebook health."""

from __future__ import annotations

from typing import Any


def read_store(store: Any) -> dict[str, Any]:
    """Stats, ``memory_growth_hourly``, ``source_activity`` and one row per codebook version."""
    from memory_store.views import read_view

    stats = store.stats()
    growth_cols, growth_rows = read_view(store.engine, "memory_growth_hourly")
    source_cols, source_rows = read_view(store.engine, "source_activity")
    _, usage_rows = read_view(store.engine, "codebook_usage")
    usage = {int(r[0]): r for r in usage_rows}  # version, parent, num_codes, dim, created, documents, ...
    codebook = []
    for info in store.codebook_versions():
        h = info.health
        u = usage.get(info.version)
        codebook.append(
            {
                "version": info.version,
                "parent": info.parent_version,
                "origin": (h.extra or {}).get("origin"),
                "documents": int(u[5]) if u else 0,
                "codes_used": int(u[7]) if u else 0,
                "num_codes": info.num_codes,
                "perplexity": h.perplexity,
                "dead_codes": h.dead_codes,
                "resets": h.resets,
                "mean_quantization_error": (h.extra or {}).get("mean_quantization_error"),
                "observed_docs": (h.extra or {}).get("observed_docs"),
            }
        )
    return {
        "store": {
            "documents": stats.documents,
            "sources": stats.sources,
            "codebook_versions": stats.codebook_versions,
            "code_bytes": stats.code_bytes,
            "float_equivalent_bytes": stats.float_equivalent_bytes,
        },
        "growth": {"view": "memory_growth_hourly", "columns": growth_cols, "rows": growth_rows},
        "sources": {"view": "source_activity", "columns": source_cols, "rows": source_rows},
        "codebook": codebook,
    }
