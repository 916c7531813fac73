"""Learned retrieval keys (issue 20): a document key from its stored codes, a query from the question,
trained contrastively on QA pairs (``mbc train-keys``) and kept beside the checkpoint."""
