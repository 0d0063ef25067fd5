"""The worker's one rule for a Redis outage: retry with backoff, say so in the log and the gauge."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisDown, TimeoutError as RedisTimeout

from stream import metrics as m
from stream import redis_retry


async def test_retries_with_doubling_waits_until_redis_answers(monkeypatch, caplog):
    waits, seen = [], []
    fails = [RedisDown("refused"), RedisTimeout("slow"), RedisDown("refused")]

    async def sleep(s):
        waits.append(s)
        seen.append(m.REDIS_UP._value.get())

    async def call():
        if fails:
            raise fails.pop(0)
        return "done"

    monkeypatch.setattr(redis_retry.asyncio, "sleep", sleep)
    assert await redis_retry.until_redis_answers(call, "partition 3", "the batch") == "done"
    assert waits == [0.1, 0.2, 0.4] and seen == [0, 0, 0] and m.REDIS_UP._value.get() == 1
    assert "partition 3: Redis unavailable (refused); retrying the batch in 0.1 s" in caplog.text


async def test_other_errors_are_not_retried():
    async def call():
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await redis_retry.until_redis_answers(call, "x", "it")
