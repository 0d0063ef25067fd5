"""Delivery of dead letters to the DLQ topic: every record fitted to the producer's limit, retried until delivered.

The agent awaits `deliver` before it takes the next batch, so a batch's offsets are not committed while one
of its dead letters is not on the topic; a dead letter is counted in mobstream_dead_letters_total once the
broker has acknowledged it (counted = delivered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

from stream import metrics as m
from stream.deadletter import LIMIT_MIN, DeadLetter, fit

log = logging.getLogger(__name__)

Send = Callable[..., Awaitable[Awaitable]]  # faust Topic.send: awaited, it returns the delivery future


def _too_large(exc: BaseException | None) -> bool:
    """A size refusal, by the producer's own check or the broker's, possibly wrapped (faust ProducerSendError)."""
    while exc is not None:
        if isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError)):
            return True
        exc = exc.__cause__
    return False


class DeadLetterSender:
    """Sends dead letters with `send` (faust's Topic.send signature), each at most `limit` bytes.

    A producer or broker error never escapes: the failed records are sent again after a backoff (0.1 s
    doubling to `max_delay`), for as long as it takes; a record the broker refuses as too large is cut to
    half the size and sent again. A shutdown does not end the wait either (faust acknowledges a batch whose
    agent returns or is cancelled, and commits it on stop): while `stopping()` the sender says once that it
    holds the stop; a SIGKILL then loses nothing, as the batch is read again at the next start."""

    STEP = 0.5  # seconds between looks at `stopping` during a backoff

    def __init__(self, send: Send, limit: int, max_delay: float = 5.0, sleep=asyncio.sleep,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.send = send
        self.limit = limit
        self.max_delay = max_delay
        self.sleep = sleep
        self.stopping = stopping
        self._told = False

    async def deliver(self, letters: list[DeadLetter], source: str) -> None:
        pending = [(d, self.limit) for d in letters]
        delay = 0.1
        while pending:
            failed, error = [], None
            sent = []
            for d, limit in pending:
                try:
                    key, value, headers = fit(d, source, limit)
                    sent.append((d, limit, await self.send(key=key, value=value, headers=headers)))
                except Exception as exc:  # the producer's own checks, or no broker metadata
                    failed.append((d, self._next_limit(limit, exc)))
                    error = exc
            for d, limit, fut in sent:
                try:
                    await fut
                except Exception as exc:
                    failed.append((d, self._next_limit(limit, exc)))
                    error = exc
                else:
                    m.DEAD_LETTERS.labels(d.reason).inc()
            if failed:
                log.warning("%s: %d of %d dead letters not delivered (%r); retrying in %.1f s", source,
                            len(failed), len(pending), error, delay)
                await self._backoff(delay, source, len(failed))
                delay = min(2 * delay, self.max_delay)
            pending = failed

    async def _backoff(self, delay: float, source: str, n: int) -> None:
        while delay > 0:
            if not self._told and self.stopping():
                self._told = True
                log.warning("%s: the stop waits for %d undelivered dead letters (their batch is not acknowledged: "
                            "a SIGKILL loses nothing, the next start reads it again)", source, n)
            await self.sleep(min(delay, self.STEP))
            delay -= self.STEP

    @staticmethod
    def _next_limit(limit: int, exc: Exception) -> int:
        return max(LIMIT_MIN, limit // 2) if _too_large(exc) else limit
