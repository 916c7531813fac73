"""Errors of the pipeline package: user mistakes reported as one clear line (see infra.errors); a
replay file's problems are :class:`corpora.errors.DatasetError`."""

from __future__ import annotations

from infra.errors import MbcError


class PipelineError(MbcError):
    """Base class of the pipeline's user-facing errors."""


class FeedUrlError(PipelineError):
    """A feed URL given by the user is not an http(s) URL."""


class DeliveryError(PipelineError):
    """Some documents could not be delivered to Kafka (the producer gave up on them)."""

    exit_code = 1
