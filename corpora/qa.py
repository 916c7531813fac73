"""Question-answering datasets in their official formats (:mod:`corpora.formats`), all read into
one :class:`~corpora.types.QADataset`, for `mbc train` and `mbc eval`."""

from __future__ import annotations

from pathlib import Path

from corpora.archivalqa import load_archivalqa_official, load_archivalqa_processed
from corpora.errors import DatasetError
from corpora.formats import QA_FORMATS, detect_qa_format
from corpora.squad import load_squad
from corpora.streamingqa import load_streamingqa_csv, load_streamingqa_jsonl
from corpora.types import QADataset


def load_dataset(path: Path, fmt: str = "auto", documents: Path | None = None) -> QADataset:
    """Load ``path`` in format ``fmt``; ``documents`` is the evidence/paragraph file where one is needed."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file does not exist")
    if fmt == "auto":
        fmt = detect_qa_format(path)
    if fmt in ("streamingqa-jsonl", "archivalqa") and documents is None:
        raise DatasetError(path, f"format {fmt} needs a documents file (--documents)")
    if fmt == "squad":
        return load_squad(path)
    if fmt == "streamingqa-jsonl":
        assert documents is not None
        return load_streamingqa_jsonl(path, documents)
    if fmt == "streamingqa-csv":
        return load_streamingqa_csv(path)
    if fmt == "archivalqa":
        assert documents is not None
        return load_archivalqa_official(path, documents)
    if fmt == "archivalqa-processed":
        return load_archivalqa_processed(path)
    raise DatasetError(path, f"unknown format {fmt!r}; known: {', '.join(QA_FORMATS)}")
