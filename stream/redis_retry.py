"""Waiting out a Redis outage: the worker's one rule for a call that Redis could not answer."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

from stream import metrics as m

log = logging.getLogger(__name__)
T = TypeVar("T")


async def until_redis_answers(call: Callable[[], Awaitable[T]], where: str, what: str) -> T:
    """`await call()` until it gets through, waiting 0.1 s (doubling to 5 s) after each try that Redis refused or
    did not answer in time; `mobstream_redis_up` is 0 meanwhile and 1 once a try gets through. Callers' calls
    are idempotent, so a try that failed half-way is safe to repeat."""
    from redis.exceptions import ConnectionError as RedisDown, TimeoutError as RedisTimeout

    delay = 0.1
    while True:
        try:
            out = await call()
            m.REDIS_UP.set(1)
            return out
        except (RedisDown, RedisTimeout) as exc:
            m.REDIS_UP.set(0)
            log.warning("%s: Redis unavailable (%s); retrying %s in %.1f s", where, exc, what, delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 5.0)
