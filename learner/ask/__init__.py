"""Answering questions from the stored memory: ``mbc ask`` and the ``/ask`` HTTP endpoint.

The memory for a question is a slice of the store (time window, source). With ``counts``
aggregation it is built from the store's exact counts per (codebook version, code) — O(distinct
codes), however many documents the slice holds (docs/DESIGN.md §3a); ``naive`` builds it from every
stored code of the slice, for comparison.
"""
