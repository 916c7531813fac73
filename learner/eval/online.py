"""Online-adaptation evaluation (the papers' protocol, docs/DESIGN.md §1) behind `mbc eval`.

1. **Adapt**: the test documents are tokenized, amortized and — in ``compressed`` mode —
   quantized and packed into the stored byte format (:mod:`memory_store.codec`); in ``full`` mode
   the float context vectors are kept. Timed end to end: ``adaptation_ms_per_doc``.
2. **Answer**: the memory is built from what was stored — counts per (version, code) or every
   stored code (``naive``) — and every question is answered against the whole bank. Timed end to
   end including unpacking, aggregation, prefix expansion and decoding: ``inference_ms_per_query``.

Rows (``memory``): ``none`` (no memory: the base LM alone, or — for a checkpoint trained with
``--memory none``, the closed-book baseline — the question with its trained KV-LoRA),
``compressed`` (MBC), ``full`` (MAC) and ``paragraph`` — the gold paragraph + question in the
prompt with the checkpoint's KV-LoRA, no memory (its "bank" is the documents' UTF-8 text; the
ceiling when the checkpoint was trained with ``--memory paragraph``). ``oracle`` (compressed or
full): each question's memory is its own document only — what compression keeps — instead of the
whole bank — what a user gets.

Timers synchronize CUDA before reading the clock and divide by what their names say.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corpora.types import QADataset, QADocument, QAExample
from learner.errors import CheckpointError, ConfigValueError
from learner.eval.bank import Bank
from learner.eval.bm25 import BM25
from learner.eval.retrieval import recall_at_k, retrieve_for, retrieved_memory
from learner.eval.squad_metrics import best_over
from learner.inference.answer import DecodeConfig, answer_questions
from learner.inference.device import timed
from learner.inference.encode import DocumentEncoder
from learner.keys.head import KeyHead
from learner.model.mbc import MBCModel
from learner.model.memory import (
    Aggregation,
    Memory,
    count_codes,
    memory_from_counts,
    memory_full,
    memory_naive,
)
from learner.model.precision import needs_autocast
from learner.text.tokenizers import Tokenizers
from memory_store.codec import CODE_FORMAT_VERSION, pack_codes_batch
from memory_store.text_sketch import TextSketch, bucket_counts, rank

# How --retrieve ranks the bank: "keys", the store's own retrieval (document keys and the model's
# queries, learner.eval.retrieval); "bm25", the documents' text (learner.eval.bm25), for any memory;
# "sketch", the text sketch each document's key could be written as (memory_store.text_sketch)
RETRIEVERS: tuple[str, ...] = ("keys", "bm25", "sketch")


@torch.no_grad()
def adapt(
    model: MBCModel, encoder: DocumentEncoder, docs: Sequence[QADocument], mode: str, batch_size: int
) -> Bank:
    """Amortize (and quantize + pack) ``docs`` into a bank, through the one text -> codes path."""
    cfg = model.config
    bank = Bank(mode, len(docs), cfg.stored_codes, cfg.stored_codebook_size, cfg.codes_per_vector)
    if mode in ("none", "paragraph"):
        bank.text_bytes = sum(len(d.text.encode()) for d in docs) if mode == "paragraph" else 0
        return bank
    version = int(model.codebook.version)
    vectors = model.codebook.vectors.detach()  # (G·C, d)
    codes_parts, vec_parts = [], []
    for i in range(0, len(docs), batch_size):
        texts = [d.text for d in docs[i : i + batch_size]]
        if mode == "compressed":
            codes_parts.append(encoder.encode_codes(texts, vectors)[1].cpu().numpy())  # (b, K·G)
        else:
            vec_parts.append(encoder.encode(texts).cpu())  # (b, K, D)
    if mode == "compressed":
        codes = np.concatenate(codes_parts)  # (N, K·G)
        bank.blobs = pack_codes_batch(
            codes, bank.num_codes, groups=bank.groups, code_format=CODE_FORMAT_VERSION
        )
        bank.versions = np.full(len(docs), version, dtype=np.int64)
        bank.codebooks = {version: vectors.float()}
        if model.codebook.per_code_rows:
            bank.rows = {version: model.codebook.memory_rows(vectors).float()}
        else:  # summed codes: each document's rows decoded from the codes it stored
            bank.decoded = (
                model.codebook.document_rows(torch.from_numpy(codes), vectors).float().cpu()
            )  # (N, K, D)
    else:
        bank.vectors = torch.cat(vec_parts)
    return bank


def bank_memory(bank: Bank, aggregation: Aggregation, device: torch.device) -> Memory | None:
    """The memory the aggregator attends over, built from what the bank stored."""
    if bank.mode in ("none", "paragraph"):
        return None
    if bank.mode == "full" or bank.decoded is not None:  # per-document rows: every one attended
        return memory_full(bank.document_rows(np.arange(bank.num_docs)).to(device))
    codes = bank.codes()
    if aggregation == "counts":
        return memory_from_counts(count_codes(codes, bank.versions), bank.rows, device)
    return memory_naive(codes, bank.versions, bank.rows, device)


def oracle_memory(bank: Bank, doc_index: Sequence[int]) -> Memory:
    """Per-question memory (Q, R, D): question q sees only the rows of its own document
    ``doc_index[q]`` (R = K float vectors, K·G decoded codes, or K summed ones), as stored."""
    return Memory(bank.document_rows(np.asarray(list(doc_index), dtype=np.int64)))  # (Q, R, D)


@dataclass
class EvalReport:
    summary: dict[str, Any]
    rows: list[dict[str, Any]]


def online_eval(
    model: MBCModel,
    tokenizers: Tokenizers,
    data: QADataset,
    *,
    num_docs: int | None,
    memory: str = "compressed",
    aggregation: Aggregation = "counts",
    decode: DecodeConfig | None = None,
    batch_size: int = 16,
    device: torch.device | None = None,
    max_questions: int | None = None,
    bf16: bool = False,
    preset: str | None = None,
    oracle: bool = False,
    retrieve: int = 0,
    retriever: str = "keys",
    key_head: KeyHead | None = None,
) -> EvalReport:
    """Adapt on the first ``num_docs`` documents of ``data``, then answer all their questions
    (against the whole bank, with ``retrieve`` > 0 against the ``retrieve`` documents each question
    retrieves from it, or with ``oracle`` each against its own document only). ``key_head``: the
    checkpoint's learned keys, which ``retriever="keys"`` then ranks by (:mod:`learner.keys`)."""
    if memory == "compressed" and model.train_memory == "full":
        raise CheckpointError("this checkpoint was meta-trained with full memory: it has no trained codebook")
    if memory in ("compressed", "full") and model.train_memory in ("none", "paragraph"):
        raise CheckpointError(
            f"this checkpoint is the {model.train_memory!r} baseline: its memory path was never trained"
        )
    if oracle and memory not in ("compressed", "full"):
        raise CheckpointError("the oracle setting needs --memory compressed or full")
    if retrieve < 0:
        raise ConfigValueError(
            f"--retrieve must be 0 (the whole bank) or a number of documents, got {retrieve}"
        )
    if retriever not in RETRIEVERS:
        raise ConfigValueError(f"--retriever must be one of {', '.join(RETRIEVERS)}, got {retriever!r}")
    if retrieve and oracle:
        raise ConfigValueError("--retrieve reads the documents a question retrieves: give --no-oracle")
    if retrieve and retriever == "keys" and memory != "compressed":
        raise ConfigValueError(
            "--retrieve with --retriever keys needs --memory compressed (it ranks stored codes); "
            "--retriever bm25 or sketch ranks the documents' text for any memory"
        )
    if retrieve and memory not in ("compressed", "full"):
        raise ConfigValueError("--retrieve needs --memory compressed or full")
    if retrieve and retriever == "keys" and not model.codebook.per_code_rows and key_head is None:
        raise ConfigValueError(
            "this checkpoint's codes add up per vector (code_combine='sum'): they have no rows of their "
            "own to build retrieval queries from; train a key head (mbc train-keys) or use --retriever bm25"
        )
    decode = decode or DecodeConfig(max_new_tokens=model.config.max_answer_tokens)
    bf16 = bf16 or needs_autocast(model)  # bf16 frozen base weights (learner.model.precision)
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    encoder = DocumentEncoder.of_model(model, tokenizers, device, bf16)
    subset = data.first_docs(num_docs)
    docs = list(subset.documents.values())
    examples: list[QAExample] = subset.examples[:max_questions] if max_questions else subset.examples
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    adapt_t: list[float] = []
    infer_t: list[float] = []
    with timed(device, adapt_t):
        bank = adapt(model, encoder, docs, memory, batch_size)
    closed_book = memory == "none" and model.train_memory == "none"  # the baseline's own KV-LoRA
    positions = None
    with timed(device, infer_t):
        mem: Memory | None
        if retrieve and retriever == "bm25":
            bm25 = BM25([d.text for d in docs])
            tops = [bm25.top(e.question, retrieve) for e in examples]
            positions = (
                np.stack(tops) if tops else np.zeros((0, min(retrieve, len(docs))), np.int64)
            )  # (Q, k)
        elif retrieve and retriever == "sketch":
            sketch = TextSketch()
            keys = sketch.documents([d.text for d in docs])  # (N, H)
            queries = sketch.queries([e.question for e in examples], bucket_counts(keys), len(docs))
            positions = rank(keys, queries, retrieve)  # (Q, k)
        elif retrieve:
            positions = retrieve_for(
                model,
                encoder.texts,
                bank,
                [e.question for e in examples],
                retrieve,
                device,
                key_head=key_head,
                bf16=bf16,
            )
        if positions is not None:
            preds = _answer_retrieved(
                model, encoder, bank, examples, positions, decode, batch_size, device, bf16
            )
        elif oracle:
            position = {doc.doc_id: i for i, doc in enumerate(docs)}
            mem = oracle_memory(bank, [position[e.doc_id] for e in examples])
        else:
            mem = bank_memory(bank, aggregation, device)
        if not retrieve:
            contexts = [subset.documents[e.doc_id].text for e in examples] if memory == "paragraph" else None
            preds = answer_questions(
                model,
                encoder.texts,
                [e.question for e in examples],
                mem,
                decode,
                batch_size,
                device,
                bf16,
                contexts,
                lora=closed_book,
            )
    model.train(was_training)
    rows = [
        {
            "qa_id": ex.qa_id,
            "doc_id": ex.doc_id,
            "question": ex.question,
            "answers": "\\".join(ex.answers),
            "prediction": p,
            "em": best_over("em", p, ex.answers),
            "f1": best_over("f1", p, ex.answers),
        }
        for ex, p in zip(examples, preds, strict=True)
    ]
    n_docs, n_q = len(docs), len(examples)
    d = model.lm.hidden
    summary = {
        "em": float(np.mean([r["em"] for r in rows])) if rows else 0.0,
        "f1": float(np.mean([r["f1"] for r in rows])) if rows else 0.0,
        "num_docs": n_docs,
        "num_questions": n_q,
        "bank_bytes": bank.bank_bytes,
        "codebook_bytes": bank.codebook_bytes,
        "bytes_per_doc": bank.bank_bytes / n_docs if n_docs else 0.0,
        "full_memory_bytes_per_doc": model.config.num_vectors * d * 4,
        "adaptation_ms_per_doc": 1000.0 * adapt_t[0] / n_docs if n_docs else 0.0,
        "inference_ms_per_query": 1000.0 * infer_t[0] / n_q if n_q else 0.0,
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "memory": memory,
        "bank": "oracle" if oracle else ("all" if memory in ("compressed", "full") else None),
        "retrieve": retrieve,
        "retriever": (
            ("learned keys" if retriever == "keys" and key_head is not None else retriever)
            if retrieve
            else None
        ),
        "recall_at_k": None if positions is None else recall_at_k(positions, _gold(docs, examples)),
        "trained_memory": model.train_memory,
        "aggregation": _aggregation_name(model, memory, oracle, aggregation),
        "decoding": decode.name,
        "preset": preset or model.config.preset,
        "device": str(device),
        "distinct_codes": len(count_codes(bank.codes(), bank.versions)) if memory == "compressed" else None,
        "num_vectors": model.config.num_vectors,
        "codes_per_vector": model.config.codes_per_vector,
        "stored_codes_per_doc": model.config.stored_codes,
        "codebook_size": model.config.codebook_size,
        "bf16": bf16,
    }
    return EvalReport(summary, rows)


