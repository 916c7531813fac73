"""``mbc demo``: the main job end to end on this machine, with no external services.

What runs (every service is the real one, started the way an operator would start it):

- the embedded Kafka-protocol broker (librdkafka's mock cluster, :class:`infra.broker.BrokerProcess`);
- the faust stage, ``mbc pipeline run``, as a child process;
- the learner, ``mbc learn`` with the small checkpoint shipped in ``infra/demo_assets/checkpoint``
  (``--codebook ema``, so codebook versions and their health appear), as a child process, writing
  to a SQLite memory store in the work folder;
- the producers: ``mbc produce feeds --once`` against ``feed.xml`` served over HTTP on 127.0.0.1 (a
  random port), ``mbc produce replay stream.jsonl``, and a few malformed raw events published as
  they are (a misbehaving producer);
- the reader, in this process: the store's SQL views, the codebook health, and
  :class:`learner.ask.answerer.Answerer` (the ``mbc ask`` path) answering questions about the
  knowledge documents with the memory and with none (the base LM alone).

Progress goes to stderr, the report to stdout, the services' logs to ``<work>/logs``. Everything
started is stopped in ``finally`` (also on Ctrl-C, SIGTERM, a failure or the timeout); the work
folder is removed unless ``--keep DIR`` names where to keep it. The assets and how they were made
are described in ``infra/demo_assets/README.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Annotated, Any

import typer

from infra.demo_report import report
from infra.errors import MbcError

ASSETS = Path(__file__).resolve().parent / "demo_assets"
CLI = [sys.executable, "-c", "from infra.cli import main; main()"]
LEARNER_GROUP = "mbc-learner"
STEPS = 8


class DemoError(MbcError):
    """The demo could not finish; the message says where and which log to read."""

    exit_code = 1


# -- small helpers ------------------------------------------------------------------------------


def _assets(root: Path = ASSETS) -> dict[str, Path]:
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


def _tail(path: Path, lines: int = 12) -> str:
    """The end of a log, indented, to quote in an error (the work folder may be removed after)."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line[:300] for line in text)


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
    """SIGTERM, turned into the same path as Ctrl-C."""


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


class Progress:
    """Stage lines on stderr: ``[3/8] what ...`` then ``      result (1.2 s)``."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total, self.n = total, 0
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self._started = time.monotonic()
        self.current = "starting"

    def step(self, text: str) -> None:
        self.n += 1
        self.current = text
        self._started = time.monotonic()
        print(f"[{self.n}/{self.total}] {text}", file=self.stream, flush=True)

    def done(self, text: str) -> None:
        print(f"      {text} ({time.monotonic() - self._started:.1f} s)", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(f"      {text}", file=self.stream, flush=True)


# -- child processes ----------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Children:
    """Every process the demo starts; :meth:`stop_all` ends them (SIGTERM, then SIGKILL)."""

    log_dir: Path
    cwd: Path
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        log = self.log_dir / f"{name}.log"
        # Ctrl-C between the fork and the bookkeeping below would leave a child nobody stops: the
        # signals wait until it is recorded (the child unblocks them before it execs).
        with _signals_blocked(), log.open("ab") as out:
            proc = subprocess.Popen(
                [*CLI, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env={**os.environ, **(env or {})},
                preexec_fn=_child_setup,
            )
            child = Child(name, proc, log)
            self.started.append(child)
        return child

    def check(self, child: Child) -> None:
        """A DemoError if ``child`` exited although it should still be running."""
        code = child.proc.poll()
        if code is not None:
            raise DemoError(
                f"{child.name} exited with code {code}; the end of logs/{child.log.name}:\n{_tail(child.log)}"
            )

    def wait(self, child: Child, deadline: float) -> None:
        """Wait for a command that ends by itself; DemoError if it fails or outlives the deadline."""
        try:
            code = child.proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise DemoError(
                f"{child.name} did not finish in time; the end of logs/{child.log.name}:\n{_tail(child.log)}"
            ) from None
        if code != 0:
            raise DemoError(
                f"{child.name} failed with code {code}; the end of logs/{child.log.name}:\n{_tail(child.log)}"
            )

    @staticmethod
    def stop(child: Child, timeout: float = 30.0) -> int:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout``; returns the exit code."""
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        return int(child.proc.returncode)

    def stop_all(self, timeout: float = 30.0) -> None:
        running = [c for c in reversed(self.started) if c.proc.poll() is None]
        for c in running:
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for c in running:
            try:
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()


