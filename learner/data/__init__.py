"""Synthetic knowledge streams (`mbc synth`, :mod:`learner.data.synth`). Dataset files are read by
:mod:`corpora`."""
