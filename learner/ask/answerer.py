"""Build a question's memory slice from the store and answer it with a trained checkpoint."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from learner.ask.question import question_problem
from learner.ask.retrieval import (
    Citation,
    citations,
    cite,
    first_block_keys,
    query_function,
    question_vectors,
    retrieved_codes,
)
from learner.ask.settings import Retriever
from learner.checkpoint import load_checkpoint, resolve_checkpoint
from learner.errors import BlankQuestion, CheckpointError, RetrievalRequired
from learner.inference.answer import DecodeConfig, answer_questions
from learner.inference.device import pick_device, sync
from learner.keys.head import encode_questions, load_key_head
from learner.model.memory import Aggregation, Memory, count_codes, memory_from_counts, memory_naive
from learner.model.precision import needs_autocast
from learner.text.batching import TextBatcher
from memory_store.protocol import Store
from memory_store.records import RetrievedDocument
from memory_store.retrieve import QueryFn


@dataclass(frozen=True)
class Answer:
    """An answer with what it was computed from and how long it took.

    A slice with no documents is refused, not answered closed-book: ``answer`` is None and
    ``refusal`` says why (``mbc ask`` exits 3; ``POST /ask`` returns this as JSON)."""

    question: str
    answer: str | None
    documents: int  # documents in the memory slice
    memory_rows: int  # rows the aggregator attended over (distinct codes with counts; every code with naive)
    codebook_versions: list[int]
    aggregation: str
    latency_ms: float  # slice query + aggregation + generation, CUDA synchronized
    since: str | None = None
    until: str | None = None
    source: str | None = None
    refusal: str | None = None  # why there is no answer (the slice holds no documents)
    retrieve: int = 0  # top-k documents retrieved before aggregation; 0: the whole slice
    citations: list[Citation] = field(default_factory=list)  # by attention mass, highest first
    uncited_mass: float = 0.0  # attention mass on documents not cited (whole-slice answers only)
    learned_keys: bool = False  # documents ranked by the checkpoint's learned keys (mbc train-keys)
    retriever: str = "keys"  # keys (document keys from the codes) or sketch (the documents' text sketches)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Answerer:
    """A loaded checkpoint plus a store; codebook versions are cached (they never change)."""

    def __init__(
        self,
        checkpoint: Path,
        store: Store,
        device: str = "auto",
        max_new_tokens: int = 16,
        cite: int = 8,
        retriever: Retriever = "keys",
    ) -> None:
        """``cite``: how many documents a whole-slice answer (``retrieve=0``) cites at most;
        ``retriever``: what retrieval ranks by — ``keys`` (document keys from the codes: the
        checkpoint's learned keys when it has a key head) or ``sketch`` (the documents' text
        sketches, :meth:`MemoryStore.retrieve_by_text`)."""
        self.device = pick_device(device)
        self.model, tokenizers, _ = load_checkpoint(checkpoint, self.device)
        # Summed codes (code_combine="sum") have no memory row per code: a document's K rows are decoded
        # from its codes, so answers read retrieved documents only, ranked by learned keys.
        self.summed = not self.model.codebook.per_code_rows
        self.model.eval()
        self.texts = TextBatcher(tokenizers, self.model.config)
        self.store = store
        # Learned retrieval keys (mbc train-keys), when the checkpoint has them: the store's document
        # keys come from the head's per-code key book, the query from the head (learner.keys).
        self.retriever = retriever
        self.key_head = (
            load_key_head(resolve_checkpoint(checkpoint), self.device) if retriever == "keys" else None
        )
        if self.key_head is not None:
            store.use_key_book(self._key_book)
        elif self.summed and retriever == "keys":
            raise CheckpointError(
                f"{checkpoint}: its codes add up per vector (code_combine='sum'), so answers read the "
                "documents a question retrieves, ranked by learned keys: run `mbc train-keys --checkpoint "
                f"{checkpoint} --data <QA file>` first, or retrieve by text sketches (--retriever sketch)"
            )
        self.decode = DecodeConfig(max_new_tokens=max_new_tokens)
        self._codebooks: dict[int, Tensor] = {}
        self._stored_books: dict[int, Tensor] = {}  # version -> its stored code vectors (G·C, d)
        self._query_keys: dict[int, Tensor] = {}  # version -> first-block keys of its rows (queries)
        self.cite = cite

    def _stored(self, version: int) -> Tensor:
        """A stored codebook version's code vectors (G·C, d) on the device, read once (versions never change)."""
        if version not in self._stored_books:
            self._stored_books[version] = torch.from_numpy(self.store.get_codebook(version).vectors).to(
                self.device
            )
        return self._stored_books[version]

    def _codebook_tensors(self, versions: set[int]) -> dict[int, Tensor]:
        """Memory rows (G·C, D) of stored codebook versions (their code vectors decoded by the model)."""
        for v in versions - set(self._codebooks):
            self._codebooks[v] = self.model.codebook.memory_rows(self._stored(v))
        return {v: self._codebooks[v] for v in versions}

    @torch.no_grad()
    def _key_book(self, version: int, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The key head's per-code key book (G·C, d') of a stored codebook version (G·C, d)."""
        assert self.key_head is not None
        rows = self.model.codebook.code_rows(torch.from_numpy(np.asarray(vectors)).to(self.device))
        return self.key_head.key_book(rows).cpu().numpy()  # type: ignore[no-any-return]

    def _find(
        self,
        question: str,
        query: QueryFn,
        k: int,
        since: datetime | None,
        until: datetime | None,
        source: str | None,
    ) -> list[RetrievedDocument]:
        """The slice's ``k`` best documents for ``question``: by text sketch or by document keys."""
        if self.retriever == "sketch":
            return self.store.retrieve_by_text(question, k, since, until, source)
        return self.store.retrieve(query, k, since, until, source)

    def _keys_of(self, version: int) -> Tensor:
        """First-block keys of a version's memory rows, computed once (versions never change)."""
        if version not in self._query_keys:
            self._query_keys[version] = first_block_keys(
                self.model, self._codebook_tensors({version})[version]
            )
        return self._query_keys[version]

    def memory(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        aggregation: Aggregation = "counts",
    ) -> tuple[Memory | None, int, list[int]]:
        """(memory, documents in the slice, codebook versions used); memory None for an empty slice."""
        return self._slice_memory(since, until, source, aggregation)[:3]

    def _slice_memory(
        self,
        since: datetime | None,
        until: datetime | None,
        source: str | None,
        aggregation: Aggregation,
    ) -> tuple[Memory | None, int, list[int], npt.NDArray[np.int64]]:
        """:meth:`memory` and the slice as (version, code, count) rows (R, 3), the counts memory's
        rows in order."""
        k = int(self.model.config.stored_codes)  # codes per document: K·G
        if aggregation == "counts":
            counted = self.store.counts(since=since, until=until, source=source)
            if not counted:
                return None, 0, [], np.zeros((0, 3), np.int64)
            rows = np.asarray([tuple(r) for r in counted], dtype=np.int64)  # (R, 3)
            versions = sorted({r.codebook_version for r in counted})
            memory = memory_from_counts(rows, self._codebook_tensors(set(versions)), self.device)
            return memory, int(rows[:, 2].sum()) // k, versions, rows
        codes, doc_versions = self.store.slice_codes(since=since, until=until, source=source)
        return self._memory_of(codes, doc_versions, aggregation)

    def _memory_of(
        self, codes: npt.NDArray[np.int64], doc_versions: npt.NDArray[np.int64], aggregation: Aggregation
    ) -> tuple[Memory | None, int, list[int], npt.NDArray[np.int64]]:
        """:meth:`memory` of documents given by their codes (N, K) and versions (N,)."""
        if codes.shape[0] == 0:
            return None, 0, [], np.zeros((0, 3), np.int64)
        versions = sorted({int(v) for v in doc_versions})
        books = self._codebook_tensors(set(versions))
        rows = count_codes(codes, doc_versions)  # (R, 3)
        if aggregation == "counts":
            memory = memory_from_counts(rows, books, self.device)
        else:
            memory = memory_naive(codes, doc_versions, books, self.device)
        return memory, int(codes.shape[0]), versions, rows

    def answer_without_memory(self, questions: Sequence[str], batch_size: int = 16) -> list[str]:
        """The base LM's answers with no memory at all (the baseline ``mbc demo`` compares against)."""
        return answer_questions(self.model, self.texts, questions, None, self.decode, batch_size, self.device)

    @torch.no_grad()
    def ask(
        self,
        question: str,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        aggregation: Aggregation = "counts",
        retrieve: int = 0,
    ) -> Answer:
        """Answer ``question`` from the slice — its ``retrieve`` best documents only, when > 0 — and
        cite the documents the aggregation drew on (:mod:`learner.ask.retrieval`)."""
        if problem := question_problem(question):
            raise BlankQuestion(problem)
        if retrieve < 0:
            raise ValueError(f"retrieve must be 0 (the whole slice) or a number of documents, got {retrieve}")
        if self.summed and retrieve == 0:
            raise RetrievalRequired(
                "this checkpoint's codes add up per vector (code_combine='sum'): it answers from the "
                'documents a question retrieves; give --retrieve K (POST /ask: "retrieve": K)'
            )
        t0 = time.perf_counter()
        x = question_vectors(self.model, self.texts, question, self.device)  # (1, K, D)
        if self.retriever == "sketch":
            query: QueryFn = lambda v, book: ()  # noqa: E731  (unused: the store ranks the question's words)
        elif self.key_head is not None:
            bf16 = needs_autocast(self.model)  # bf16 frozen base weights on a GPU
            own = encode_questions(self.model, self.texts, [question], self.device, bf16)  # (1, D)
            learned = self.key_head.queries(own)[0].cpu().numpy()  # (d',)
            query = lambda v, book: learned  # noqa: E731  (the same for every version)
        else:
            query = query_function(self.model, x, lambda v: self._codebook_tensors({v})[v], self._keys_of)
        text, refusal, cited, uncited = None, None, [], 0.0
        if self.summed:  # the retrieved documents' decoded rows, K per document
            found = self._find(question, query, retrieve, since, until, source)
            versions = sorted({d.codebook_version for d in found})
            memory, docs, aggregation_name = self._summed_memory(found), len(found), "per-document"
        else:
            if retrieve > 0:
                found = self._find(question, query, retrieve, since, until, source)
                memory, docs, versions, rows = self._memory_of(*retrieved_codes(found), aggregation)
            else:
                memory, docs, versions, rows = self._slice_memory(since, until, source, aggregation)
            aggregation_name = aggregation
        if memory is None:
            refusal = self._nothing_in(since, until, source)
        else:
            text = answer_questions(self.model, self.texts, [question], memory, self.decode, 1, self.device)[
                0
            ]
            if self.summed:  # each document's mass: the sum over its K rows
                mass = self.model.aggregator.attention_mass(x, memory)[0].view(len(found), -1).sum(1)  # (N,)
                cited = cite(found, mass.tolist())
            else:
                counted = memory  # the counts memory; for naive its equal counts form
                if aggregation != "counts":
                    counted = memory_from_counts(rows, self._codebook_tensors(set(versions)), self.device)
                mass = self.model.aggregator.attention_mass(x, counted)[
                    0
                ]  # (R,) = the naive path's, per code
                if retrieve == 0:
                    found = self._find(question, query, self.cite, since, until, source)
                cited = citations(found, rows, mass)
                uncited = 0.0 if retrieve else round(max(0.0, 1.0 - sum(c.attention_mass for c in cited)), 6)
            sync(self.device)
        return Answer(
            question=question,
            answer=text,
            documents=docs,
            memory_rows=0 if memory is None else memory.num_rows,
            codebook_versions=versions,
            aggregation=aggregation_name,
            latency_ms=(time.perf_counter() - t0) * 1000,
            since=since.isoformat() if since else None,
            until=until.isoformat() if until else None,
            source=source,
            refusal=refusal,
            retrieve=retrieve,
            citations=cited,
            uncited_mass=uncited,
            learned_keys=self.key_head is not None,
            retriever=self.retriever,
        )

    def _summed_memory(self, found: Sequence[RetrievedDocument]) -> Memory | None:
        """Memory (N·K, D), document-major, of retrieved documents with summed codes: each one's K rows
        decoded from its codes against its own codebook version; None when nothing was found."""
        if not found:
            return None
        codes, doc_versions = retrieved_codes(found)  # (N, K·G), (N,)
        parts, order = [], []
        for v in sorted({int(v) for v in doc_versions}):
            at = np.flatnonzero(doc_versions == v)
            decoded = self.model.codebook.document_rows(
                torch.from_numpy(codes[at]), self._stored(v)
            )  # (n, K, D)
            parts.append(decoded.float())
            order.extend(at.tolist())
        rows = torch.cat(parts)[torch.from_numpy(np.argsort(order))]  # (N, K, D), in found's order
        return Memory(rows.reshape(-1, rows.shape[-1]).to(self.device))

    def _nothing_in(self, since: datetime | None, until: datetime | None, source: str | None) -> str:
        """Why an empty slice has no answer: an empty store, or a slice that matches nothing."""
        bounds = [
            f"source {source!r}" if source is not None else "",
            f"since {since.isoformat()}" if since else "",
            f"until {until.isoformat()}" if until else "",
        ]
        if not any(bounds) or not self.store.counts():
            return "the memory store holds no documents yet: nothing to answer from"
        return f"no stored document is in this slice ({', '.join(b for b in bounds if b)}): nothing to answer from"
