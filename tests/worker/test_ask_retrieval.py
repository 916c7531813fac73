"""Retrieve, then aggregate: `mbc ask --retrieve K` and POST /ask answer from the K best documents of
the slice, exactly as the aggregation over those documents' codes would, and cite what they drew on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from learner.ask.answerer import Answerer
from learner.ask.retrieval import document_masses, query_function, question_vectors, retrieved_codes
from learner.ask.service import build_app
from learner.model.memory import count_codes, memory_from_counts, memory_naive
from memory_store.store import MemoryStore
from tests.mbc_process import run_mbc
from tests.worker.conftest import REPO
from tests.worker.test_ask import QUESTIONS, filled_store  # noqa: F401  (the module's fixture)


@pytest.fixture
def store_copy(filled_store: str, tmp_path: Path) -> str:  # noqa: F811
    """A private copy of the filled store (these tests delete documents)."""
    src = Path(filled_store.removeprefix("sqlite:///"))
    shutil.copy(src, tmp_path / "memory.db")
    return f"sqlite:///{tmp_path / 'memory.db'}"


def test_retrieve_then_aggregate_equals_aggregating_the_retrieved_documents(
    tiny_checkpoint: Path, store_copy: str
) -> None:
    store = MemoryStore(store_copy)
    answerer = Answerer(tiny_checkpoint, store, "cpu")
    for q in QUESTIONS:
        a = answerer.ask(q, retrieve=5)
        x = question_vectors(answerer.model, answerer.texts, q, answerer.device)
        query = query_function(answerer.model, x, lambda v: answerer._codebook_tensors({v})[v])
        found = store.retrieve(query, 5)
        assert a.documents == 5 and a.retrieve == 5 and a.refusal is None
        assert sorted(c.id for c in a.citations) == sorted(d.id for d in found)
        assert sum(c.attention_mass for c in a.citations) == pytest.approx(1.0, abs=1e-5)
        assert a.uncited_mass == 0.0
        codes, versions = retrieved_codes(found)
        assert a.memory_rows == len(count_codes(codes, versions))
        # The same documents' codes aggregated naively (every code a row) give the same answer ...
        books = answerer._codebook_tensors({int(v) for v in versions})
        naive = memory_naive(codes, versions, books)
        from learner.inference.answer import answer_questions

        again = answer_questions(
            answerer.model, answerer.texts, [q], naive, answerer.decode, 1, answerer.device
        )
        assert a.answer == again[0]
        # ... and the same attention per document: naive rows summed per document = counts masses.
        per_row = answerer.model.aggregator.attention_mass(x, naive)[0].view(len(found), -1).sum(1)
        counts = count_codes(codes, versions)
        masses = document_masses(
            [(d.codebook_version, d.indices) for d in found],
            counts,
            answerer.model.aggregator.attention_mass(x, memory_from_counts(counts, books))[0],
        )
        np.testing.assert_allclose(masses, per_row.numpy(), atol=1e-5)
        by_id = {c.id: c.attention_mass for c in a.citations}
        np.testing.assert_allclose([by_id[d.id] for d in found], masses, atol=1e-5)
    store.close()


def test_whole_slice_answers_cite_the_best_retrieved_documents_with_their_share(
    tiny_checkpoint: Path, store_copy: str
) -> None:
    store = MemoryStore(store_copy)
    answerer = Answerer(tiny_checkpoint, store, "cpu", cite=4)
    a = answerer.ask(QUESTIONS[1], source="wire-b")
    assert a.retrieve == 0 and a.documents == 40 and len(a.citations) == 4
    assert {c.source for c in a.citations} == {"wire-b"}
    assert a.uncited_mass == pytest.approx(1.0 - sum(c.attention_mass for c in a.citations), abs=1e-5)
    assert 0.0 < sum(c.attention_mass for c in a.citations) < 1.0
    assert [c.attention_mass for c in a.citations] == sorted(
        (c.attention_mass for c in a.citations), reverse=True
    )
    store.close()


def test_a_deleted_document_leaves_answers_and_citations_at_once(
    tiny_checkpoint: Path, store_copy: str
) -> None:
    store = MemoryStore(store_copy)
    answerer = Answerer(tiny_checkpoint, store, "cpu")
    first = answerer.ask(QUESTIONS[2], retrieve=3)
    gone = first.citations[0].id
    with MemoryStore(store_copy) as other:  # e.g. `mbc store delete` in another process
        assert other.delete_document(gone)
    after = answerer.ask(QUESTIONS[2], retrieve=3)  # no refresh in between: the database decides
    assert gone not in [c.id for c in after.citations] and len(after.citations) == 3
    assert after.documents == 3
    whole = answerer.ask(QUESTIONS[2])
    assert gone not in [c.id for c in whole.citations] and whole.documents == 119
    store.close()


def test_http_ask_retrieve_and_citations(tiny_checkpoint: Path, store_copy: str) -> None:
    from learner.ask.service import AskLimits

    store = MemoryStore(store_copy)
    client = TestClient(build_app(Answerer(tiny_checkpoint, store, "cpu"), None, AskLimits(retrieve=2)))
    r = client.post("/ask", json={"question": QUESTIONS[0], "retrieve": 4, "source": "wire-a"})
    body = r.json()
    assert r.status_code == 200 and body["retrieve"] == 4 and body["documents"] == 4
    assert len(body["citations"]) == 4 and {c["source"] for c in body["citations"]} == {"wire-a"}
    assert set(body["citations"][0]) == {
        "id",
        "title",
        "url",
        "source",
        "published_at",
        "attention_mass",
        "score",
    }
    assert sum(c["attention_mass"] for c in body["citations"]) == pytest.approx(1.0, abs=1e-4)
    default = client.post("/ask", json={"question": QUESTIONS[0]}).json()
    assert default["retrieve"] == 2 and len(default["citations"]) == 2  # the service's setting
    bad = client.post("/ask", json={"question": QUESTIONS[0], "retrieve": -1})
    assert bad.status_code == 422 and "retrieve" in bad.json()["detail"]
    store.close()


def _mbc(*args: str) -> subprocess.CompletedProcess[str]:
    return run_mbc(*args, cwd=REPO, env={"MBC_DEVICE": "cpu", "PATH": "/usr/bin:/bin"})


def test_mbc_ask_retrieve_cli(tiny_checkpoint: Path, store_copy: str) -> None:
    common = ("--checkpoint", str(tiny_checkpoint), "--database-url", store_copy)
    out = _mbc("ask", "which prices fell", *common, "--retrieve", "3", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    body = json.loads(out.stdout)
    assert body["retrieve"] == 3 and body["documents"] == 3 and len(body["citations"]) == 3
    text = _mbc("ask", "which prices fell", *common, "--retrieve", "2")
    assert text.returncode == 0 and "cites (the 2 retrieved documents, by attention mass):" in text.stdout
    assert text.stdout.count("https://") == 0 and text.stdout.count("(wire-") == 2
    bad = _mbc("ask", "which prices fell", *common, "--retrieve", "-1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --retrieve")
    assert "--retrieve" in _mbc("ask", "--help").stdout


def test_the_query_of_a_version_is_a_unit_vector_in_its_code_space(
    tiny_checkpoint: Path, store_copy: str
) -> None:
    store = MemoryStore(store_copy)
    answerer = Answerer(tiny_checkpoint, store, "cpu")
    x = question_vectors(answerer.model, answerer.texts, QUESTIONS[0], answerer.device)
    query = query_function(answerer.model, x, lambda v: answerer._codebook_tensors({v})[v])
    book = store.get_codebook(1).vectors
    q = query(1, book)
    assert q.shape == (book.shape[1],) and float(np.linalg.norm(q)) == pytest.approx(1.0, abs=1e-5)
    assert torch.is_tensor(x) and x.shape[0] == 1
    store.close()


def test_a_checkpoint_with_learned_keys_ranks_the_store_by_them(
    tiny_checkpoint: Path, store_copy: str, tmp_path: Path
) -> None:
    """With key_head.safetensors beside the checkpoint (mbc train-keys), retrieval scores every stored
    document by the head: its key from the head's key book of the document's own codebook version."""
    from learner.keys.head import KeyHead, question_features, save_key_head
    from memory_store.doc_keys import document_keys

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    plain = Answerer(tiny_checkpoint, MemoryStore(store_copy), "cpu")
    dim = int(plain.model.codebook.code_rows().shape[1])
    plain.store.close()
    torch.manual_seed(3)
    head = KeyHead(dim, key_dim=16, hidden=32)
    head.set_stats(torch.randn(30, dim), torch.randn(30, dim))
    save_key_head(head, ckpt, {})
    store = MemoryStore(store_copy)
    answerer = Answerer(ckpt, store, "cpu")
    assert answerer.key_head is not None
    for q in QUESTIONS[:2]:
        a = answerer.ask(q, retrieve=5)
        x = question_vectors(answerer.model, answerer.texts, q, answerer.device)
        query = head.queries(question_features(x))[0].detach().numpy()
        scores = {}
        for i in range(120):
            doc = store.document(f"doc{i}")
            assert doc is not None
            book = answerer._key_book(doc.codebook_version, store.get_codebook(doc.codebook_version).vectors)
            scores[doc.id] = float(document_keys(np.asarray([doc.indices]), book)[0] @ query)
        top = sorted(scores, key=lambda n: -scores[n])[:5]
        assert a.learned_keys and a.retrieve == 5
        cited = sorted(a.citations, key=lambda c: -c.score)
        # many of these random-weight documents share their codes: ties may break either way
        np.testing.assert_allclose([c.score for c in cited], [scores[n] for n in top], atol=1e-5)
        np.testing.assert_allclose([c.score for c in cited], [scores[c.id] for c in cited], atol=1e-5)
        assert len({round(v, 4) for v in scores.values()}) > 1  # the head does tell documents apart
    store.close()


def _sketched(store_copy: str) -> list[str]:
    """Give the copied store's documents the text sketches the learner would have written; their texts."""
    import sqlalchemy as sa

    from memory_store.models import documents
    from memory_store.text_sketch import TextSketch
    from tests.worker.test_ask import WORDS

    texts = [" ".join(WORDS[(i * 11 + j * 3) % len(WORDS)] for j in range(25)) for i in range(120)]
    rows = TextSketch().documents(texts)
    store = MemoryStore(store_copy)
    with store.engine.begin() as conn:
        for i, row in enumerate(rows):
            conn.execute(
                sa.update(documents).where(documents.c.id == f"doc{i}").values(text_sketch=row.tobytes())
            )
    store.close()
    return texts


