"""Bad input through a real worker: each bad ping in the DLQ with its reason and original bytes; good ones counted."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S
from stream.services import create_topic
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


def read_back(bootstrap: str, topic: str, n: int, timeout: float = 90.0) -> list:
    """Every record on `topic` (until n are read or the time is up), with a plain confluent-kafka consumer."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            got.extend(m for m in c.consume(100, timeout=0.5) if m.error() is None)
    finally:
        c.close()
    return got


def counted(w: WorkerProc) -> int:
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in w.metrics().splitlines()
                   if line.startswith("mobstream_dead_letters_total{")))


def test_dead_letters_of_every_size_are_delivered_and_counted(broker, redis_url, make_topic, tmp_path):
    """Values at and around the producer's limit (faust: 1,000,000), aiokafka's 1 MiB and --max-message-bytes,
    a huge key, invalid UTF-8: all on the DLQ, each fitting, the metric equal to what confluent-kafka reads."""
    topic = make_topic(partitions=1)
    max_bytes = 3_000_000
    junk = [999_000, 999_999, 1_000_000, 1_000_001, 1_048_576, 1_048_577, max_bytes - 1, max_bytes]
    over = [max_bytes + 1, 10_000_000]
    messages = [(b"{" * n, None) for n in junk] + [(b"[" * n, None) for n in over]
    messages += [(b"\xff\xfe\xc3\x28 not utf-8", None), (b"{" * 990_000, b"k" * 200_000)]
    messages += [(orjson.dumps({"uid": i, "ts": "NaN", "x": 3, "y": 4}), str(i).encode()) for i in range(40)]

    async def produce_big():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_request_size=32_000_000)
        await p.start()
        try:
            for value, key in messages:
                await p.send_and_wait(topic, value, key=key, partition=0)
        finally:
            await p.stop()
    asyncio.run(produce_big())
    create_topic(broker.bootstrap, f"{topic}-dlq", 1)  # so that the reader below finds it at once
    w = WorkerProc(broker.bootstrap, redis_url, topic, f"t{uuid.uuid4().hex[:8]}", 1, tmp_path / "worker.log",
                   ["--max-message-bytes", str(max_bytes)])
    try:
        got = read_back(broker.bootstrap, f"{topic}-dlq", len(messages))
        deadline = time.monotonic() + 20
        while counted(w) < len(got) and time.monotonic() < deadline:
            time.sleep(0.2)
        n_counted = counted(w)
    finally:
        w.stop()
    assert len(got) == n_counted == len(messages), w.tail()
    log = w.log.read_text(errors="replace")
    assert "Traceback" not in log and "ProducerSendError" not in log and "crashed" not in log, w.tail()
    by_size = {}
    for msg in got:
        h = dict(msg.headers())
        assert len(msg.value()) + len(msg.key() or b"") + sum(len(v) for v in h.values()) < 1_000_000
        by_size.setdefault(h["reason"].decode(), []).append((len(msg.value()), "cut" in h))
    assert sorted(by_size["oversize"]) and all(cut for _, cut in by_size["oversize"])
    whole = sorted(n for n, cut in by_size["not_json"] if not cut)
    assert whole == [14, 999_000]  # the invalid UTF-8 bytes, and the one large value that fits with its headers
    assert len(by_size["not_json"]) == len(junk) + 2 and len(by_size["oversize"]) == len(over)
    raw = {m.value() for m in got}
    assert b"\xff\xfe\xc3\x28 not utf-8" in raw and b"{" * 999_000 in raw


SITECUSTOMIZE = '''
import os
from pathlib import Path

import stream.deadletter_send as ds

_flag = Path(os.environ["MOBSTREAM_TEST_DLQ_DOWN"])
_init = ds.DeadLetterSender.__init__


def _init_down_while_flagged(self, send, *args, **kwargs):
    async def send_or_fail(**record):
        if _flag.exists():
            raise ConnectionError("test: the dead-letter topic is down")
        return await send(**record)
    _init(self, send_or_fail, *args, **kwargs)


ds.DeadLetterSender.__init__ = _init_down_while_flagged
'''


def dlq_outage(tmp_path: Path, monkeypatch) -> Path:
    """Workers started from now on fail every DLQ send while the returned flag file exists."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    flag = tmp_path / "dlq-down"
    flag.touch()
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'site'}:{Path(__file__).resolve().parents[2]}")
    monkeypatch.setenv("MOBSTREAM_TEST_DLQ_DOWN", str(flag))
    return flag


def wait_for_retries(w: WorkerProc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while "dead letters not delivered" not in w.tail(20_000):
        assert w.proc.poll() is None and time.monotonic() < deadline, w.tail()
        time.sleep(0.3)


def committed(bootstrap: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def test_offsets_wait_while_the_dlq_is_down(broker, redis_url, make_topic, tmp_path, monkeypatch):
    """Fault injection (a sitecustomize in the worker only): while sends to the DLQ fail, the worker retries,
    stays up and commits nothing; once they pass, every dead letter is delivered, counted, and committed."""
    topic = make_topic(partitions=1)
    good = orjson.dumps({"uid": 1, "ts": O + 7, "x": 3, "y": 4})
    asyncio.run(produce(broker.bootstrap, topic, [(good, 0), (b"junk 1", 0), (good, 0), (b"junk 2", 0)]))
    create_topic(broker.bootstrap, f"{topic}-dlq", 1)
    flag = dlq_outage(tmp_path, monkeypatch)
    app = f"t{uuid.uuid4().hex[:8]}"
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 1, tmp_path / "worker.log")
    try:
        wait_for_retries(w)
        time.sleep(4)  # four commit intervals
        assert w.proc.poll() is None and "not delivered" in w.tail(20_000), w.tail()
        assert committed(broker.bootstrap, app, topic) < 0  # nothing committed
        assert counted(w) == 0
        flag.unlink()
        got = read_back(broker.bootstrap, f"{topic}-dlq", 2, timeout=60)
        deadline = time.monotonic() + 30
        while committed(broker.bootstrap, app, topic) != 4 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert committed(broker.bootstrap, app, topic) == 4 and counted(w) == 2
    finally:
        w.stop()
    assert sorted(m.value() for m in got) == [b"junk 1", b"junk 2"]
    assert "Traceback" not in w.log.read_text(errors="replace")


def test_a_stop_while_the_dlq_is_down_loses_nothing(broker, redis_url, make_topic, tmp_path, monkeypatch):
    """SIGTERM while dead letters cannot be delivered: the worker holds the stop (faust would acknowledge and
    commit the batch otherwise) and is SIGKILLed; nothing is committed, and the next worker delivers them."""
    topic = make_topic(partitions=1)
    asyncio.run(produce(broker.bootstrap, topic, [(b"junk 1", 0), (b"junk 2", 0)]))
    create_topic(broker.bootstrap, f"{topic}-dlq", 1)
    flag = dlq_outage(tmp_path, monkeypatch)
    app = f"t{uuid.uuid4().hex[:8]}"
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 1, tmp_path / "w1.log")
    try:
        wait_for_retries(w)
    finally:
        w.stop(timeout=4)  # SIGTERM, then SIGKILL
    assert "the stop waits for" in w.tail(20_000) and w.proc.returncode == -9, w.tail()
    assert committed(broker.bootstrap, app, topic) < 0
    flag.unlink()
    w2 = WorkerProc(broker.bootstrap, redis_url, topic, app, 1, tmp_path / "w2.log")
    try:
        got = read_back(broker.bootstrap, f"{topic}-dlq", 2, timeout=60)
    finally:
        w2.stop()
    assert sorted(m.value() for m in got) == [b"junk 1", b"junk 2"]
