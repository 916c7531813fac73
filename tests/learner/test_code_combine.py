"""``ModelConfig.code_combine="sum"``: a vector's G codes add up to one memory row (product quantization
proper), starting as plain PQ of the standardized vector; a compressed run can start from a float
run's weights (``init_weights_from(skip=("codebook.",))``); ``mbc eval`` reads such banks per document
(oracle, whole bank, BM25 retrieval) and serving refuses them with one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from corpora.qa import load_dataset
from learner.checkpoint import load_checkpoint, resolve_checkpoint
from learner.errors import CheckpointError, ConfigValueError
from learner.eval.bm25 import BM25
from learner.eval.online import adapt, bank_memory, online_eval, oracle_memory
from learner.inference.encode import DocumentEncoder
from learner.model.code_space import CodeSpace
from learner.model.codebook import Codebook
from learner.training.init_from import init_weights_from
from learner.training.spec import RunSpec
from learner.training.trainer import Trainer
from tests.learner.helpers import ONE_STEP_TRAIN, random_batch, small_model_config, small_synth

D, SLOTS, G, DG = 8, 3, 2, 4  # G·d = D: the PQ start


def _pq_space() -> CodeSpace:
    return CodeSpace(dim=D, slots=SLOTS, groups=G, code_dim=DG, cosine=False, combine="sum")


def test_the_pq_start_decodes_an_unquantized_vector_to_itself() -> None:
    torch.manual_seed(0)
    z = torch.randn(64, SLOTS, D) * torch.linspace(0.5, 40.0, D) + 3.0  # (N, K, D): one massive channel
    space = _pq_space()
    assert space.is_pq
    space.set_stats(z)
    assert torch.allclose(space.decode(space(z)), z, atol=1e-4)  # (N, K, D)


def test_summed_codes_decode_to_the_pq_reconstruction_of_the_standardized_vector() -> None:
    torch.manual_seed(1)
    z = torch.randn(200, SLOTS, D) * 2.0 + torch.arange(D)  # (N, K, D)
    book = Codebook(16, D, update="ema", space=_pq_space())
    book.init_from_context(z, per_step=64, seed=0)
    codes, _ = book.encode(z)  # (N, K·G)
    rows = book.document_rows(codes)  # (N, K, D)
    assert rows.shape == (200, SLOTS, D) and not book.per_code_rows
    space = book.space
    assert space is not None
    std = torch.sqrt(space.slot_var + space.eps)
    u = (z - space.slot_mean) / std  # (N, K, D) standardized
    parts = []
    for g in range(G):
        block = u[..., g * DG : (g + 1) * DG]  # (N, K, d)
        centroids = book.vectors[g * 16 : (g + 1) * 16]  # (C, d)
        nearest = torch.cdist(block.reshape(-1, DG), centroids).argmin(-1)
        parts.append(centroids[nearest].view(200, SLOTS, DG))
    expected = space.slot_mean + std * torch.cat(parts, -1)
    assert torch.allclose(rows, expected, atol=1e-4)
    err_pq = (rows - z).pow(2).mean()
    assert err_pq < 0.5 * (space.slot_mean - z).pow(2).mean()  # the codes say something about z
    with pytest.raises(ValueError, match="no memory row of their own"):
        book.memory_rows()


def test_the_rows_form_is_unchanged() -> None:
    torch.manual_seed(2)
    z = torch.randn(50, SLOTS, D)
    book = Codebook(16, D, update="ema", space=CodeSpace(dim=D, slots=SLOTS, groups=G, code_dim=3))
    book.init_from_context(z, per_step=64, seed=0)
    codes, _ = book.encode(z)
    assert book.per_code_rows
    assert torch.equal(book.document_rows(codes), book.memory_rows()[codes])  # (N, K·G, D)


def test_code_combine_values_are_checked() -> None:
    with pytest.raises(ConfigValueError, match="code_combine must be one of rows, sum"):
        small_model_config(code_combine="mean").validate()
    with pytest.raises(ConfigValueError, match='code_combine="sum" needs a code space'):
        small_model_config(code_combine="sum").validate()


SUM = {
    "code_dim": 16,
    "codes_per_vector": 2,
    "code_combine": "sum",
    "code_cosine": False,
    "max_doc_tokens": 48,
}


def test_a_summed_model_trains_through_k_rows_per_document() -> None:
    from learner.model.build import build_model
    from learner.text.tokenizers import Tokenizers, train_tokenizer

    torch.manual_seed(0)
    bpe = train_tokenizer(["alice works as a baker in oslo"] * 5, 64)
    model = build_model(small_model_config(**SUM).validate(), "scratch", Tokenizers(bpe, bpe, shared=True))
    assert model.codebook.space is not None and model.codebook.space.is_pq  # 2 groups x 16 = hidden 32
    batch = random_batch(4)
    z = model.amortize(batch.doc_ids, batch.doc_mask)
    assert model.codebook(z).quantized.shape == (4, model.config.num_vectors, 32)  # K rows, not K·G
    out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("amortizer.") and p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)  # straight through, into the amortizer


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A float-memory run and a summed compressed run on the same synthetic data, one step each."""
    root = tmp_path_factory.mktemp("combine")
    train, val = small_synth(root)
    out = {"data": root}
    for name, memory, cfg in (
        ("full", "full", small_model_config(max_doc_tokens=48)),
        ("sum", "compressed", small_model_config(**SUM)),
    ):
        spec = RunSpec(root / name, cfg, dataclasses.replace(ONE_STEP_TRAIN, memory=memory))  # type: ignore[arg-type]
        Trainer(spec, train, val, resume=False, progress=False).run(max_steps=1)
        out[name] = resolve_checkpoint(root / name, "last")
    return out