def test_answers_can_retrieve_by_the_documents_text_sketches(tiny_checkpoint: Path, store_copy: str) -> None:
    texts = _sketched(store_copy)
    store = MemoryStore(store_copy)
    answerer = Answerer(tiny_checkpoint, store, "cpu", retriever="sketch")
    question = " ".join(texts[17].split()[:8])  # eight words of doc17
    a = answerer.ask(question, retrieve=3)
    found = store.retrieve_by_text(question, 3)
    assert a.retriever == "sketch" and not a.learned_keys and a.retrieve == 3
    assert sorted(c.id for c in a.citations) == sorted(d.id for d in found)
    # the store's ranking is the sketch's: the best scores over all 120 documents (these texts share
    # their words a lot, so which of equal-scored documents comes first is not asserted)
    from memory_store.text_sketch import TextSketch, bucket_counts

    keys = TextSketch().documents(texts).astype(np.float32)
    scores = np.sort(keys @ TextSketch().queries([question], bucket_counts(keys), 120)[0])[::-1]
    np.testing.assert_allclose([d.score for d in found], scores[:3], rtol=1e-5)
    assert sum(c.attention_mass for c in a.citations) == pytest.approx(1.0, abs=1e-5)
    store.close()
    common = ("--checkpoint", str(tiny_checkpoint), "--database-url", store_copy)
    out = _mbc("ask", question, *common, "--retrieve", "3", "--retriever", "sketch", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    body = json.loads(out.stdout)
    assert body["retriever"] == "sketch" and sorted(c["id"] for c in body["citations"]) == sorted(
        d.id for d in found
    )
    bad = _mbc("ask", question, *common, "--retrieve", "3", "--retriever", "words")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
