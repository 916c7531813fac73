"""The ``mbc`` command: the composition root that puts the packages together.

``mbc/cli.py`` builds the command tree from each package's ``register(app)``, ``mbc/services.py``
lists every service's settings class and ``mbc/demo/`` runs the whole system locally (``mbc demo``).
Nothing below imports from here: ``infra`` is the leaf every package builds on, and ``pipeline``,
``memory_store`` and ``learner`` know nothing of this package.
"""
