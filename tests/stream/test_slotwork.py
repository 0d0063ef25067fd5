"""The slot-work topic's ends without a broker: ingest never imports torch, items land on the right partitions,
windows travel through Redis intact, the stale-work policy skips and counts, and the loop-lag monitor sees pauses."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import numpy as np
import pytest
import redis.asyncio as aioredis

from stream import metrics as m
from stream import records as rec
from stream.looplag import LoopLag
from stream.publication import WorkLedger
from stream.settings import SettingsError, WorkerSettings
from stream.slotwork import WorkRunner, WorkSender, work_partition

INGEST_ONLY = """
import sys
from stream.settings import WorkerSettings
from stream import worker
import mobstream.cli
s = WorkerSettings(bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:9", role="ingest", embedder="enc.pt",
                   forecaster="flow.pt")
app = worker.build_app(s)
worker.Runner(s, app, {"dlq": None})._build()
assert sorted(app.agents) == ["ingest"], sorted(app.agents)
print("torch" in sys.modules)
"""


def test_the_ingest_role_never_imports_torch():
    out = subprocess.run([sys.executable, "-c", INGEST_ONLY], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def test_settings_name_the_bad_role():
    with pytest.raises(SettingsError, match="setting role .* must be one of all, ingest, infer"):
        WorkerSettings(bootstrap="b:1", redis_url="redis://r", role="both")
    s = WorkerSettings(bootstrap="b:1", redis_url="redis://r", app="x", partitions=3)
    assert s.work_topic == "x-slot-work" and s.n_work_partitions == 3 and s.runs("ingest") and s.runs("infer")


def test_work_partitions_keep_a_partition_and_a_city_on_one_partition():
    assert [work_partition(rec.Work(rec.EMBED, "A", s, p, "k"), 4) for p in range(8) for s in (1, 2)] == \
        [p % 4 for p in range(8) for _ in (1, 2)]
    fc = {work_partition(rec.Work(rec.FORECAST, c, s, -1, "k"), 4) for c in ("A", "B") for s in range(50)}
    assert len(fc) <= 2 and all(0 <= p < 4 for p in fc)


def test_loop_lag_keeps_the_longest_pause_of_the_window():
    lag = LoopLag(window=10.0)
    assert lag.record(0.0, 0.3) == 0.3
    assert lag.record(1.0, 0.01) == 0.3
    assert lag.record(9.0, 0.2) == 0.3
    assert lag.record(10.5, 0.05) == 0.2  # the 0.3 s pause left the window
    assert lag.record(19.5, 0.0) == 0.05


async def test_loop_lag_sees_a_blocked_loop():
    lag = LoopLag(interval=0.005)
    task = asyncio.ensure_future(lag.run())
    await asyncio.sleep(0.02)
    time.sleep(0.15)  # the loop stalls, as a model call on it would
    await asyncio.sleep(0.02)
    task.cancel()
    assert 0.14 <= m.LOOP_LAG_MAX._value.get() < 1.0


class FakeProducer:
    def __init__(self):
        self.items = []

    def produce(self, topic, value, key, partition=None):
        self.items.append((topic, partition, key, value))

    def poll(self, timeout):
        return 0

    def flush(self, timeout=None):
        return 0


@pytest.fixture
async def aredis(redis_client, redis_url):
    r = aioredis.Redis.from_url(redis_url)
    yield r
    await r.aclose()


async def test_a_closed_slot_sends_its_windows_by_reference(aredis, redis_url):
    s = WorkerSettings(bootstrap="b:1", redis_url=redis_url, app="sw", partitions=2, embedder="enc.pt")
    producer = FakeProducer()
    sender = WorkSender(s, aredis, producer)
    cells = np.arange(24).reshape(3, 8) - 1
    await sender.on_closed(1, "A", 40, [5, "u6", 7], cells)
    await sender.on_assembled([("A", 40), ("B", 40)])
    (topic, part, key, value), *fc = producer.items
    w = rec.decode_work(value)
    assert (topic, part, key) == ("sw-slot-work", 1, b"A:1") and w == rec.Work(rec.EMBED, "A", 40, 1, s.keys.windows("A", 40, 1))
    uids, got = rec.unpack_windows(await aredis.get(w.key))
    assert uids == ["5", "u6", "7"] and got.tolist() == cells.tolist() and 0 < await aredis.ttl(w.key) <= s.ttl
    assert [(rec.decode_work(v).kind, rec.decode_work(v).city, k) for _, _, k, v in fc] == \
        [(rec.FORECAST, "A", b"A"), (rec.FORECAST, "B", b"B")]
    off = WorkSender(WorkerSettings(bootstrap="b:1", redis_url=redis_url, app="sw"), aredis, FakeProducer())
    await off.on_closed(0, "A", 41, [1], cells[:1])  # no embedder: no windows, no item
    assert not off.producer.items and not await aredis.exists(s.keys.windows("A", 41, 0))


class FakeInference:
    def __init__(self, redis):
        self.redis, self.ran = redis, []

    async def embed(self, w):
        self.ran.append((w.kind, w.slot))
        return 1

    async def forecast(self, city, slot):
        self.ran.append(("forecast", slot))


async def test_work_older_than_max_inference_lag_is_skipped_and_counted(aredis, redis_url):
    s = WorkerSettings(bootstrap="b:1", redis_url=redis_url, app="lagt", max_inference_lag=3)
    k = s.keys
    await aredis.set(k.assembled("A"), 20)
    await aredis.hset(k.closed("A"), 0, 20)
    await aredis.zadd(k.unpublished("A"), {15: 15, 18: 18})
    await aredis.set(k.windows("A", 15, 0), b"x")
    inf = FakeInference(aredis)
    runner = WorkRunner(s, inf, WorkLedger(aredis, k))
    skipped = m.WORK_SKIPPED.labels(rec.FORECAST)._value.get()
    for kind, slot in ((rec.FORECAST, 15), (rec.FORECAST, 18), (rec.EMBED, 15), (rec.EMBED, 17)):
        want = "skipped" if slot < 17 else "done"
        assert await runner.run(rec.encode_work(rec.Work(kind, "A", slot, 0, k.windows("A", slot, 0)))) == want
    assert inf.ran == [("forecast", 18), (rec.EMBED, 17)]
    assert m.WORK_SKIPPED.labels(rec.FORECAST)._value.get() == skipped + 1
    assert m.INFERENCE_LAG_SLOTS.labels(rec.EMBED)._value.get() == 3
    assert await aredis.zcard(k.unpublished("A")) == 0  # a skipped slot is not sent again
    assert not await aredis.exists(k.windows("A", 15, 0))
    assert await runner.run(b"{not json") == "bad"
