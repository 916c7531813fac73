"""Regenerate the assets of ``mbc demo`` in ``mbc/demo/assets/`` (deterministic seeds).

    .venv/bin/python scripts/make_demo_assets.py                  # synth + train + assets (3-12 min, 2 CPU cores)
    .venv/bin/python scripts/make_demo_assets.py --run DIR        # reuse a finished `mbc train` run in DIR

Steps:

1. ``mbc synth`` data exactly as the learning test makes it (tests/learner/test_learning.py:
   relations=1, values=8, 4,096 training documents, seed 0) into ``<work>/data``;
2. ``mbc train --preset tiny --memory compressed --epochs 8 --seed 42`` from scratch (base-LM
   pretraining on the pretrain split, retrieval warm-up, meta-training) into ``<work>/run``;
3. the checkpoint's inference files (config, weights, tokenizer; no optimizer or RNG state) are
   copied to ``mbc/demo/assets/checkpoint/``;
4. the knowledge documents are the first held-out bank of the test split (32 people never seen in
   training); they are mixed with a few hand-written news items, duplicates and invalid records into
   ``stream.jsonl``; ``feed.xml`` (RSS) holds a few more news items, ``bad_events.txt`` a few
   malformed raw messages, ``questions.jsonl`` one question per knowledge document;
5. ``mbc eval`` on that bank with compressed memory and with none records the reference EM in
   ``manifest.json`` together with sizes and SHA-256 of every asset.

Times in the stream are fixed (November 2026), so the text files are identical on every run;
training uses fixed seeds, but bit-identical weights across runs are not guaranteed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from learner.data.synth.generator import SynthConfig, SynthRow, generate, write_all, write_csv  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module of texts
from demo_asset_texts import BAD_EVENTS, FEED, NEWS  # noqa: E402

OUT = REPO / "mbc" / "demo" / "assets"
CLI = [sys.executable, "-c", "from mbc.cli import main; main()"]

# The learning test's synthetic task (tests/learner/test_learning.py).
SYNTH = SynthConfig(
    pretrain_docs=256,
    train_docs=4096,
    val_docs=32,
    test_docs=128,
    relations=1,
    values=8,
    min_distractors=1,
    max_distractors=2,
    pretrain_max_distractors=2,
    seed=0,
)
TRAIN_SEED = 42
EPOCHS = 8
BANK = "test-bank0"  # 32 held-out people

KNOWLEDGE_SOURCE = "people-registry"
NEWS_SOURCE = "newswire"
T0 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)


def run(args: list[str]) -> str:
    print(
        "$ mbc " + " ".join(args[len(CLI) :] if args[: len(CLI)] == CLI else args),
        file=sys.stderr,
        flush=True,
    )
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"command failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def train(work: Path) -> Path:
    data = work / "data"
    write_all(SYNTH, data)
    run_dir = work / "run"
    run(
        [
            *CLI,
            "train",
            "--preset",
            "tiny",
            "--train",
            str(data / "train.csv"),
            "--val",
            str(data / "val.csv"),
            "--lm-corpus",
            str(data / "pretrain.csv"),
            "--run-dir",
            str(run_dir),
            "--memory",
            "compressed",
            "--epochs",
            str(EPOCHS),
            "--eval-every",
            "1000000",
            "--seed",
            str(TRAIN_SEED),
            "--no-progress",
        ]
    )
    return run_dir


def copy_checkpoint(run_dir: Path, dest: Path) -> None:
    """Only what inference needs: config.json, model.safetensors, tokenizer folder(s)."""
    src = run_dir / "checkpoints" / "last"
    if not (src / "config.json").is_file():
        sys.exit(f"no checkpoint at {src}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(src / "config.json", dest / "config.json")
    shutil.copy2(src / "model.safetensors", dest / "model.safetensors")
    for tok in sorted(src.glob("tokenizer_*")):
        shutil.copytree(tok, dest / tok.name)


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def stream_records(bank: list[SynthRow]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The replayed stream in publication order, and what the stage must decide about it."""
    records: list[tuple[datetime, dict[str, Any]]] = []
    for i, row in enumerate(bank):
        t = T0 + timedelta(minutes=40 * i)
        records.append(
            (
                t,
                {
                    "id": row.doc_id,
                    "source": KNOWLEDGE_SOURCE,
                    "title": row.person,
                    "text": row.text,
                    "published_at": _time(t),
                },
            )
        )
    for j, (ref, title, text) in enumerate(NEWS):
        t = T0 + timedelta(minutes=40 * 5 * j + 17)
        records.append(
            (
                t,
                {
                    "id": ref,
                    "source": NEWS_SOURCE,
                    "title": title,
                    "text": text,
                    "published_at": _time(t),
                    "url": f"https://news.example/{ref}",
                },
            )
        )
    # Duplicates: the same text again from the same source under a new id.
    dup_news = NEWS[1]
    records.append(
        (
            T0 + timedelta(hours=19),
            {
                "id": dup_news[0] + "-resent",
                "source": NEWS_SOURCE,
                "title": dup_news[1] + " (resent)",
                "text": dup_news[2],
                "published_at": _time(T0 + timedelta(hours=19)),
            },
        )
    )
    for i in (5, 17):
        t = T0 + timedelta(hours=20, minutes=i)
        records.append(
            (
                t,
                {
                    "id": bank[i].doc_id + "-republished",
                    "source": KNOWLEDGE_SOURCE,
                    "title": bank[i].person,
                    "text": bank[i].text,
                    "published_at": _time(t),
                },
            )
        )
    # Invalid records: an empty body, and a date from before the pipeline's earliest year.
    records.append(
        (
            T0 + timedelta(hours=21),
            {
                "id": "wire-1007",
                "source": NEWS_SOURCE,
                "title": "Photo gallery: the storm in pictures",
                "text": "",
                "published_at": _time(T0 + timedelta(hours=21)),
            },
        )
    )
    old = datetime(1812, 6, 24, tzinfo=UTC)
    records.append(
        (
            old,
            {
                "id": "wire-0001",
                "source": NEWS_SOURCE,
                "title": "Archive item with a broken date",
                "text": "The harbour of Valdria was extended to the north, the archive says.",
                "published_at": _time(old),
            },
        )
    )
    records.sort(key=lambda r: r[0])
    expected = {
        "replayed": len(records),
        "feed_items": len(FEED),
        "bad_events": len(BAD_EVENTS),
        "published": len(records) + len(FEED) + len(BAD_EVENTS),
        "accepted": len(bank) + len(NEWS) + len(FEED),
        "duplicate": 3,
        "dead_lettered": {
            "empty_text": 1,
            "date_out_of_range": 1,
            "invalid_json": 1,
            "unsupported_schema_version": 1,
            "missing_field": 1,
        },
    }
    return [r for _, r in records], expected


