"""Producers (news feeds, dataset replays) and the faust stage that cleans the document stream."""
