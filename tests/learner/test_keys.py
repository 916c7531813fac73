"""Learned retrieval keys (`learner.keys`): the store's code-mean keys reproduce the head's document keys
exactly, summed codes' rows add up to their decoded vectors, and contrastive training finds documents a
random head cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learner.keys.head import KeyHead, key_head_info, load_key_head, save_key_head
from learner.keys.train import Features, KeyTrainConfig, recall, train_key_head
from learner.model.code_space import CodeSpace
from learner.model.codebook import Codebook
from memory_store.doc_keys import document_keys


def test_document_keys_from_the_key_book_equal_the_head_s_keys_of_the_mean_code_row() -> None:
    torch.manual_seed(0)
    head = KeyHead(24, key_dim=8, hidden=16)
    head.set_stats(torch.randn(50, 24) * 3 + 1, torch.randn(50, 24))
    code_rows = torch.randn(40, 24)  # (G·C, D)
    codes = np.random.default_rng(0).integers(0, 40, size=(7, 12))  # (N, K·G)
    via_store = document_keys(codes, head.key_book(code_rows).detach().numpy())  # what the store computes
    direct = head.doc_keys(code_rows[torch.from_numpy(codes)].mean(1)).detach().numpy()
    np.testing.assert_allclose(via_store, direct, rtol=1e-5, atol=1e-6)


def test_summed_codes_rows_add_up_to_the_decoded_rows_in_the_standardized_space() -> None:
    k, g, c, d = 3, 4, 16, 24  # slots, codes per vector, codes per group, D; G·d = D
    torch.manual_seed(0)
    space = CodeSpace(dim=d, slots=k, groups=g, code_dim=d // g, cosine=False, combine="sum")
    book = Codebook(c, d, update="ema", space=space)
    space.set_stats(torch.randn(64, k, d) * 2 + 0.5)
    codes = torch.stack([torch.randint(0, c, (5, k)) + i * c for i in range(g)], dim=-1).flatten(
        1
    )  # (5, K·G)
    rows = book.document_rows(codes)  # (5, K, D) decoded
    standardized = (rows - space.slot_mean) * torch.rsqrt(space.slot_var + space.eps)  # (5, K, D)
    summed = book.code_rows()[codes].view(5, k, g, d).sum(2)  # (5, K, D)
    torch.testing.assert_close(summed, standardized, rtol=1e-4, atol=1e-4)


def _pairs(n_docs: int, per_doc: int, dim: int, seed: int) -> Features:
    """Documents and questions related by a fixed random linear map plus noise (a learnable match)."""
    g = torch.Generator().manual_seed(seed)
    docs = torch.randn(n_docs, dim, generator=g) * 2 + 5  # a large shared offset, as SmolLM2's vectors
    mix = torch.randn(dim, dim, generator=g) / dim**0.5
    gold = np.repeat(np.arange(n_docs), per_doc)
    questions = docs[torch.from_numpy(gold)] @ mix + 0.3 * torch.randn(len(gold), dim, generator=g)
    return Features(docs, questions, gold.astype(np.int64), np.zeros((n_docs, 1), np.int64))


def test_contrastive_training_finds_held_out_documents_that_a_random_head_does_not() -> None:
    f = _pairs(400, 3, 32, seed=1)
    cfg = KeyTrainConfig(key_dim=32, hidden=64, steps=300, batch_size=128, lr=3e-3, heldout=0.2)
    head, report = train_key_head(f, cfg, torch.device("cpu"), progress=False)
    assert recall(head, f)["recall_at_8"] >= 0.9  # every question, against every document
    assert report["heldout_documents"] == 80 and report["heldout_questions"] == 240
    assert report["final_loss"] < 0.5 * report["first_loss"]
    held = report["heldout"]
    assert len(report["curve"]) == 6  # every 50 steps
    assert held["recall_at_8"] == pytest.approx(max(c["heldout_recall_at_8"] for c in report["curve"]))
    assert held["recall_at_8"] >= 0.9 and held["recall_at_1"] >= 0.6  # against all 400 documents
    random_head = KeyHead(32, 32, 64)
    random_head.set_stats(f.docs, f.questions)
    assert recall(random_head, f)["recall_at_8"] < 0.2  # chance: 8 / 400


def test_a_saved_key_head_loads_with_the_same_keys_and_its_info(tmp_path: Path) -> None:
    torch.manual_seed(2)
    head = KeyHead(16, 8, 12)
    head.set_stats(torch.randn(20, 16), torch.randn(20, 16))
    save_key_head(head, tmp_path, {"heldout": {"recall_at_8": 0.5}})
    loaded = load_key_head(tmp_path)
    assert loaded is not None and load_key_head(tmp_path / "missing") is None
    x = torch.randn(5, 16)
    torch.testing.assert_close(loaded.doc_keys(x), head.doc_keys(x))
    torch.testing.assert_close(loaded.queries(x), head.queries(x))
    assert key_head_info(tmp_path) == {"heldout": {"recall_at_8": 0.5}}


def test_too_few_documents_with_questions_is_a_value_error() -> None:
    f = _pairs(2, 1, 8, seed=0)
    with pytest.raises(ValueError, match="training documents"):
        train_key_head(f, KeyTrainConfig(steps=1, heldout=0.5), torch.device("cpu"), progress=False)


def test_question_features_read_the_question_even_under_the_reconstruction_query() -> None:
    """With memory_query="reconstruct" the aggregator reads one fixed query for every question; the
    key head must not: two questions get two features."""
    from learner.keys.head import encode_questions
    from learner.model.build import build_model
    from learner.text.batching import TextBatcher, pad
    from learner.text.tokenizers import Tokenizers, train_tokenizer
    from tests.learner.helpers import small_model_config

    torch.manual_seed(0)
    bpe = train_tokenizer(["where does alice work", "what is bob's job in oslo"] * 5, 64)
    cfg = small_model_config(memory_query="reconstruct").validate()
    model = build_model(cfg, "scratch", Tokenizers(bpe, bpe, shared=True)).eval()
    texts = TextBatcher(Tokenizers(bpe, bpe, shared=True), cfg)
    questions = ["where does alice work", "what is bob's job in oslo"]
    fixed = texts.questions_amort(questions)
    assert fixed[0] == fixed[1]  # what the aggregator reads
    with torch.no_grad():
        ids, mask = pad(fixed, texts.tok.amort_pad_id)
        x = model.aggregator.question_encoder(ids, mask)
    assert torch.allclose(x[0], x[1])
    own = encode_questions(model, texts, questions, torch.device("cpu"))  # (2, D)
    assert own.shape == (2, cfg.lm.hidden) and not torch.allclose(own[0], own[1], atol=1e-4)
