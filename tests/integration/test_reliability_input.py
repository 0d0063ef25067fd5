"""Valid-looking but hostile input at the Processor, on a real Redis: one ping far in the future must not
wedge its partition (close thousands of empty slots, then refuse every real ping as late)."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S
from stream.pings import Limits
from stream.processor import Processor
from stream.windows.redis_store import RedisWindowStore

pytestmark = pytest.mark.integration
YEAR = 365 * 86400


@pytest.fixture
async def aredis(redis_client, redis_url):
    r = aioredis.Redis.from_url(redis_url)
    yield r
    await r.aclose()


def ping(uid: int, ts: float) -> tuple[None, bytes]:
    return None, orjson.dumps({"uid": uid, "ts": ts, "x": 3, "y": 4})


async def test_one_far_future_ping_does_not_make_the_stream_late(aredis):
    # The wall clock is a parameter: "now" is a few slots after the stream's start.
    limits = Limits(now=lambda: O + 10 * S)
    p = Processor(RedisWindowStore(aredis), limits, lateness=0, n_partitions=1, origin=O)
    await p.process(0, [ping(1, O + 5)])
    bad = await p.process(0, [ping(2, O + YEAR)])  # a device with a broken clock
    assert bad.accepted == 0 and [d.reason for d in bad.dead] == ["bad_timestamp"]
    out = await p.process(0, [ping(3, O + S + 5)])
    assert out.accepted == 1 and out.late == 0