def test_a_new_quantizer_starts_from_a_float_runs_weights(runs: dict[str, Path]) -> None:
    summed, _, _ = load_checkpoint(runs["sum"])
    before = {k: v.clone() for k, v in summed.state_dict().items() if k.startswith("codebook.")}
    with pytest.raises(CheckpointError, match="do not fit"):  # the float run's code space has other shapes
        init_weights_from(summed, runs["full"], None)
    init_weights_from(summed, runs["full"], None, skip=("codebook.",))
    source, _, _ = load_checkpoint(runs["full"])
    theirs = source.state_dict()
    for name, value in summed.state_dict().items():
        if name.startswith("codebook."):
            assert torch.equal(value, before[name])
        elif name.startswith(("amortizer.", "aggregator.", "expander.")):
            assert torch.equal(value, theirs[name]), name


def test_eval_reads_a_summed_bank_per_document(runs: dict[str, Path]) -> None:
    model, tok, _ = load_checkpoint(runs["sum"])
    model.eval()
    test = load_dataset(runs["data"] / "test.csv").first_docs(4)
    docs = list(test.documents.values())
    bank = adapt(model, DocumentEncoder.of_model(model, tok, torch.device("cpu")), docs, "compressed", 2)
    k = model.config.num_vectors
    assert bank.decoded is not None and bank.decoded.shape == (4, k, 32) and not bank.rows
    expected = model.codebook.lookup(torch.from_numpy(bank.codes()))  # what the stored codes decode to
    assert torch.allclose(bank.decoded, expected)
    assert bank.bank_bytes / 4 == len(bank.blobs[0]) and len(bank.blobs[0]) < k * 32 * 4  # codes, not floats
    mem = oracle_memory(bank, [2, 0])
    assert torch.equal(mem.vectors, bank.decoded[[2, 0]])  # (Q, K, D): each question its own document
    whole = bank_memory(bank, "counts", torch.device("cpu"))
    assert whole is not None and whole.vectors.shape == (4 * k, 32)
    report = online_eval(model, tok, test, num_docs=4, memory="compressed", oracle=True, batch_size=4)
    assert report.summary["aggregation"] is None and report.summary["num_questions"] == len(test.examples)
    whole_report = online_eval(model, tok, test, num_docs=4, batch_size=4)
    assert whole_report.summary["aggregation"] == "per-document"
    with pytest.raises(ConfigValueError, match="--retriever bm25"):
        online_eval(model, tok, test, num_docs=4, retrieve=1)


