"""Bad input through a real worker: each bad ping in the DLQ with its reason and original bytes; good ones counted."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S
from tests.integration.worker_proc import WorkerProc, wait_assembled
from stream.keys import Keys

pytestmark = pytest.mark.integration


async def produce(bootstrap, topic, messages):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    try:
        for value, part in messages:
            await p.send_and_wait(topic, value, partition=part)
    finally:
        await p.stop()


async def consume(bootstrap, topic, n, timeout=30.0):
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await c.start()
    got = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < n:
                batch = await c.getmany(timeout_ms=500)
                for msgs in batch.values():
                    got.extend(msgs)
    except TimeoutError:
        pass
    finally:
        await c.stop()
    return got


def test_bad_pings_go_to_the_dlq_with_reasons(broker, redis_url, redis_client, make_topic, tmp_path):
    topic = make_topic(partitions=1)
    ping = lambda uid, slot, x=3, y=4: {"uid": uid, "ts": O + slot * S + 7, "x": x, "y": y}  # noqa: E731
    messages = [
        (orjson.dumps(ping(1, 0)), 0),
        (b"not json at all", 0),
        (orjson.dumps([ping(2, 0), ping(3, 0, 999, 999), {"uid": 4, "ts": O}, ping(5, 0, 7, 7)]), 0),
        (b'{"uid": 6, "ts": NaN, "x": 3, "y": 3}', 0),
        (orjson.dumps(ping(7, 0, 0, 3)), 0),
        (orjson.dumps(ping(8, 2)), 0),  # moves event time past slot 0 and 1
        (orjson.dumps(ping(9, 0)), 0),  # late
        (orjson.dumps({"watermark": O + 3 * S}), 0),
    ]
    asyncio.run(produce(broker.bootstrap, topic, messages))
    app = f"t{uuid.uuid4().hex[:8]}"
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 1, tmp_path / "worker.log")
    try:
        wait_assembled(redis_url, app, 2, w)
        dead = asyncio.run(consume(broker.bootstrap, f"{topic}-dlq", 6))
    finally:
        w.stop()
    reasons = sorted(dict(m.headers)["reason"].decode() for m in dead)
    assert reasons == sorted(["not_json", "masked", "missing_field", "nan", "out_of_grid", "late"])
    by_reason = {dict(m.headers)["reason"].decode(): m for m in dead}
    assert by_reason["not_json"].value == b"not json at all"
    assert orjson.loads(by_reason["late"].value)["uid"] == 9
    assert orjson.loads(by_reason["masked"].value)["uid"] == 3
    assert b"offset" not in dict(by_reason["late"].headers)["source"] and dict(by_reason["late"].headers)["source"].startswith(topic.encode())
    r = redis.Redis.from_url(redis_url)
    flows = {int(c): v.decode() for c, v in r.hgetall(Keys(app).flow("A", 0)).items()}
    r.close()
    assert flows == {(4 - 1) * 200 + 2: "2,0,0", (7 - 1) * 200 + 6: "1,0,0"}  # uids 1, 2 in (3,4); 5 in (7,7)
