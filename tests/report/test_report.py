"""`mbc report` on both backends: valid PNGs of the expected pixel sizes and content, and a
report.md whose numbers match what the test wrote (computed here, not read back from the store)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import typer
from matplotlib.image import imread
from typer.testing import CliRunner

from memory_store.report.build import build_report
from memory_store.report.cli import register
from memory_store.report.errors import NothingToReport
from memory_store.store import MemoryStore
from tests.memory_store.helpers import codebook, doc
from tests.report.conftest import T0, Written, fill
from tests.report.png import png_size

# (width, height) in pixels: fixed by the report (figure inches x DPI), checked exactly.
EXPECTED_PX = {
    "memory_bytes.png": (1000, 600),
    "codebook_health.png": (1200, 800),
    "ingest_rate.png": (1000, 500),
}
# A colour each figure must contain: the curves / bars it exists to show.
EXPECTED_COLOURS = {
    "memory_bytes.png": ["#d62728", "#1f77b4"],  # float-equivalent and code-bytes curves
    "codebook_health.png": ["#4c72b0", "#dd8452"],  # usage bars, resets / error
    "ingest_rate.png": ["#4c72b0", "#d62728"],  # per-hour bars, cumulative line
}


def has_colour(pixels: np.ndarray, hex_colour: str) -> bool:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return bool((np.abs(pixels[..., :3] - rgb).max(axis=-1) < 2 / 255).sum() >= 20)


def hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def expected_lines(w: Written) -> list[str]:
    """The rows report.md must contain, computed from what was written."""
    docs = w.docs
    code_bytes = sum(len(d.codes) for d in docs)
    float_bytes = sum(d.k * w.shapes[d.codebook_version][1] * 4 for d in docs)
    per_hour = Counter(hour(d.ingested_at) for d in docs if d.ingested_at)
    peak_hour = min(h for h, n in per_hour.items() if n == max(per_hour.values()))
    lines = [
        f"| documents | {len(docs):,} |",
        f"| code bytes (packed MBC codes) | {code_bytes:,} |",
        f"| bytes per document | {code_bytes / len(docs):,.2f} |",
        f"| float-equivalent bytes (uncompressed, MAC-style) | {float_bytes:,} |",
        f"| compression ratio (float-equivalent / code bytes) | {float_bytes / code_bytes:,.1f}× |",
        f"| codebook versions | {len(w.versions)} |",
        f"| sources | {len({d.source for d in docs})} |",
        f"| ingest rate (per active hour) | {len(docs) / len(per_hour):,.1f} documents on average; "
        f"peak {per_hour[peak_hour]:,} ({peak_hour:%Y-%m-%d %H:%M} UTC) |",
    ]
    for i, v in enumerate(w.versions):
        c, dim = w.shapes[v]
        mine = [d for d in docs if d.codebook_version == v]
        used = len({code for d in mine for code in w.codes[d.id]})
        h = w.health[v]
        error = h.extra.get("mean_quantization_error")
        lines.append(
            f"| v{v} | {'–' if i == 0 else f'v{w.versions[i - 1]}'} | {c:,} | {dim:,} | {len(mine):,} "
            f"| {used:,} ({100 * used / c:,.1f} %) | {h.perplexity:,.1f} | {h.dead_codes:,} | {h.resets:,} "
            f"| {'–' if error is None else format(error, '.4g')} |"
        )
    for source in sorted({d.source for d in docs}):
        mine = [d for d in docs if d.source == source]
        last = max(d.ingested_at for d in mine if d.ingested_at)
        lines.append(
            f"| {source} | {len(mine):,} | {sum(len(d.codes) for d in mine):,} | {last:%Y-%m-%d %H:%M} |"
        )
    return lines


def test_report_has_valid_pngs_and_the_right_numbers(
    filled: tuple[MemoryStore, Written], tmp_path: Path
) -> None:
    store, written = filled
    out = tmp_path / "report" / "nested"
    seen: list[Path] = []
    built = build_report(store, out, on_file=seen.append)

    assert sorted(p.name for p in out.iterdir()) == sorted([*EXPECTED_PX, "report.md"])
    assert sorted(p.name for p in seen) == sorted(p.name for p in out.iterdir())
    for name, size in EXPECTED_PX.items():
        assert png_size(out / name) == size, name
        pixels = imread(out / name)  # (H, W, 4) floats in [0, 1]
        assert pixels.shape == (size[1], size[0], 4)
        for colour in EXPECTED_COLOURS[name]:
            assert has_colour(pixels, colour), f"{name} has no {colour} pixels"

    text = built.summary.read_text(encoding="utf-8")
    for line in expected_lines(written):
        assert line in text, f"missing from report.md: {line}"
    for name in EXPECTED_PX:
        assert f"]({name})" in text
    first = min(d.ingested_at for d in written.docs if d.ingested_at)
    last = max(d.ingested_at for d in written.docs if d.ingested_at)
    assert f"Documents ingested from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC" in text


def test_report_of_a_single_document(tmp_path: Path) -> None:
    """One bucket, one version, no health figures: still three readable figures, no crash."""
    with MemoryStore(f"sqlite:///{tmp_path / 'one.db'}", auto_migrate=True) as store:
        v = store.add_codebook_version(codebook(16, 4))
        store.write_batch([doc("only", [1, 2, 3, 4], v, 16, ingested_at=T0)])
        built = build_report(store, tmp_path / "out")
    for name, size in EXPECTED_PX.items():
        assert png_size(tmp_path / "out" / name) == size
    text = built.summary.read_text(encoding="utf-8")
    assert "| documents | 1 |" in text
    assert "| bytes per document | 2.00 |" in text  # 4 codes x 4 bits
    assert "| compression ratio (float-equivalent / code bytes) | 32.0× |" in text  # 4 x 4 x 4 / 2
    assert "| v1 | – | 16 | 4 | 1 | 4 (25.0 %) | – | – | – | – |" in text


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Root, so that `report` is a subcommand as under `mbc`."""

    register(app)
    return app


