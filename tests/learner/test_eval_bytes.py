"""`mbc eval`'s bank stores what the memory store would: code format 2, packed by the codebook's G
groups. The smollm2-135m code space (12 vectors x 4 codes of 512) is 54 bytes per document."""

from __future__ import annotations

import numpy as np
import torch

from corpora.types import QADataset, QADocument, QAExample
from learner.eval.online import adapt, online_eval
from learner.inference.encode import DocumentEncoder
from learner.model.build import build_model
from learner.text.tokenizers import Tokenizers, train_tokenizer
from memory_store.codec import packed_size
from tests.learner.helpers import small_model_config


def test_a_code_space_bank_is_54_bytes_per_document() -> None:
    torch.manual_seed(0)
    bpe = train_tokenizer(["alice works as a baker", "what does alice do"] * 5, 64)
    tok = Tokenizers(bpe, bpe, shared=True)
    cfg = small_model_config(num_vectors=12, codes_per_vector=4, code_dim=8, codebook_size=512)
    model = build_model(cfg, "scratch", tok)
    docs = {f"d{i}": QADocument(f"d{i}", f"alice works as a baker {i}") for i in range(3)}
    data = QADataset(
        "t", docs, [QAExample(f"q{i}", f"d{i}", "what does alice do", ("baker",)) for i in range(3)]
    )

    encoder = DocumentEncoder.of_model(model, tok, torch.device("cpu"), False)
    bank = adapt(model, encoder, list(docs.values()), "compressed", batch_size=2)
    texts = [d.text for d in docs.values()]
    want = encoder.encode_codes(texts, model.codebook.vectors.detach())[1].numpy()  # (3, 48)
    assert np.array_equal(bank.codes(), want)  # unpacked exactly, global indices g·512 + c
    assert ((want // 512) == np.arange(48) % 4).all()
    assert {len(b) for b in bank.blobs} == {54} and packed_size(48, 2048, code_format=1) == 66

    for aggregation in ("counts", "naive"):
        summary = online_eval(model, tok, data, num_docs=None, aggregation=aggregation).summary
        assert summary["bytes_per_doc"] == 54.0 and summary["bank_bytes"] == 3 * 54
        assert summary["stored_codes_per_doc"] == 48
