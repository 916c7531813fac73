"""Dataset and archive replays into the raw topic (`mbc produce replay`)."""