def _aggregation_name(model: MBCModel, memory: str, oracle: bool, aggregation: Aggregation) -> str | None:
    """What the summary calls the aggregation: None without a compressed bank, "per-document" for
    summed codes (every document's decoded rows; there are no per-code rows to count)."""
    if memory != "compressed" or oracle:
        return None
    return aggregation if model.codebook.per_code_rows else "per-document"


def _gold(docs: Sequence[QADocument], examples: Sequence[QAExample]) -> list[int]:
    position = {doc.doc_id: i for i, doc in enumerate(docs)}
    return [position[e.doc_id] for e in examples]


def _answer_retrieved(
    model: MBCModel,
    encoder: DocumentEncoder,
    bank: Bank,
    examples: Sequence[QAExample],
    positions: np.ndarray,
    decode: DecodeConfig,
    batch_size: int,
    device: torch.device,
    bf16: bool,
) -> list[str]:
    """Answers, each question from the codes of its retrieved documents (a batch's memory at a time)."""
    preds: list[str] = []
    for i in range(0, len(examples), batch_size):
        chunk = [e.question for e in examples[i : i + batch_size]]
        mem = retrieved_memory(bank, positions[i : i + batch_size], device)  # (b, k·R, D)
        preds += answer_questions(model, encoder.texts, chunk, mem, decode, batch_size, device, bf16)
    return preds


def write_report(report: EvalReport, out_dir: Path, stem: str = "eval") -> tuple[Path, Path]:
    """``<stem>_questions.csv`` (one row per question) and ``<stem>_summary.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / f"{stem}_questions.csv", out_dir / f"{stem}_summary.json"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["qa_id", "doc_id", "question", "answers", "prediction", "em", "f1"])
        w.writeheader()
        w.writerows(report.rows)
    json_path.write_text(json.dumps(report.summary, indent=2) + "\n")
    return csv_path, json_path
