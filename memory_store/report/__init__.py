"""``mbc report``: PNG plots and a one-page Markdown summary of any memory store.

| module | what lives there |
|---|---|
| ``data.py`` | reads the numbers from the SQL views (one snapshot) into typed rows |
| ``plots.py`` | the three figures (memory size, codebook health, ingest rate), Agg backend only |
| ``summary.py`` | ``report.md``: key numbers, the figures, per-version and per-source tables |
| ``build.py`` | ties them together: store in, files out |
| ``cli.py`` | the ``mbc report`` command |

The views (``memory_growth_hourly``/``_daily``, ``codebook_usage``, ``source_activity``) are the
only source of numbers besides codebook health extras, so the report shows exactly what an analyst
sees with SQL.
"""
