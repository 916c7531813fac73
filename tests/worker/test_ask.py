"""`mbc ask` and POST /ask: the memory slice comes from the store's counts, equals the naive path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from learner.ask.answerer import Answerer
from learner.ask.service import build_app
from learner.errors import BlankQuestion
from learner.inference.encode import DocumentEncoder
from learner.worker.online_codebook import OnlineCodebook
from memory_store.codec import pack_codes_batch
from memory_store.records import DocumentRecord
from memory_store.store import MemoryStore
from tests.mbc_process import run_mbc
from tests.worker.conftest import REPO, WORDS, tiny_k

T0 = datetime(2026, 3, 1, tzinfo=UTC)
QUESTIONS = ["what did the central bank hold", "which prices fell", "who reported earnings above forecasts"]


@pytest.fixture(scope="module")
def filled_store(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with 120 documents from two sources over five days, two codebook versions."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ask') / 'memory.db'}"
    store = MemoryStore(url, auto_migrate=True)
    enc = DocumentEncoder.load(tiny_checkpoint, "cpu")
    cb = OnlineCodebook(store, torch.device("cpu"), mode="ema", publish_every_docs=60, follow_every_s=0.0)
    cb.bootstrap(enc.initial_codebook())
    for start in (0, 60):
        texts = [
            " ".join(WORDS[(i * 11 + j * 3) % len(WORDS)] for j in range(25))
            for i in range(start, start + 60)
        ]
        z = enc.encode(texts)
        codes, err = cb.quantize(z)
        blobs = pack_codes_batch(codes.numpy(), 512)
        store.write_batch(
            [
                DocumentRecord(
                    f"doc{start + j}",
                    "wire-a" if j % 3 else "wire-b",
                    T0 + timedelta(hours=(start + j)),
                    "0" * 64,
                    tiny_k(),
                    cb.version,
                    b,
                )
                for j, b in enumerate(blobs)
            ]
        )
        cb.observe(z, codes, err)
        cb.publish()
    assert len(store.codebook_versions()) == 3
    store.close()
    return url


SLICES = [{}, {"source": "wire-b"}, {"since": T0 + timedelta(hours=30), "until": T0 + timedelta(hours=95)}]


@pytest.mark.parametrize("sl", SLICES, ids=["all", "source", "window"])
def test_counts_answers_equal_naive_answers(tiny_checkpoint: Path, filled_store: str, sl: dict) -> None:  # type: ignore[type-arg]
    store = MemoryStore(filled_store)
    answerer = Answerer(tiny_checkpoint, store, "cpu")
    codes, _ = store.slice_codes(**sl)
    for q in QUESTIONS:
        a = answerer.ask(q, aggregation="counts", **sl)
        b = answerer.ask(q, aggregation="naive", **sl)
        assert a.answer == b.answer
        assert a.documents == b.documents == codes.shape[0] > 0
        assert b.memory_rows == tiny_k() * codes.shape[0]
        assert a.memory_rows == len(store.counts(**sl)) <= b.memory_rows
        assert a.latency_ms > 0
    # The aggregated prefix itself agrees, not only the decoded text.
    m_counts, _, _ = answerer.memory(aggregation="counts", **sl)
    m_naive, _, _ = answerer.memory(aggregation="naive", **sl)
    from learner.text.batching import pad

    q_ids, q_mask = pad(answerer.texts.questions_amort(QUESTIONS), answerer.texts.tok.amort_pad_id)
    with torch.no_grad():
        agg_c = answerer.model.aggregator(q_ids, q_mask, m_counts)
        agg_n = answerer.model.aggregator(q_ids, q_mask, m_naive)
    assert torch.allclose(agg_c, agg_n, atol=1e-5)
    store.close()


def test_an_empty_slice_or_store_is_refused_not_answered_closed_book(
    tiny_checkpoint: Path, filled_store: str, tmp_path: Path
) -> None:
    """No documents in the slice: no answer, and why; the base LM alone is only asked explicitly."""
    store = MemoryStore(filled_store)
    answerer = Answerer(tiny_checkpoint, store, "cpu")
    late = T0 + timedelta(days=365)
    for sl, why in (
        ({"since": late}, f"since {late.isoformat()}"),
        ({"source": "no-such-source"}, "source 'no-such-source'"),
        ({"source": "wire-a", "until": T0}, f"source 'wire-a', until {T0.isoformat()}"),
    ):
        a = answerer.ask(QUESTIONS[0], **sl)  # type: ignore[arg-type]
        assert (a.answer, a.documents, a.memory_rows, a.codebook_versions) == (None, 0, 0, [])
        assert a.refusal == f"no stored document is in this slice ({why}): nothing to answer from"
        assert a.to_dict()["answer"] is None and a.to_dict()["refusal"] == a.refusal
    answered = answerer.ask(QUESTIONS[0], source="wire-b")
    assert answered.answer is not None and answered.refusal is None and answered.documents == 40
    for blank in ("", "   ", "\t\n", "?!"):
        with pytest.raises(BlankQuestion, match="the question is blank"):
            answerer.ask(blank)
    # The closed-book baseline (`mbc demo` prints it next to the answers) stays, asked by name.
    bare = answerer.answer_without_memory(QUESTIONS)
    assert bare == answerer.answer_without_memory(QUESTIONS, batch_size=1) and len(bare) == len(QUESTIONS)
    store.close()

    empty_url = f"sqlite:///{tmp_path / 'empty.db'}"
    with MemoryStore(empty_url, auto_migrate=True) as empty:
        nothing = Answerer(tiny_checkpoint, empty, "cpu").ask(QUESTIONS[0], source="wire-a")
    assert nothing.answer is None
    assert nothing.refusal == "the memory store holds no documents yet: nothing to answer from"


def test_http_ask(tiny_checkpoint: Path, filled_store: str) -> None:
    store = MemoryStore(filled_store)
    client = TestClient(build_app(Answerer(tiny_checkpoint, store, "cpu"), token="s3cret"))
    assert client.get("/health").status_code == 200
    assert client.post("/ask", json={"question": "which prices fell"}).status_code == 401
    bad = client.post("/ask", json={"question": "x"}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    r = client.post("/ask", json={"question": "which prices fell", "source": "wire-b"}, headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert body["documents"] == 40 and body["aggregation"] == "counts" and body["latency_ms"] > 0
    r = client.post(
        "/ask",
        json={"question": "q", "since": "2026-03-05T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        headers=auth,
    )
    assert r.status_code == 400 and "since" in r.json()["detail"]
    assert client.post("/ask", json={"question": ""}, headers=auth).status_code == 422
    blank = client.post("/ask", json={"question": "   "}, headers=auth)
    assert blank.status_code == 422
    assert blank.json() == {
        "detail": "body question: the question is blank: give a question with words in it"
    }
    refused = client.post("/ask", json={"question": "which prices fell", "source": "nowhere"}, headers=auth)
    assert refused.status_code == 200
    assert {k: refused.json()[k] for k in ("answer", "documents", "refusal")} == {
        "answer": None,
        "documents": 0,
        "refusal": "no stored document is in this slice (source 'nowhere'): nothing to answer from",
    }
    r = client.post("/ask", json={"question": "q", "aggregation": "naive"}, headers=auth)
    assert r.status_code == 422 and "naive" in r.json()["detail"]
    store.close()


def test_mbc_ask_cli(tiny_checkpoint: Path, filled_store: str) -> None:
    out = run_mbc(
        "ask",
        "which prices fell",
        "--checkpoint",
        str(tiny_checkpoint),
        "--database-url",
        filled_store,
        "--json",
        "--source",
        "wire-a",
        cwd=REPO,
        env={"MBC_DEVICE": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    body = json.loads(out.stdout)
    assert body["documents"] == 80 and body["codebook_versions"] == [1, 2]
    bad = run_mbc(
        "ask",
        "q",
        "--checkpoint",
        str(tiny_checkpoint),
        "--database-url",
        filled_store,
        "--since",
        "yesterday",
        cwd=REPO,
    )
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr and "Traceback" not in bad.stderr
    env = {"MBC_DEVICE": "cpu", "PATH": "/usr/bin:/bin", "MBC_DATABASE__URL": filled_store}
    refused = run_mbc(
        "ask",
        "which prices fell",
        "--checkpoint",
        str(tiny_checkpoint),
        "--source",
        "nowhere",
        cwd=REPO,
        env=env,
    )
    assert (refused.returncode, refused.stdout) == (3, "")
    assert refused.stderr.splitlines() == [
        "no answer: no stored document is in this slice (source 'nowhere'): nothing to answer from"
    ]
    as_json = run_mbc(
        "ask",
        "which prices fell",
        "--source",
        "nowhere",
        "--json",
        cwd=REPO,
        env={**env, "MBC_CHECKPOINT": str(tiny_checkpoint)},  # the same setting as mbc learn's
    )
    assert as_json.returncode == 3
    body = json.loads(as_json.stdout)
    assert (body["answer"], body["documents"], body["source"]) == (None, 0, "nowhere")
    assert body["refusal"] == refused.stderr.strip().removeprefix("no answer: ")
    blank = run_mbc("ask", "   ", "--checkpoint", str(tiny_checkpoint), cwd=REPO, env=env)
    assert blank.returncode == 2
    assert blank.stderr.splitlines() == ["error: the question is blank: give a question with words in it"]
