"""Errors raised by model and feature code."""

from mobstream.errors import MobstreamError


class ModelsError(MobstreamError):
    """Base class for errors in `models`."""


class GridError(ModelsError):
    """A location cannot be mapped to a grid cell (outside the grid, masked, not finite)."""


class CheckpointError(ModelsError):
    """A checkpoint file is missing, corrupt, or of the wrong kind."""
