"""Errors raised by the online side."""

from mobstream.errors import MobstreamError


class StreamError(MobstreamError):
    """Base class for errors in `stream`."""


class ServiceError(StreamError):
    """An embedded service (broker, redis-server) failed to start, answer or stop."""