def test_cli_writes_the_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    with MemoryStore(url, auto_migrate=True) as store:
        written = fill(store)
    out = tmp_path / "out"
    result = CliRunner().invoke(_app(), ["report", "--out", str(out), "--database-url", url])
    assert result.exit_code == 0, result.output
    assert f"{len(written.docs):,} documents" in result.stdout
    assert f"3 codebook versions, 3 sources -> {out / 'report.md'}" in result.stdout
    assert {p.name for p in out.iterdir()} == {*EXPECTED_PX, "report.md"}


def _mbc(*args: str) -> subprocess.CompletedProcess[str]:
    """`mbc ARGS` through mbc.cli.main (user errors -> one line), with `report` registered."""
    code = (
        "import mbc.cli as c\n"
        "if not any(i.name == 'report' for i in c.app.registered_commands):\n"
        "    from memory_store.report.cli import register; register(c.app)\n"
        "c.main()\n"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def test_empty_store_is_one_clear_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with MemoryStore(url, auto_migrate=True) as store:
        store.add_codebook_version(codebook(16, 4))  # versions but no documents: still nothing to plot
        with pytest.raises(NothingToReport):
            build_report(store, tmp_path / "direct")
    assert not (tmp_path / "direct").exists()

    result = _mbc("report", "--out", str(tmp_path / "out"), "--database-url", url)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: nothing to report: the store at {url} holds no documents yet "
        "(start the learner, or check --database-url)"
    ]
    assert not (tmp_path / "out").exists()


def test_missing_sqlite_file_is_one_clear_line_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "memory.db"
    result = _mbc("report", "--out", str(tmp_path / "out"), "--database-url", f"sqlite:///{missing}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: no SQLite database at {missing} (check --database-url or MBC_DATABASE__URL; "
        "`mbc store migrate` or `mbc learn` creates one)"
    ]
    assert not missing.parent.exists()


def test_one_hour_and_one_version_read_well(tmp_path: Path) -> None:
    """A short run (one ingest hour, one codebook version, no dead codes): every point is drawn
    where nothing covers it, and a panel with nothing to show says "none" instead of an empty axis."""
    from matplotlib.transforms import Bbox

    from memory_store.records import CodebookHealth
    from memory_store.report.data import read_report_data
    from memory_store.report.plots import codebook_figure, memory_figure

    with MemoryStore(f"sqlite:///{tmp_path / 'short.db'}", auto_migrate=True) as store:
        health = CodebookHealth(
            perplexity=3.5, resets=0, dead_codes=0, extra={"mean_quantization_error": 0.5}
        )
        v = store.add_codebook_version(codebook(16, 4), health=health)
        store.write_batch([doc(f"d{i}", [i % 16] * 4, v, 16, ingested_at=T0) for i in range(5)])
        data = read_report_data(store)
    assert len(data.hourly) == 1 and len(data.versions) == 1

    fig = memory_figure(data)
    fig.canvas.draw()
    (ax,) = fig.axes
    box = ax.get_window_extent()
    legend = fig.legends[0].get_window_extent()
    assert not legend.overlaps(box)  # the legend is outside the plotting area
    assert not ax.title.get_window_extent().overlaps(box)  # so are the totals
    lines = ax.get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[5 * 4 * 4 * 4], [5 * 2]]  # float B, code B
    for line in lines:
        assert line.get_marker() == "o" and line.get_markersize() >= 8
        x, y = ax.transData.transform((line.get_xdata()[0], line.get_ydata()[0]))
        r = line.get_markersize()  # points ~ pixels at 100 dpi: a margin of a diameter
        assert Bbox.from_extents(x - r, y - r, x + r, y + r).fully_overlaps(box), line.get_label()

    panels = {a.get_title(): a for a in codebook_figure(data).axes}
    dead = panels["Dead codes and online resets"]
    assert [t.get_text() for t in dead.texts] == ["none: 0 dead codes and 0 resets in every version measured"]
    assert dead.get_ylim() == (0.0, 1.0) and not dead.patches  # no zero-height bars around -0.045..0.045
    perplexity = panels["Perplexity of code usage"]
    assert [list(line.get_ydata()) for line in perplexity.get_lines()] == [[16], [3.5]]
    assert perplexity.get_lines()[1].get_marker() == "o"
