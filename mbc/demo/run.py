"""The ``mbc demo`` run: start every service on a bundled stream, wait until the memory holds it,
read the books, the store and the answers back, and stop everything whatever happens.

:func:`run_demo` prints nothing to stdout and returns the summary (what ``mbc demo --json-out``
writes); :mod:`mbc.demo.report` renders it and :mod:`mbc.demo.cli` is the command.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from infra.errors import MbcError
from mbc.demo.errors import DemoError
from mbc.demo.feed_server import FeedServer
from mbc.demo.progress import Progress
from mbc.demo.publisher import publish_raw
from mbc.demo.readout import read_store
from mbc.demo.scoring import score_questions
from mbc.demo.supervisor import Children, tail
from mbc.demo.watch import books, records_in, wait_for_stream

ASSETS = Path(__file__).resolve().parent / "assets"
STEPS = 8


def bundled_assets(root: Path = ASSETS) -> dict[str, Path]:
    """The demo's stream, feed, malformed events, questions and checkpoint; MbcError if missing."""
    files = {
        "checkpoint": root / "checkpoint",
        "stream": root / "stream.jsonl",
        "feed": root / "feed.xml",
        "bad_events": root / "bad_events.txt",
        "questions": root / "questions.jsonl",
    }
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing or not (files["checkpoint"] / "config.json").is_file():
        raise MbcError(
            f"the demo assets are missing ({', '.join(missing) or files['checkpoint'] / 'config.json'}); "
            "reinstall mbc-stream or run scripts/make_demo_assets.py"
        )
    return files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _isolated_environment(values: dict[str, str]) -> Iterator[dict[str, str]]:
    """Drop the caller's MBC_* settings (config file included) for the run: the demo must not
    touch a real Kafka or database a shell happens to point at. Children inherit the result."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MBC_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield values
    finally:
        for k in [k for k in os.environ if k.startswith("MBC_")]:
            del os.environ[k]
        os.environ.update(saved)


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the one path that stops the demo and cleans up."""


class _StopRequest:
    """The handler of SIGINT and SIGTERM while the demo runs. It raises :class:`_Interrupted` where the
    signal lands and also remembers it: a KeyboardInterrupt raised inside a callback from C (a Kafka
    client's) or a finalizer is swallowed there, and the demo would go on to exit 0 — so every step and
    every wait checks :meth:`check`, and the last check comes after the last step."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        raise _Interrupted(self.signal_name)

    def check(self) -> None:
        if self.signal_name is not None:
            raise _Interrupted(self.signal_name)

    @staticmethod
    def quiet_hook(previous: Callable[[Any], object]) -> Callable[[Any], object]:
        """A ``sys.unraisablehook`` that drops this handler's own interrupt (Python would print it with
        a traceback when it lands in a finalizer, e.g. SQLAlchemy's weakref callbacks: seen in CI) and
        passes every other unraisable exception on to ``previous``."""

        def hook(unraisable: Any) -> object:
            if isinstance(unraisable.exc_value, _Interrupted):
                return None  # remembered in signal_name: the next check() raises it again
            return previous(unraisable)

        return hook


@dataclass
class DemoOptions:
    keep: Path | None = None
    timeout: float = 600.0
    questions: int = 8
    json_path: Path | None = None
    verbose: bool = False
    assets: Path = ASSETS


@dataclass
class _Resources:
    """What :func:`run_demo` must release, whatever happens."""

    broker: Any = None  # infra.broker.BrokerProcess
    feed: FeedServer | None = None
    store: Any = None  # memory_store.store.MemoryStore


def run_demo(options: DemoOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run everything, print nothing to stdout, return the summary (see ``mbc demo --json-out``)."""
    assets = bundled_assets(options.assets)
    progress = progress or Progress(STEPS)
    t0 = time.monotonic()
    deadline = t0 + options.timeout
    if options.keep is not None:
        work = options.keep.resolve()
        if work.exists() and (not work.is_dir() or any(work.iterdir())):
            raise MbcError(f"--keep {options.keep}: must be an empty or new folder")
        try:
            work.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MbcError(f"--keep {options.keep}: cannot create it ({e.strerror})") from None
    else:
        work = Path(tempfile.mkdtemp(prefix="mbc-demo-"))
    (work / "logs").mkdir(exist_ok=True)
    db_url = f"sqlite:///{work / 'memory.db'}"
    children = Children(work / "logs", work)
    res = _Resources()
    summary: dict[str, Any] = {"work_dir": str(work), "kept": options.keep is not None}
    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there
    previous_int, previous_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stop = _StopRequest()
    previous_hook = sys.unraisablehook
    if main_thread:
        signal.signal(signal.SIGTERM, stop.handle)
        signal.signal(signal.SIGINT, stop.handle)
        sys.unraisablehook = stop.quiet_hook(previous_hook)
    env = {"MBC_DATABASE__URL": db_url, "MBC_LOG_JSON": "true", "MBC_LOG_LEVEL": "INFO"}
    try:
        with _isolated_environment(env):
            summary.update(_run(options, assets, work, db_url, children, res, progress, deadline, stop))
    finally:
        if main_thread:  # a second Ctrl-C or SIGTERM must not cut the cleanup short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            children.stop_all()
            summary["children"] = [
                {"name": c.name, "pid": c.proc.pid, "returncode": c.proc.returncode} for c in children.started
            ]
            if res.store is not None:
                res.store.close()
            if res.feed is not None:
                res.feed.close()
            if res.broker is not None:
                pid = res.broker.proc.pid if res.broker.proc is not None else None
                summary["children"].append({"name": "broker", "pid": pid, "returncode": res.broker.stop()})
            if options.keep is None:
                shutil.rmtree(work, ignore_errors=True)
        finally:
            if main_thread:
                sys.unraisablehook = previous_hook
                signal.signal(signal.SIGTERM, previous_term if previous_term is not None else signal.SIG_DFL)
                signal.signal(signal.SIGINT, previous_int if previous_int is not None else signal.SIG_DFL)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    return summary


