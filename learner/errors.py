"""Errors the learner reports to the user as one line (see :mod:`infra.errors`); a dataset file's
problems are :class:`corpora.errors.DatasetError`."""

from __future__ import annotations

from infra.errors import MbcError


class LearnerError(MbcError):
    """Base class of the learner's user-facing errors."""


class ConfigValueError(LearnerError):
    """A model or training setting is invalid or inconsistent."""


class UnknownModelFamily(ConfigValueError):
    """A base-LM family (``LMSpec.arch``) that :mod:`learner.model.families` has no row for."""


class CheckpointError(LearnerError):
    """A checkpoint is missing, incomplete, or does not fit the requested use."""


class ModelLoadError(LearnerError):
    """A model or tokenizer could not be loaded (offline, missing local files, missing extra)."""


class BlankQuestion(LearnerError):
    """A question with nothing to answer: empty, or only spaces (`mbc ask` exit 2, POST /ask 422)."""


class RetrievalRequired(LearnerError):
    """A checkpoint that answers only from retrieved documents was asked about a whole slice
    (summed codes: `mbc ask --retrieve K`, POST /ask ``"retrieve"``; exit 2, 422)."""
