"""The faust stage docs.raw → docs.clean / docs.dlq (`mbc pipeline run`)."""