def test_a_learned_key_head_retrieves_from_a_summed_bank(runs: dict[str, Path]) -> None:
    """Summed codes have no rows to query, but learned keys need only each code's own contribution:
    eval's ranking is the key head's ranking of the same documents."""
    from learner.keys.train import KeyTrainConfig, features, recall, train_key_head

    model, tok, _ = load_checkpoint(runs["sum"])
    test = load_dataset(runs["data"] / "test.csv").first_docs(8)
    f = features(model, tok, test, torch.device("cpu"), progress=False)
    assert f.docs.shape == (8, 32) and f.codes.shape == (8, model.config.stored_codes)
    head, _ = train_key_head(
        f, KeyTrainConfig(steps=5, batch_size=4, heldout=0.0), torch.device("cpu"), False
    )
    report = online_eval(model, tok, test, num_docs=8, retrieve=2, key_head=head, batch_size=4)
    assert report.summary["retriever"] == "learned keys"
    assert report.summary["recall_at_k"] == pytest.approx(recall(head, f, ks=(2,))["recall_at_2"])


def test_bm25_retrieval_in_eval_ranks_the_documents_text(runs: dict[str, Path]) -> None:
    model, tok, _ = load_checkpoint(runs["full"])
    test = load_dataset(runs["data"] / "test.csv").first_docs(4)
    docs = list(test.documents.values())
    report = online_eval(
        model, tok, test, num_docs=4, memory="full", retrieve=1, retriever="bm25", batch_size=4
    )
    bm25 = BM25([d.text for d in docs])
    position = {d.doc_id: i for i, d in enumerate(docs)}
    hits = [int(bm25.top(e.question, 1)[0]) == position[e.doc_id] for e in test.examples]
    assert report.summary["recall_at_k"] == pytest.approx(float(np.mean(hits)))
    assert report.summary["retriever"] == "bm25"


def test_sketch_retrieval_in_eval_ranks_the_documents_text_sketches(runs: dict[str, Path]) -> None:
    from memory_store.text_sketch import TextSketch, bucket_counts, rank

    model, tok, _ = load_checkpoint(runs["sum"])
    test = load_dataset(runs["data"] / "test.csv").first_docs(6)
    docs = list(test.documents.values())
    report = online_eval(model, tok, test, num_docs=6, retrieve=2, retriever="sketch", batch_size=4)
    sketch = TextSketch()
    keys = sketch.documents([d.text for d in docs])
    top = rank(keys, sketch.queries([e.question for e in test.examples], bucket_counts(keys), 6), 2)
    position = {d.doc_id: i for i, d in enumerate(docs)}
    hits = [position[e.doc_id] in row for e, row in zip(test.examples, top.tolist(), strict=True)]
    assert report.summary["retriever"] == "sketch"
    assert report.summary["recall_at_k"] == pytest.approx(float(np.mean(hits)))


def test_bm25_scores_follow_the_okapi_formula() -> None:
    texts = ["the cat sat on the mat", "dogs bark loudly", "a cat and a dog and a cat"]
    bm25 = BM25(texts)
    assert bm25.top("cat dog", 3).tolist()[0] == 2
    assert bm25.scores("cat")[1] == 0.0
    n, df, tf, length, avg = 3, 2, 2, 8, (6 + 3 + 8) / 3  # "a cat and a dog and a cat": 8 words
    idf = np.log((n - df + 0.5) / (df + 0.5) + 1)
    expected = idf * tf * 2.5 / (tf + 1.5 * (1 - 0.75 + 0.75 * length / avg))
    assert bm25.scores("Cat!")[2] == pytest.approx(expected)


