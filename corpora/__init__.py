"""Dataset files: the one place SQuAD, StreamingQA, ArchivalQA, Reuters and generic JSONL/CSV
files are parsed, for the replay producer (:mod:`corpora.documents`), training and evaluation
(:mod:`corpora.qa`) and amortizer pretraining (:mod:`corpora.texts`). Every format, and what
``jsonl`` means in each use, is in :mod:`corpora.formats`; every problem is a
:class:`~corpora.errors.DatasetError` naming the file and the line.

Imports only :mod:`infra`, so that ``pipeline`` and ``learner`` both can.
"""
