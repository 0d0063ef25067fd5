"""Errors raised by the offline side."""

from mobstream.errors import MobstreamError


class TrainingError(MobstreamError):
    """Base class for errors in `training`."""


class DataFormatError(TrainingError):
    """A dataset file is malformed; the message names the file and line."""
