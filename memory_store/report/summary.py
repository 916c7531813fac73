"""``report.md``: the key numbers, the three figures and two short tables on one page.

Numbers are printed with thousands separators and fixed decimals (``fmt_int``, ``fmt_float``) so
that a reader — and a test — can find them verbatim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from memory_store.report.data import ReportData, SourceRow, VersionRow
from memory_store.report.plots import ingest_rows, ingest_unit

REPORT_MD = "report.md"
MAX_SOURCES = 10  # the page stays one page; the rest is summed up in one line
_NONE = "–"


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_float(x: float, decimals: int = 1) -> str:
    return f"{x:,.{decimals}f}"


def fmt_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def key_numbers(data: ReportData) -> list[tuple[str, str]]:
    """(label, value) rows of the summary table, in order."""
    rows = ingest_rows(data)
    unit = ingest_unit(data)
    peak = max(rows, key=lambda r: r.documents)
    return [
        ("documents", fmt_int(data.documents)),
        ("code bytes (packed MBC codes)", fmt_int(data.code_bytes)),
        ("bytes per document", fmt_float(data.bytes_per_document, 2)),
        ("float-equivalent bytes (uncompressed, MAC-style)", fmt_int(data.float_equivalent_bytes)),
        ("compression ratio (float-equivalent / code bytes)", f"{fmt_float(data.compression_ratio)}×"),
        ("codebook versions", fmt_int(len(data.versions))),
        ("sources", fmt_int(len(data.sources))),
        (
            f"ingest rate (per active {unit})",
            f"{fmt_float(data.documents / len(rows))} documents on average; peak {fmt_int(peak.documents)} "
            f"({fmt_time(peak.bucket)} UTC)",
        ),
    ]


def render_summary(data: ReportData, images: Mapping[str, Path]) -> str:
    """The Markdown text; ``images`` are the PNGs (linked by file name, they sit next to it)."""
    lines = [
        "# mbc-stream memory report",
        "",
        f"Store `{data.database}` ({data.backend}), generated {fmt_time(data.generated_at)} UTC. "
        f"Documents ingested from {fmt_time(data.first_ingested_at)} to "
        f"{fmt_time(data.last_ingested_at)} UTC. Numbers come from the store's SQL views "
        "(`memory_growth_hourly`, `memory_growth_daily`, `codebook_usage`, `source_activity`).",
        "",
        "| figure | value |",
        "|---|---:|",
        *(f"| {label} | {value} |" for label, value in key_numbers(data)),
        "",
        "## Memory size",
        "",
        f"![Memory size vs documents stored]({images['memory'].name})",
        "",
        "The float-equivalent size is what an uncompressed memory (MAC) would hold for the same "
        "documents: K × D × 4 bytes each, D of the codebook that encoded the document.",
        "",
        "## Codebook versions",
        "",
        f"![Codebook usage and health over versions]({images['codebooks'].name})",
        "",
        *_versions_table(data.versions),
        "",
        "## Ingest rate",
        "",
        f"![Documents stored per {ingest_unit(data)}]({images['ingest'].name})",
        "",
        "## Sources",
        "",
        *_sources_table(data.sources),
        "",
    ]
    return "\n".join(lines)


def write_summary(data: ReportData, images: Mapping[str, Path], out_dir: Path) -> Path:
    path = out_dir / REPORT_MD
    path.write_text(render_summary(data, images), encoding="utf-8")
    return path


def _opt(value: float | int | None, spec: str) -> str:
    return _NONE if value is None else format(value, spec)


def _versions_table(versions: Sequence[VersionRow]) -> list[str]:
    out = [
        "| version | parent | C | D | documents | codes in use | perplexity | dead codes | resets "
        "| mean quantization error |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in versions:
        parent = _NONE if v.parent_version is None else f"v{v.parent_version}"
        out.append(
            f"| v{v.version} | {parent} | {fmt_int(v.num_codes)} | {fmt_int(v.dim)} | {fmt_int(v.documents)} "
            f"| {fmt_int(v.codes_used)} ({fmt_float(100 * v.usage_fraction)} %) | {_opt(v.perplexity, ',.1f')} "
            f"| {_opt(v.dead_codes, ',d')} | {_opt(v.resets, ',d')} | {_opt(v.mean_quantization_error, '.4g')} |"
        )
    return out


def _sources_table(sources: Sequence[SourceRow]) -> list[str]:
    out = ["| source | documents | code bytes | last seen (UTC) |", "|---|---:|---:|---|"]
    for s in sources[:MAX_SOURCES]:
        seen = _NONE if s.last_seen_at is None else fmt_time(s.last_seen_at)
        name = s.source.replace("|", "\\|")
        out.append(f"| {name} | {fmt_int(s.documents)} | {fmt_int(s.code_bytes)} | {seen} |")
    rest = sources[MAX_SOURCES:]
    if rest:
        out += ["", f"… and {len(rest):,} more sources with {sum(s.documents for s in rest):,} documents."]
    return out