def test_serving_a_summed_checkpoint_needs_learned_keys_and_answers_from_retrieved_documents(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    import shutil
    from datetime import UTC, datetime, timedelta

    from learner.ask.answerer import Answerer
    from learner.errors import RetrievalRequired
    from learner.inference.answer import answer_questions
    from learner.keys.head import save_key_head
    from learner.keys.train import KeyTrainConfig, features, train_key_head
    from learner.model.memory import Memory
    from memory_store.codec import pack_codes_batch
    from memory_store.records import DocumentRecord
    from memory_store.store import MemoryStore

    store = MemoryStore(f"sqlite:///{tmp_path / 'm.db'}", auto_migrate=True, index_dir=tmp_path / "faiss")
    with pytest.raises(
        CheckpointError, match="mbc train-keys"
    ):  # no learned keys: nothing ranks its documents
        Answerer(runs["sum"], store, "cpu")
    ckpt = tmp_path / "sum"
    shutil.copytree(runs["sum"], ckpt)
    model, tok, _ = load_checkpoint(ckpt)
    test = load_dataset(runs["data"] / "test.csv").first_docs(8)
    f = features(model, tok, test, torch.device("cpu"), progress=False)
    head, _ = train_key_head(
        f, KeyTrainConfig(steps=5, batch_size=4, heldout=0.0), torch.device("cpu"), False
    )
    save_key_head(head, ckpt, {})
    cfg = model.config
    vectors = model.codebook.vectors.detach()
    version = store.add_codebook_version(vectors.numpy(), groups=cfg.codes_per_vector)
    docs = list(test.documents.values())
    blobs = pack_codes_batch(f.codes, cfg.stored_codebook_size, groups=cfg.codes_per_vector)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    from memory_store.text_sketch import TextSketch

    sketches = TextSketch().documents([d.text for d in docs])
    store.write_batch(
        [
            DocumentRecord(
                d.doc_id, "wire", t0 + timedelta(hours=i), "0" * 64, cfg.stored_codes, version, b,
                text_sketch=sketches[i].tobytes(),
            )
            for i, (d, b) in enumerate(zip(docs, blobs, strict=True))
        ]
    )  # fmt: skip
    answerer = Answerer(ckpt, store, "cpu")
    question = test.examples[0].question
    with pytest.raises(RetrievalRequired, match="--retrieve K"):
        answerer.ask(question)  # the whole slice: not for summed codes
    a = answerer.ask(question, retrieve=3)
    assert a.learned_keys and a.aggregation == "per-document" and a.documents == 3
    assert a.memory_rows == 3 * cfg.num_vectors  # K decoded rows per retrieved document
    assert sum(c.attention_mass for c in a.citations) == pytest.approx(1.0, abs=1e-5)
    # the same answer as the model reading those documents' decoded rows directly
    ids = [c.id for c in sorted(a.citations, key=lambda c: -c.score)]
    position = {d.doc_id: i for i, d in enumerate(docs)}
    rows = model.codebook.document_rows(torch.from_numpy(f.codes[[position[i] for i in ids]]), vectors)
    again = answer_questions(
        answerer.model, answerer.texts, [question], Memory(rows.reshape(-1, rows.shape[-1])), answerer.decode, 1,
        torch.device("cpu"),
    )  # fmt: skip
    assert a.answer == again[0]
    # without learned keys, the documents' text sketches can rank them instead
    by_text = Answerer(runs["sum"], store, "cpu", retriever="sketch")
    b = by_text.ask(question, retrieve=3)
    assert b.retriever == "sketch" and not b.learned_keys and b.aggregation == "per-document"
    assert sorted(c.id for c in b.citations) == sorted(d.id for d in store.retrieve_by_text(question, 3))
    store.close()


def test_train_keys_refuses_a_float_memory_checkpoint_before_loading_it(runs: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from mbc.cli import app

    r = CliRunner().invoke(
        app, ["train-keys", "--checkpoint", str(runs["full"]), "--data", str(runs["data"] / "train.csv")]
    )
    assert r.exit_code != 0 and "trained with --memory full" in str(r.exception or r.output)  # mbc: exit 2
