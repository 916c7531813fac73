"""The three figures of ``mbc report``, drawn with matplotlib's Agg canvas only.

Figures are built as plain ``Figure`` objects on a ``FigureCanvasAgg`` (no pyplot, no global
backend switch), so the report works on servers without a display and inside other programs.
Each figure has a fixed size in pixels (``*_PX`` at ``DPI``) and is saved without
``bbox_inches="tight"``, so the PNG sizes are known in advance (the tests check them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from memory_store.report.data import GrowthRow, ReportData, VersionRow

DPI = 100
MEMORY_PX = (1000, 600)  # width, height
CODEBOOK_PX = (1200, 800)
INGEST_PX = (1000, 500)
HOURLY_SPAN_LIMIT = timedelta(days=14)  # longer histories are plotted per day

MEMORY_PNG = "memory_bytes.png"
CODEBOOK_PNG = "codebook_health.png"
INGEST_PNG = "ingest_rate.png"

_FLOAT_COLOR, _CODE_COLOR, _BAR_COLOR, _ALT_COLOR = "#d62728", "#1f77b4", "#4c72b0", "#dd8452"
_thousands = FuncFormatter(lambda x, _pos: f"{x:,.0f}")


def _figure(size_px: tuple[int, int]) -> Figure:
    fig = Figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    return path


def ingest_unit(data: ReportData) -> str:
    """``hour`` unless the history is longer than two weeks, then ``day`` (bars stay readable)."""
    span = data.hourly[-1].bucket - data.hourly[0].bucket
    return "hour" if span <= HOURLY_SPAN_LIMIT else "day"


def ingest_rows(data: ReportData) -> tuple[GrowthRow, ...]:
    """The growth rows the ingest plot (and the summary's rate line) use."""
    return data.hourly if ingest_unit(data) == "hour" else data.daily


def memory_figure(data: ReportData) -> Figure:
    """Cumulative bytes of the packed codes against a float (MAC-style) memory of the same documents.

    The legend sits below the axes and the totals above them, so nothing covers the data: with one
    hour of history each curve is a single point, drawn as a large marker inside padded limits.
    """
    fig = _figure(MEMORY_PX)
    ax = fig.add_subplot()
    x = [r.cumulative_documents for r in data.hourly]
    floats = [r.cumulative_float_equivalent_bytes for r in data.hourly]
    codes = [r.cumulative_code_bytes for r in data.hourly]
    style: dict[str, Any] = {"marker": "o", "markersize": 9 if len(x) <= 3 else 5} if len(x) <= 60 else {}
    ax.plot(
        x,
        floats,
        color=_FLOAT_COLOR,
        label="uncompressed float32 memory (MAC-style: K × D × 4 bytes per document)",
        **style,
    )
    ax.plot(
        x,
        codes,
        color=_CODE_COLOR,
        label="MBC packed codes (this store: K × ⌈log₂ C⌉ bits per document)",
        **style,
    )
    ax.set_yscale("log")
    ax.set_xlim(0, max(x) * 1.08)
    low, high = min((c for c in codes if c > 0), default=1), max(floats)
    ax.set_ylim(low / 4, high * 4)  # a factor of four clear of the axes on a log scale
    ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(_thousands)
    if max(x) < 10:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Memory size vs documents stored (cumulative)", fontsize="x-large")
    ax.set_title(
        f"{data.documents:,} documents: {data.code_bytes:,} B of codes vs "
        f"{data.float_equivalent_bytes:,} B of floats (×{data.compression_ratio:,.1f})",
        fontsize="medium",
    )
    ax.set_xlabel("documents stored (cumulative)")
    ax.set_ylabel("memory size (bytes, log scale)")
    ax.grid(True, which="major", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=1, frameon=False)
    return fig


def plot_memory(data: ReportData, path: Path) -> Path:
    return _save(memory_figure(data), path)


def codebook_figure(data: ReportData) -> Figure:
    """Per codebook version: codes in use, perplexity, dead codes and resets, quantization error."""
    fig = _figure(CODEBOOK_PX)
    (usage, perplexity), (dead, error) = fig.subplots(2, 2, sharex=True)
    versions = data.versions
    _usage_panel(usage, versions)
    _perplexity_panel(perplexity, versions)
    _dead_panel(dead, versions)
    _error_panel(error, versions)
    numbers = [v.version for v in versions]
    for ax in (usage, perplexity, dead, error):
        # MaxNLocator falls back to fractional ticks when few integers are in range
        few = len(numbers) <= 12
        ax.xaxis.set_major_locator(FixedLocator(numbers) if few else MaxNLocator(integer=True, nbins=12))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"v{x:.0f}"))
        ax.grid(True, axis="y", alpha=0.3)
    for ax in (dead, error):
        ax.set_xlabel("codebook version")
    fig.suptitle("Codebook usage and health over versions", fontsize="x-large")
    return fig


def plot_codebooks(data: ReportData, path: Path) -> Path:
    return _save(codebook_figure(data), path)


def _usage_panel(ax: Axes, versions: Sequence[VersionRow]) -> None:
    xs = [v.version for v in versions]
    bars = ax.bar(xs, [100 * v.usage_fraction for v in versions], color=_BAR_COLOR, label="codes in use")
    if len(versions) <= 12:
        ax.bar_label(
            bars,
            labels=[f"{v.documents:,} doc{'s' if v.documents != 1 else ''}" for v in versions],
            padding=2,
            fontsize="small",
        )
    ax.set_ylim(0, 110)
    ax.set_title("Distinct codes used by stored documents")
    ax.set_ylabel("codes in use (% of C)")