_PR_SET_PDEATHSIG = 1
_prctl: Any = None
if sys.platform == "linux":
    try:
        import ctypes

        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _child_setup() -> None:
    """In the child before exec: take the stop signals again, and get SIGTERM if the demo dies
    without cleaning up (e.g. SIGKILL)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# -- the feed server ----------------------------------------------------------------------------


class FeedServer:
    """``feed.xml`` over HTTP on 127.0.0.1 (random port), for ``mbc produce feeds``."""

    def __init__(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/feed.xml":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.xml"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="demo-feed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class DemoOptions:
    keep: Path | None = None
    timeout: float = 600.0
    questions: int = 8
    json_path: Path | None = None
    verbose: bool = False
    assets: Path = ASSETS


def _stage_counts(port: int) -> dict[str, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {"accepted": 0.0, "duplicate": 0.0, "rejected": 0.0, "skipped": 0.0}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key in out:
                if sample.name == f"mbc_pipeline_{key}_total":
                    out[key] += sample.value
    return out


def _high(kafka: Any, topic: str) -> int:
    from pipeline.topic_reader import watermarks

    return sum(high for _, high in watermarks(kafka, topic).values())


def _publish_raw(kafka: Any, topic: str, lines: list[bytes]) -> int:
    """Publish ``lines`` byte for byte (no key): what a misbehaving producer would send."""
    from confluent_kafka import Producer

    from infra.kafka import confluent_config

    producer = Producer(confluent_config(kafka, **{"enable.idempotence": True}))
    failed: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    for line in lines:
        producer.produce(topic, value=line, on_delivery=report)
    left = producer.flush(30)
    if left or failed:
        raise DemoError(f"could not publish the malformed events: {failed[:1] or [f'{left} undelivered']}")
    return len(lines)


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


@dataclass
class _Resources:
    """What :func:`run_demo` must release, whatever happens."""

    broker: Any = None  # infra.broker.BrokerProcess
    feed: FeedServer | None = None
    store: Any = None  # memory_store.store.MemoryStore


def run_demo(options: DemoOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run everything, print nothing to stdout, return the summary (see ``mbc demo --json``)."""
    assets = _assets(options.assets)
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
    if main_thread:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    env = {"MBC_DATABASE__URL": db_url, "MBC_LOG_JSON": "true", "MBC_LOG_LEVEL": "INFO"}
    try:
        with _isolated_environment(env):
            summary.update(_run(options, assets, work, db_url, children, res, progress, deadline))
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
) -> dict[str, Any]:
    from infra.broker import BrokerProcess
    from infra.kafka import ensure_topics
    from infra.settings import KafkaSettings, TopicSettings
    from memory_store.store import MemoryStore

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tails = "".join(
                f"\nthe end of logs/{c.log.name}:\n{_tail(c.log, 6)}"
                for c in children.started
                if c.proc.poll() is None
            )
            raise DemoError(
                f"the demo did not finish within --timeout {options.timeout:.0f} s, at step "
                f"{progress.n}/{progress.total} ({progress.current}){tails}"
            )
        return remaining

    out: dict[str, Any] = {}
    keep = "kept" if options.keep is not None else "removed at the end; --keep DIR keeps it"
    print(f"mbc demo: work folder {work} ({keep})", file=progress.stream, flush=True)
    progress.step("embedded Kafka broker (librdkafka mock cluster)")
    res.broker = BrokerProcess(startup_timeout=min(60.0, left()))
    bootstrap = res.broker.start()
    os.environ["MBC_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
    kafka, topics = KafkaSettings(bootstrap_servers=bootstrap), TopicSettings()
    ensure_topics(kafka, topics)
    progress.done(f"listening on {bootstrap}; topics {topics.raw}, {topics.clean}, {topics.dlq}")

    progress.step("memory store (SQLite) and the services: faust stage, learner")
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

    progress.step(f"feed producer: mbc produce feeds --once ({assets['feed'].name} over local HTTP)")
    feed = res.feed = FeedServer(assets["feed"].read_bytes())
    feeds = children.start(
        "produce-feeds",
        ["produce", "feeds", "--url", feed.url, "--once", "--state-dir", str(work / "producer")],
    )
    children.wait(feeds, time.monotonic() + min(120.0, left()))
    feed_items = _high(kafka, topics.raw)
    progress.done(f"{feed_items} news items from {feed.url}")

    progress.step(f"replay: mbc produce replay {assets['stream'].name}")
    replay = children.start(
        "produce-replay", ["produce", "replay", str(assets["stream"]), "--format", "jsonl", "--no-progress"]
    )
    children.wait(replay, time.monotonic() + min(120.0, left()))
    replayed = _high(kafka, topics.raw) - feed_items
    bad_lines = [
        line.encode() for line in assets["bad_events"].read_text(encoding="utf-8").splitlines() if line
    ]
    bad = _publish_raw(kafka, topics.raw, bad_lines)
    published = _high(kafka, topics.raw)
    progress.done(
        f"{replayed} documents replayed, then {bad} malformed raw events; {published} events in {topics.raw}"
    )
    out["published"] = {"feed": feed_items, "replay": replayed, "malformed": bad, "total": published}

    progress.step("stage and learner at work: docs.raw -> docs.clean -> codes in the memory store")
    decided, stored, clean = _wait_for_stream(
        children, stage, learner, stage_port, store, kafka, topics.clean, published, left, progress
    )
    progress.done(f"stage decided {decided}/{published}; learner stored {stored}/{clean} clean documents")

    progress.step("stopping the stage and the learner (SIGTERM: they commit and exit)")
    codes = {"stage": children.stop(stage, 60.0), "learner": children.stop(learner, 60.0)}
    if any(codes.values()):
        bad_child = next(c for c in (stage, learner) if c.proc.returncode)
        raise DemoError(
            f"{bad_child.name} did not stop cleanly; the end of logs/{bad_child.log.name}:\n"
            + _tail(bad_child.log)
        )
    books, dlq = _books(kafka, topics)
    progress.done(f"both exited 0; books read back from the stage's changelog and {topics.dlq}")
    out["stage"] = books
    out["dead_letters"] = dlq

    progress.step("reading the memory store: stats, SQL views, codebook health")
    out.update(_read_store(store))
    progress.done(
        f"{out['store']['documents']} documents in memory, {len(out['codebook'])} codebook versions"
    )

    progress.step("asking questions with the memory and without (base LM alone)")
    out.update(_ask(assets, store, options.questions))
    progress.done(
        f"exact match over {len(out['questions'])} questions: with memory {out['em']['with_memory']:.2f}, "
        f"without {out['em']['without_memory']:.2f}"
    )
    return out


def _wait_for_stream(
    children: Children,
    stage: Child,
    learner: Child,
    stage_port: int,
    store: Any,
    kafka: Any,
    clean_topic: str,
    published: int,
    left: Callable[[], float],
    progress: Progress,
) -> tuple[int, int, int]:
    """Until the stage decided every raw event and the learner stored every clean document."""
    import httpx
    from tqdm import tqdm

    decided = stored = clean = 0
    counts: dict[str, float] = {}
    last_note = time.monotonic()
    with tqdm(total=published, unit="event", desc="      pipeline", disable=None, leave=False) as bar:
        while True:
            left()
            children.check(stage)
            children.check(learner)
            try:
                counts = _stage_counts(stage_port)
            except httpx.HTTPError:
                counts = {}  # the stage is still starting
            decided = int(sum(counts.values()))
            clean = _high(kafka, clean_topic)
            stored = sum(store.stored_offsets(LEARNER_GROUP, clean_topic).values())
            bar.total = published + int(counts.get("accepted", 0))
            bar.n = decided + stored
            bar.set_postfix_str(f"decided {decided}/{published}, stored {stored}/{clean}")
            if bar.disable and time.monotonic() - last_note > 10:
                progress.note(f"stage decided {decided}/{published}, learner stored {stored}/{clean}")
                last_note = time.monotonic()
            if decided >= published and clean >= counts.get("accepted", 0) and stored >= clean:
                return decided, stored, clean
            time.sleep(0.5)


def _books(kafka: Any, topics: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stage's exact books (from its changelog) and the dead-letter topic by who wrote it."""
    from infra.settings import load_settings
    from pipeline.settings import PipelineSettings
    from pipeline.stage.accounting import read_accounting
    from pipeline.topic_reader import read

    books = read_accounting(load_settings(PipelineSettings)).summary()
    by_stage: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for rec in read(kafka, topics.dlq, timeout=30):
        who = rec.header("mbc-stage") or "pipeline"
        by_stage[who] = by_stage.get(who, 0) + 1
        reason = rec.header("mbc-reason") or "?"
        by_reason[reason] = by_reason.get(reason, 0) + 1
    books["dead_lettered"] = sum(books["rejected"].values())
    return books, {"total": sum(by_stage.values()), "by_stage": by_stage, "by_reason": by_reason}


def _read_store(store: Any) -> dict[str, Any]:
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


KNOWLEDGE_SOURCE = "people-registry"  # the source of the knowledge documents in stream.jsonl


def _shown(n_questions: int, n_shown: int) -> list[int]:
    """Which questions the report prints: evenly spaced over the bank, not picked by result."""
    n_shown = min(n_shown, n_questions)
    return [i * n_questions // n_shown for i in range(n_shown)] if n_shown else []


def _ask(assets: dict[str, Path], store: Any, shown: int) -> dict[str, Any]:
    """Every question three ways: the whole memory, the knowledge source's slice, no memory."""
    from learner.ask.answerer import Answerer
    from learner.eval.online import answer_questions
    from learner.eval.squad_metrics import exact_match

    qa = [json.loads(line) for line in assets["questions"].read_text(encoding="utf-8").splitlines() if line]
    answerer = Answerer(assets["checkpoint"], store, device="cpu")
    texts = [q["question"] for q in qa]
    bare = answer_questions(answerer.model, answerer.texts, texts, None, answerer.decode, 16, answerer.device)
    rows = []
    docs = {"all": 0, "slice": 0}
    for q, without in zip(qa, bare, strict=True):
        whole = answerer.ask(q["question"])
        sliced = answerer.ask(q["question"], source=KNOWLEDGE_SOURCE)
        docs = {"all": whole.documents, "slice": sliced.documents}
        rows.append(
            {
                "question": q["question"],
                "answer": q["answer"],
                "with_memory": whole.answer,
                "with_memory_slice": sliced.answer,
                "without_memory": without,
                "correct_with_memory": bool(exact_match(whole.answer, q["answer"])),
                "correct_with_memory_slice": bool(exact_match(sliced.answer, q["answer"])),
                "correct_without_memory": bool(exact_match(without, q["answer"])),
                "latency_ms": round(whole.latency_ms, 1),
            }
        )
    n = max(1, len(rows))
    return {
        "questions": rows,
        "shown": _shown(len(rows), shown),
        "memory_documents": docs["all"],
        "slice": {"source": KNOWLEDGE_SOURCE, "documents": docs["slice"]},
        "em": {
            "with_memory": sum(r["correct_with_memory"] for r in rows) / n,
            "with_memory_slice": sum(r["correct_with_memory_slice"] for r in rows) / n,
            "without_memory": sum(r["correct_without_memory"] for r in rows) / n,
        },
    }


# -- the command --------------------------------------------------------------------------------


def demo(
    keep: Annotated[
        Path | None,
        typer.Option(
            help="Keep the work folder here (must be empty or new): the SQLite memory store (memory.db), "
            "the services' logs and state. Default: a temporary folder, removed at the end."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=30, help="Give up (and clean up) after this many seconds.")
    ] = 600.0,
    questions: Annotated[
        int, typer.Option(min=0, help="How many of the 32 questions to print (all are asked).")
    ] = 8,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write a machine-readable summary to this file.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show this process's own log lines.")] = False,
) -> None:
    """Run the whole system locally on a bundled stream, then report what it learned (see HELP)."""
    from infra.logging import configure_logging

    if json_path is not None and not json_path.resolve().parent.is_dir():
        raise MbcError(f"--json {json_path}: folder {json_path.resolve().parent} does not exist")
    configure_logging("demo", "INFO" if verbose else "ERROR")
    options = DemoOptions(
        keep=keep, timeout=timeout, questions=questions, json_path=json_path, verbose=verbose
    )
    try:
        summary = run_demo(options)
    except KeyboardInterrupt:
        where = "kept" if keep is not None else "removed"
        typer.echo(
            f"\ninterrupted: every process the demo started was stopped; work folder {where}", err=True
        )
        raise typer.Exit(130) from None
    except DemoError as e:
        if keep is None:
            raise DemoError(f"{e}\n(run with --keep DIR to keep the logs and the memory store)") from None
        raise
    typer.echo(report(summary))
    where = f"kept in {summary['work_dir']}" if summary["kept"] else "removed (use --keep DIR to keep it)"
    typer.echo(f"\nFinished in {summary['seconds']:.0f} s. Work folder {where}.", err=True)
    if json_path is not None:
        json_path.write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")


def _paragraphs(text: str) -> str:
    """Help text: paragraphs separated by blank lines, each joined into one line (rich re-wraps them)."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n"))


HELP = _paragraphs(
    """
    Run the whole system locally on a bundled stream, then report what it learned.

    Starts an embedded Kafka broker, the faust stage (mbc pipeline run) and the learner (mbc learn,
    with the small checkpoint shipped in infra/demo_assets) as child processes. Publishes a bundled
    RSS feed served on 127.0.0.1 (mbc produce feeds), replays a bundled news/knowledge stream with a
    few duplicates and invalid records (mbc produce replay) and sends a few malformed raw events.
    Waits until the stage has decided every event and the learner has stored every clean document
    in a SQLite memory store, then prints the books (accepted / deduplicated / dead-lettered), the
    memory growth view, the codebook health per version, and answers to questions with the memory
    and without it (the base LM alone), next to the right answers.

    Needs no network and no services; takes a minute or two on two CPU cores. Progress goes to
    stderr, the report to stdout. MBC_* settings and config files are ignored: the demo never
    touches a real Kafka or database. Every process it starts is stopped at the end, also on Ctrl-C,
    on a failure and on --timeout; the work folder is removed unless --keep names one.
    """
)


def register(app: typer.Typer) -> None:
    app.command("demo", help=HELP)(demo)