def feed_xml() -> str:
    items = []
    for k, (guid, title, html) in enumerate(FEED):
        t = T0 + timedelta(days=1, hours=3 * k)
        items.append(
            "    <item>\n"
            f'      <guid isPermaLink="false">{guid}</guid>\n'
            f"      <title>{escape(title)}</title>\n"
            f"      <link>https://coast-gazette.example/{guid}</link>\n"
            f"      <pubDate>{format_datetime(t, usegmt=True)}</pubDate>\n"
            f"      <description>{escape(html)}</description>\n"
            "    </item>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0">\n'
        "  <channel>\n"
        "    <title>Coast Gazette (fictional, for mbc demo)</title>\n"
        "    <link>https://coast-gazette.example/</link>\n"
        "    <description>News from the fictional towns of the mbc demo.</description>\n"
        + "".join(items)
        + "  </channel>\n</rss>\n"
    )


def evaluate(checkpoint: Path, bank_csv: Path, work: Path) -> dict[str, float]:
    em = {}
    for memory in ("compressed", "none"):
        out = run(
            [
                *CLI,
                "eval",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(bank_csv),
                "--num-docs",
                "32",
                "--memory",
                memory,
                "--device",
                "cpu",
                "--out",
                str(work / "eval"),
            ]
        )
        em[memory] = float(json.loads(out[out.index("{") :])["em"])
    return em


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="reuse this finished training run instead of training")
    parser.add_argument("--work", type=Path, help="keep data, run and evaluations here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=OUT, help="assets folder (default: mbc/demo/assets)")
    args = parser.parse_args()
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="mbc-demo-assets-")
        work = Path(tmp.name)
    else:
        work = args.work
        work.mkdir(parents=True, exist_ok=True)
    try:
        run_dir = args.run if args.run is not None else train(work)
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        copy_checkpoint(run_dir, out / "checkpoint")
        bank = [r for r in generate(SYNTH)["test"] if r.group == BANK]
        assert len(bank) == 32
        records, expected = stream_records(bank)
        with (out / "stream.jsonl").open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        (out / "feed.xml").write_text(feed_xml(), encoding="utf-8")
        (out / "bad_events.txt").write_text("\n".join(BAD_EVENTS) + "\n", encoding="utf-8")
        with (out / "questions.jsonl").open("w", encoding="utf-8") as f:
            for row in bank:
                qa = {
                    "question": row.question,
                    "answer": row.answer,
                    "doc_id": row.doc_id,
                    "person": row.person,
                }
                f.write(json.dumps(qa) + "\n")
        bank_csv = work / "bank.csv"
        write_csv(bank, bank_csv)
        em = evaluate(out / "checkpoint", bank_csv, work)
        files = sorted(
            p for p in out.rglob("*") if p.is_file() and p.name not in ("manifest.json", "README.md")
        )
        manifest = {
            "command": "python scripts/make_demo_assets.py",
            "synth": asdict(SYNTH),
            "bank": BANK,
            "train": {"preset": "tiny", "memory": "compressed", "epochs": EPOCHS, "seed": TRAIN_SEED},
            "reference_em_on_bank": {
                "compressed_memory": em["compressed"],
                "no_memory": em["none"],
                "how": "mbc eval --num-docs 32 (the 32 knowledge documents alone)",
            },
            "expected": expected,
            "files": {
                str(p.relative_to(out)): {
                    "bytes": p.stat().st_size,
                    "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                }
                for p in files
            },
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        size = sum(p.stat().st_size for p in (out / "checkpoint").rglob("*") if p.is_file())
        print(
            f"assets in {out}: checkpoint {size / 1e6:.2f} MB, EM with memory {em['compressed']:.3f}, "
            f"without {em['none']:.3f}",
            file=sys.stderr,
        )
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
