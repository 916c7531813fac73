"""Store in, report files out: read the numbers once, draw the figures, write ``report.md``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memory_store.report.data import ReportData, read_report_data
from memory_store.report.errors import ReportOutputError
from memory_store.report.plots import render_all
from memory_store.report.summary import write_summary
from memory_store.store import MemoryStore


@dataclass(frozen=True, slots=True)
class BuiltReport:
    """What was written, and the numbers it shows."""

    data: ReportData
    summary: Path
    images: dict[str, Path]


def build_report(
    store: MemoryStore, out_dir: Path, on_file: Callable[[Path], None] | None = None
) -> BuiltReport:
    """Write ``report.md`` and its PNGs into ``out_dir`` (created if missing).

    The store is read first, so an empty store or an unreachable database leaves no directory
    behind. ``on_file`` is called with each file as it is written (progress for the CLI).
    """
    data = read_report_data(store)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        images = render_all(data, out_dir)
        for path in images.values():
            if on_file is not None:
                on_file(path)
        summary = write_summary(data, images, out_dir)
    except OSError as e:
        raise ReportOutputError(f"cannot write the report to {out_dir}: {e.strerror or e}") from None
    if on_file is not None:
        on_file(summary)
    return BuiltReport(data, summary, images)