def _run(
    options: DemoOptions,
    assets: dict[str, Path],
    work: Path,
    db_url: str,
    children: Children,
    res: _Resources,
    progress: Progress,
    deadline: float,
    stop: _StopRequest,
) -> dict[str, Any]:
    from infra.broker import BrokerProcess
    from infra.kafka import ensure_topics
    from infra.settings import KafkaSettings, TopicSettings
    from memory_store.store import MemoryStore

    def left() -> float:
        stop.check()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tails = "".join(
                f"\nthe end of logs/{c.log.name}:\n{tail(c.log, 6)}"
                for c in children.started
                if c.proc.poll() is None
            )
            raise DemoError(
                f"the demo did not finish within --timeout {options.timeout:.0f} s, at step "
                f"{progress.n}/{progress.total} ({progress.current}){tails}"
            )
        return remaining

    def step(text: str) -> None:
        left()
        progress.step(text)

    out: dict[str, Any] = {}
    keep = "kept" if options.keep is not None else "removed at the end; --keep DIR keeps it"
    print(f"mbc demo: work folder {work} ({keep})", file=progress.stream, flush=True)
    step("embedded Kafka broker (librdkafka mock cluster)")
    res.broker = BrokerProcess(startup_timeout=min(60.0, left()))
    bootstrap = res.broker.start()
    os.environ["MBC_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
    kafka, topics = KafkaSettings(bootstrap_servers=bootstrap), TopicSettings()
    ensure_topics(kafka, topics)
    progress.done(f"listening on {bootstrap}; topics {topics.raw}, {topics.clean}, {topics.dlq}")

    step("memory store (SQLite) and the services: faust stage, learner")
    store = res.store = MemoryStore(db_url, auto_migrate=True)
    stage_port = _free_port()
    stage = children.start(
        "stage",
        ["pipeline", "run", "--metrics-port", str(stage_port), "--state-dir", str(work / "pipeline")],
        {
            "MBC_SESSION_TIMEOUT_S": "6",
            "MBC_REBALANCE_TIMEOUT_S": "10",
            "MBC_HEARTBEAT_INTERVAL_S": "0.5",
        },
    )
    learner = children.start(
        "learner",
        [
            "learn",
            "--checkpoint",
            str(assets["checkpoint"]),
            "--codebook",
            "ema",
            "--publish-every",
            "16",
            "--batch-max-size",
            "16",
            "--batch-max-wait",
            "1.0",
            "--device",
            "cpu",
            "--database-url",
            db_url,
        ],
        {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    progress.done(f"started (pids {stage.proc.pid}, {learner.proc.pid}); store {work / 'memory.db'}")

    step(f"feed producer: mbc produce feeds --once ({assets['feed'].name} over local HTTP)")
    feed = res.feed = FeedServer(assets["feed"].read_bytes())
    feeds = children.start(
        "produce-feeds",
        ["produce", "feeds", "--url", feed.url, "--once", "--state-dir", str(work / "producer")],
    )
    children.wait(feeds, time.monotonic() + min(120.0, left()))
    feed_items = records_in(kafka, topics.raw)
    progress.done(f"{feed_items} news items from {feed.url}")

    step(f"replay: mbc produce replay {assets['stream'].name}")
    replay = children.start(
        "produce-replay", ["produce", "replay", str(assets["stream"]), "--format", "jsonl", "--no-progress"]
    )
    children.wait(replay, time.monotonic() + min(120.0, left()))
    replayed = records_in(kafka, topics.raw) - feed_items
    bad_lines = [
        line.encode() for line in assets["bad_events"].read_text(encoding="utf-8").splitlines() if line
    ]
    bad = publish_raw(kafka, topics.raw, bad_lines)
    published = records_in(kafka, topics.raw)
    progress.done(
        f"{replayed} documents replayed, then {bad} malformed raw events; {published} events in {topics.raw}"
    )
    out["published"] = {"feed": feed_items, "replay": replayed, "malformed": bad, "total": published}

    step("stage and learner at work: docs.raw -> docs.clean -> codes in the memory store")
    decided, stored, clean = wait_for_stream(
        children, stage, learner, stage_port, store, kafka, topics.clean, published, left, progress
    )
    progress.done(f"stage decided {decided}/{published}; learner stored {stored}/{clean} clean documents")

    step("stopping the stage and the learner (SIGTERM: they commit and exit)")
    codes = {"stage": children.stop(stage, 60.0), "learner": children.stop(learner, 60.0)}
    if any(codes.values()):
        bad_child = next(c for c in (stage, learner) if c.proc.returncode)
        raise DemoError(
            f"{bad_child.name} did not stop cleanly; the end of logs/{bad_child.log.name}:\n"
            + tail(bad_child.log)
        )
    stage_books, dlq = books(kafka, topics)
    progress.done(f"both exited 0; books read back from the stage's changelog and {topics.dlq}")
    out["stage"] = stage_books
    out["dead_letters"] = dlq

    step("reading the memory store: stats, SQL views, codebook health")
    out.update(read_store(store))
    progress.done(
        f"{out['store']['documents']} documents in memory, {len(out['codebook'])} codebook versions"
    )

    step("asking questions with the memory and without (base LM alone)")
    out.update(score_questions(assets["checkpoint"], assets["questions"], store, options.questions))
    progress.done(
        f"exact match over {len(out['questions'])} questions: with memory {out['em']['with_memory']:.2f}, "
        f"without {out['em']['without_memory']:.2f}"
    )
    stop.check()
    return out
