"""The text report of ``mbc demo``, rendered from its summary (the same data ``--json-out`` writes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return text[:19] if len(text) == 26 and text[19:20] == "." else text  # SQLite's timestamp text


def _mark(answer: str, right: bool) -> str:
    return f"{answer or '(empty)'} ({'right' if right else 'wrong'})"


def _aligned(rows: list[tuple[str, float, str]], indent: str = "    ") -> list[str]:
    width = max(len(label) for label, _, _ in rows)
    return [f"{indent}{label.ljust(width)}  {value:.2f}{note}" for label, value, note in rows]


def _table(columns: list[str], rows: list[list[str]], indent: str = "  ") -> str:
    cells = [columns, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(indent + line for line in lines)


def report(summary: dict[str, Any]) -> str:
    """The human-readable report of a finished run."""
    pub, books, dlq, st = summary["published"], summary["stage"], summary["dead_letters"], summary["store"]
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(books["rejected"].items())) or "none"
    learner_dead = dlq["by_stage"].get("learner", 0)
    em, sl = summary["em"], summary["slice"]
    per_doc = st["code_bytes"] / max(1, st["documents"])
    lines = [
        "mbc demo: a news/knowledge stream through Kafka, the faust stage and the MBC learner into a",
        "compressed memory store, then questions answered from that memory. Everything ran locally.",
        "",
        "Documents",
        f"  events published to docs.raw  {pub['total']:>5}   ({pub['replay']} replayed from stream.jsonl, "
        f"{pub['feed']} from the RSS feed, {pub['malformed']} malformed raw events)",
        f"  accepted -> docs.clean        {books['accepted']:>5}",
        f"  deduplicated                  {books['duplicate']:>5}   (same text from the same source again)",
        f"  dead-lettered -> docs.dlq     {books['dead_lettered']:>5}   ({reasons})",
        f"  stored in the memory          {st['documents']:>5}   (dead-lettered by the learner: {learner_dead})",
        f"  memory size                   {st['code_bytes']:>5} bytes of codes ({per_doc:g} per document); as float "
        f"vectors it would be {st['float_equivalent_bytes']:,} bytes "
        f"({st['float_equivalent_bytes'] / max(1, st['code_bytes']):,.0f}x)",
        "",
        "Memory growth (SELECT * FROM memory_growth_hourly ORDER BY bucket; buckets are ingestion hours)",
        _table(summary["growth"]["columns"], [[_fmt(v) for v in r] for r in summary["growth"]["rows"]]),
        "",
        "Documents per source (SELECT * FROM source_activity)",
        _table(
            summary["sources"]["columns"][:5],
            [[_fmt(v) for v in r[:5]] for r in summary["sources"]["rows"]],
        ),
        "",
        "Codebook health, per version (learner --codebook ema: a new version every 16 documents)",
        _table(
            [
                "version",
                "parent",
                "origin",
                "documents",
                "codes used",
                "perplexity",
                "dead codes",
                "resets",
                "mean quantization error",
            ],
            [
                [
                    _fmt(c["version"]),
                    _fmt(c["parent"]),
                    _fmt(c["origin"]),
                    _fmt(c["documents"]),
                    f"{c['codes_used']}/{c['num_codes']}",
                    _fmt(c["perplexity"], 1),
                    _fmt(c["dead_codes"]),
                    _fmt(c["resets"]),
                    _fmt(c["mean_quantization_error"], 4),
                ]
                for c in summary["codebook"]
            ],
        ),
        "",
        f"Questions about the knowledge documents ({len(summary['shown'])} of {len(summary['questions'])}, "
        f"evenly spaced; with memory = all {summary['memory_documents']} stored documents)",
        _table(
            ["question", "with memory", "no memory", "right answer"],
            [
                [
                    r["question"],
                    _mark(r["with_memory"], r["correct_with_memory"]),
                    _mark(r["without_memory"], r["correct_without_memory"]),
                    r["answer"],
                ]
                for r in (summary["questions"][i] for i in summary["shown"])
            ],
        ),
        "",
        f"  exact match over all {len(summary['questions'])} questions (8 possible answers: chance is 1/8)",
        *_aligned(
            [
                (f"with the memory of all {summary['memory_documents']} documents", em["with_memory"], ""),
                (
                    f"with the memory of source {sl['source']} ({sl['documents']} documents)",
                    em["with_memory_slice"],
                    "   (a slice, as `mbc ask --source` makes)",
                ),
                ("without memory (the base LM alone)", em["without_memory"], ""),
            ]
        ),
        "",
        "The model is the `tiny` preset (width 64, about 0.8 M parameters), trained from scratch on",
        "synthetic biographies (`mbc synth`) on a CPU. The news items are in the memory too, but this",
        "model has never seen news: it cannot answer questions about them.",
    ]
    return "\n".join(lines)
