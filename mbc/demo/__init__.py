"""``mbc demo``: the main job end to end on this machine, with no external services.

What runs (every service is the real one, started the way an operator would start it):

- the embedded Kafka-protocol broker (librdkafka's mock cluster, :class:`infra.broker.BrokerProcess`);
- the faust stage, ``mbc pipeline run``, as a child process;
- the learner, ``mbc learn`` with the small checkpoint shipped in ``mbc/demo/assets/checkpoint``
  (``--codebook ema``, so codebook versions and their health appear), as a child process, writing
  to a SQLite memory store in the work folder;
- the producers: ``mbc produce feeds --once`` against ``feed.xml`` served over HTTP on 127.0.0.1 (a
  random port), ``mbc produce replay stream.jsonl``, and a few malformed raw events published as
  they are (a misbehaving producer);
- the reader, in this process: the store's SQL views, the codebook health, and
  :class:`learner.ask.answerer.Answerer` (the ``mbc ask`` path) answering questions about the
  knowledge documents with the memory and with none (the base LM alone).

One module per part: ``supervisor`` (child processes), ``feed_server`` (the feed on 127.0.0.1),
``publisher`` (the malformed raw events), ``watch`` (the stage's metrics, topic watermarks and
books), ``readout`` (the memory store's views and codebook health), ``scoring`` (questions with and
without memory), ``report`` (the text report), ``progress`` (stage lines on stderr), ``run`` (the
orchestration) and ``cli`` (the ``mbc demo`` command).

Progress goes to stderr, the report to stdout, the services' logs to ``<work>/logs``. Everything
started is stopped in ``finally`` (also on Ctrl-C, SIGTERM, a failure or the timeout); the work
folder is removed unless ``--keep DIR`` names where to keep it. The assets and how they were made
are described in ``mbc/demo/assets/README.md``.
"""