def _perplexity_panel(ax: Axes, versions: Sequence[VersionRow]) -> None:
    ax.set_title("Perplexity of code usage")
    ax.set_ylabel("perplexity (effective codes)")
    measured = [(v.version, v.perplexity) for v in versions if v.perplexity is not None]
    ax.plot(
        [v.version for v in versions],
        [v.num_codes for v in versions],
        "k--",
        drawstyle="steps-mid",
        marker="_",
        markersize=16,
        label="C (every code equally used)",
    )
    if measured:
        ax.plot(
            [x for x, _ in measured],
            [p for _, p in measured],
            "o-",
            color=_CODE_COLOR,
            label="measured perplexity",
        )
    else:
        _no_data(ax, "none: no version has a perplexity recorded")
    ax.set_ylim(0, 1.1 * max(v.num_codes for v in versions))
    ax.legend(loc="best")


def _dead_panel(ax: Axes, versions: Sequence[VersionRow]) -> None:
    ax.set_title("Dead codes and online resets")
    ax.set_ylabel("codes")
    dead = [(v.version, v.dead_codes) for v in versions if v.dead_codes is not None]
    resets = [(v.version, v.resets) for v in versions if v.resets is not None]
    if any(n for _, n in dead + resets):
        if dead:
            ax.bar(
                [x - 0.2 for x, _ in dead],
                [n for _, n in dead],
                width=0.4,
                color=_FLOAT_COLOR,
                label="dead codes",
            )
        if resets:
            ax.bar(
                [x + 0.2 for x, _ in resets],
                [n for _, n in resets],
                width=0.4,
                color=_ALT_COLOR,
                label="resets",
            )
        ax.legend(loc="best")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        return
    ax.set_ylim(0, 1)  # not an axis around zero-height bars
    ax.yaxis.set_major_locator(FixedLocator([0]))
    if dead or resets:
        _no_data(ax, "none: 0 dead codes and 0 resets in every version measured")
    else:
        _no_data(ax, "none: no version has dead codes or resets recorded")


def _error_panel(ax: Axes, versions: Sequence[VersionRow]) -> None:
    ax.set_title("Mean quantization error (as the learner measured it)")
    ax.set_ylabel("mean squared L2 error per vector")
    measured = [
        (v.version, v.mean_quantization_error) for v in versions if v.mean_quantization_error is not None
    ]
    if measured:
        ax.plot(
            [x for x, _ in measured],
            [e for _, e in measured],
            "o-",
            color=_ALT_COLOR,
            label="mean quantization error",
        )
        ax.set_ylim(0, 1.15 * max(e for _, e in measured) or 1.0)
        ax.legend(loc="best")
    else:
        _no_data(ax, "none: no version has a quantization error recorded")
    ax.set_xlim(min(v.version for v in versions) - 0.6, max(v.version for v in versions) + 0.6)


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="gray")


def plot_ingest(data: ReportData, path: Path) -> Path:
    """Documents stored per UTC hour (or day), with the cumulative count on a second axis."""
    unit = ingest_unit(data)
    rows = ingest_rows(data)
    fig = _figure(INGEST_PX)
    ax = fig.add_subplot()
    width = 1 / 24 if unit == "hour" else 1.0  # matplotlib dates are in days
    starts = [mdates.date2num(r.bucket) for r in rows]
    ax.bar(
        starts,
        [r.documents for r in rows],
        width=width,
        align="edge",
        color=_BAR_COLOR,
        label=f"documents per {unit}",
    )
    total = ax.twinx()
    # from 0 at the first bucket's start to each bucket's cumulative count at its end
    total.step(
        [starts[0]] + [s + width for s in starts],
        [0] + [r.cumulative_documents for r in rows],
        where="post",
        color=_FLOAT_COLOR,
        label="documents stored (cumulative)",
    )
    if len(rows) <= 60:  # each bucket's cumulative count as a point, visible with one bucket too
        total.plot(
            [s + width for s in starts], [r.cumulative_documents for r in rows], "o", color=_FLOAT_COLOR
        )
    total.set_ylim(0, rows[-1].cumulative_documents * 1.15)
    total.yaxis.set_major_locator(MaxNLocator(integer=True))
    total.yaxis.set_major_formatter(_thousands)
    total.set_ylabel("documents stored (cumulative)")
    locator = mdates.AutoDateLocator(tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(_thousands)
    ax.set_ylim(0, max(r.documents for r in rows) * 1.15)
    ax.set_title(f"Ingest rate: documents stored per UTC {unit}")
    ax.set_xlabel("ingestion time (UTC)")
    ax.set_ylabel(f"documents per {unit}")
    ax.grid(True, axis="y", alpha=0.3)
    handles = ax.get_legend_handles_labels()
    more = total.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left")
    if math.isclose(starts[0], starts[-1]):  # one bucket: give the bar some room
        ax.set_xlim(starts[0] - 2 * width, starts[0] + 3 * width)
    return _save(fig, path)


def render_all(data: ReportData, out_dir: Path) -> dict[str, Path]:
    """Write the three PNGs into ``out_dir``; return their paths by figure name."""
    return {
        "memory": plot_memory(data, out_dir / MEMORY_PNG),
        "codebooks": plot_codebooks(data, out_dir / CODEBOOK_PNG),
        "ingest": plot_ingest(data, out_dir / INGEST_PNG),
    }
