"""Runtime helpers shared by every service: settings, logging, errors, Kafka clients and the
embedded broker. A leaf: it imports nothing from the other packages (the ``mbc`` command line that
puts them together lives in ``mbc/``)."""
