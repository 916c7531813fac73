"""The feed poller: RSS/Atom over HTTP into the raw topic (`mbc produce feeds`)."""
