"""Amortizer pretraining (`mbc pretrain-amortizer`): the self-supervised program that teaches the amortizer
to write its documents into memory before meta-training (objective, batches, the run, the command)."""
