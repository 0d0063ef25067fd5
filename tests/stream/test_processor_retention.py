"""Per-slot outputs are bounded by slots, not by the wall-clock TTL: shares go once assembled, outputs beyond
`retain` slots are deleted; the retain setting is validated against the dashboard's history."""

from __future__ import annotations

import pytest

from stream.keys import Keys
from stream.publication import Ledger
from stream.settings import SettingsError, WorkerSettings
from tests.stream.test_redis_store import msg, ping, processor




async def count(r, pattern: str) -> int:
    return len([k async for k in r.scan_iter(match=pattern, count=1000)])


@pytest.mark.parametrize("n_partitions", [1, 2])
async def test_after_many_slots_only_the_last_retain_remain(aredis, n_partitions):
    retain, n = 5, 40
    k = Keys()

    async def on_assembled(made):  # what Outputs writes per slot: forecasts (hash + packed) and an error field
        for city, slot in made:
            for h in range(1, 5):
                await aredis.hset(k.forecast_ahead(city, slot, h), "1", "{}")
            await aredis.set(k.forecast_packed(city, slot), b"v\n")
            await aredis.hset(k.errors(city), str(slot), "{}")

    from stream.windows.redis_store import RedisWindowStore

    p = processor(RedisWindowStore(aredis), n_partitions=n_partitions)
    p.ledger, p._recovered, p.on_assembled = Ledger(aredis, k, retain=retain), False, on_assembled
    for s in range(n):
        for part in range(n_partitions):
            await p.process(part, [msg(ping(part * 100 + u, s, 1 + (u + s) % 5, 2)) for u in range(3)])
    last = n - 2  # the last message's slot is still open
    assert await aredis.get(k.assembled("A")) == str(last).encode()
    want = {str(s).encode() for s in range(last - retain + 1, last + 1)}
    prefix, esc = k.city("A").encode(), k.city("A").replace("{", "[{]").replace("}", "[}]")
    for pattern in ("flow:*", "flowj:*", "fc:*[0-9]", "fcn:*", "fc:*:h4"):
        got = {key[len(prefix):].split(b":")[1] async for key in aredis.scan_iter(match=esc + pattern)}
        assert got == want, pattern
    assert set(await aredis.hkeys(k.errors("A"))) == want
    assert await count(aredis, k.partial("A", 0, 0).replace("{", "[{]").replace("}", "[}]").split("flowp:")[0] + "flowp:*") == 0  # shares are deleted once assembled
    assert await aredis.zcard(k.unpublished("A")) == 0
    assert await aredis.zcard(k.kept("A")) == retain


def test_retain_slots_below_the_dashboard_history_is_a_clear_error():
    with pytest.raises(SettingsError, match=r"retain_slots \(MOBSTREAM_RETAIN_SLOTS\) = 47 must be >= 48"):
        WorkerSettings(bootstrap="b", redis_url="redis://x", retain_slots=47)
    assert WorkerSettings(bootstrap="b", redis_url="redis://x").retain_slots == 96
