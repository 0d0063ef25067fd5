"""Output delivery across a stop: a slot recorded as published has every forecast and embedding record on its
topic (the producer is flushed first), even after kill -9; a SIGTERM right after a slot closes loses nothing."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import orjson
import pytest
import redis

from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S
from stream.keys import Keys
from tests.integration.test_worker_deadletters import produce
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.tiny_models import encoder_checkpoint, flow_checkpoint

pytestmark = pytest.mark.integration

USERS, SLOTS = 300, 8  # slots 0..SLOTS-1 close (the watermark closes the last)


def messages() -> list:
    def cell(u, s):
        return 1 + (u * 7 + s * 3) % 60, 1 + (u * 3 + s) % 40
    out = [(orjson.dumps([{"uid": u, "ts": O + s * S + 5, "x": cell(u, s)[0], "y": cell(u, s)[1]} for u in range(USERS)]), 0)
           for s in range(SLOTS)]
    return out + [(orjson.dumps({"watermark": O + SLOTS * S}), 0)]


def prepare(broker, make_topic, tmp_path) -> tuple[str, str, list[str]]:
    """A topic holding SLOTS slots of pings, tiny checkpoints; (topic, app, worker flags)."""
    topic = make_topic(partitions=1)
    asyncio.run(produce(broker.bootstrap, topic, messages()))
    flow_checkpoint(tmp_path / "flow.pt")
    encoder_checkpoint(tmp_path / "enc.pt")
    extra = ["--forecaster", str(tmp_path / "flow.pt"), "--embedder", str(tmp_path / "enc.pt"), "--batch-size", "1"]
    return topic, f"t{uuid.uuid4().hex[:8]}", extra


@pytest.fixture
def setup(broker, make_topic, tmp_path):
    return prepare(broker, make_topic, tmp_path)


def start(broker, redis_url, topic, app, extra, log) -> WorkerProc:
    return WorkerProc(broker.bootstrap, redis_url, topic, app, 1, log, extra)


def wait_for(pred, proc: WorkerProc, timeout: float = 90.0, step: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline or proc.proc.poll() is not None:
            raise AssertionError(f"condition not reached (worker rc={proc.proc.poll()}):\n{proc.tail()}")
        time.sleep(step)


def on_the_topic_now(bootstrap: str, topic: str, idle: float = 3.0) -> list[tuple[str, dict]]:
    """Every (key, value) the topic holds now, from offset 0 until nothing more comes for `idle` s, read by a
    plain confluent-kafka consumer on assigned partitions (no group join). Not up to the high watermark:
    the embedded broker reports it per record batch, not per record."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out, quiet_since = [], time.monotonic()
        while time.monotonic() - quiet_since < idle:
            for msg in c.consume(1000, timeout=0.2):
                if msg.error() is None:
                    out.append((msg.key().decode(), orjson.loads(msg.value())))
                    quiet_since = time.monotonic()
        return out
    finally:
        c.close()


def on_topics(bootstrap: str, topic: str, r, app: str, slots: list[int]) -> tuple[dict, dict]:
    """Per slot: (forecast keys on the topic, forecast cells in Redis) and (embedded uids on the topic, users)."""
    k = Keys(app)
    want_fc = {s: {f"A:{c.decode()}" for c in r.hkeys(k.forecast("A", s))} for s in slots}
    want_emb = {s: {str(u) for u in range(USERS)} for s in slots}

    fcs, embs = on_the_topic_now(bootstrap, f"{topic}-fc"), on_the_topic_now(bootstrap, f"{topic}-emb")
    fc = {s: {key for key, v in fcs if v["made_at"] == s} for s in slots}
    emb = {s: {key for key, v in embs if v["slot"] == s} for s in slots}
    return (fc, want_fc), (emb, want_emb)


def kill_9_when_published(broker, redis_url, r, setup, tmp_path, slot: int = 3) -> dict:
    """kill -9 the worker the instant `slot` is recorded as published; every published slot's forecasts and
    embeddings must already be on the topics."""
    topic, app, extra = setup
    k = Keys(app)
    w = start(broker, redis_url, topic, app, extra, tmp_path / f"w-{app}.log")
    try:
        wait_for(lambda: r.zscore(k.kept("A"), slot) is not None, w)  # no chance to deliver anything after
    finally:
        w.stop(signal.SIGKILL)
    published = sorted(int(s) for s in r.zrange(k.kept("A"), 0, -1))
    assert slot in published
    (fc, want_fc), (emb, want_emb) = on_topics(broker.bootstrap, topic, r, app, published)
    assert all(want_fc[s] for s in published)
    assert fc == want_fc and emb == want_emb
    return {"published": published, "forecasts": sum(map(len, fc.values())), "embeddings": sum(map(len, emb.values()))}


def test_kill_9_after_a_slot_is_published_loses_none_of_its_records(broker, redis_url, redis_client, setup, tmp_path):
    kill_9_when_published(broker, redis_url, redis_client, setup, tmp_path)


def test_sigterm_right_after_a_slot_closes_loses_nothing(broker, redis_url, redis_client, setup, tmp_path):
    topic, app, extra = setup
    k = Keys(app)
    last = SLOTS - 1
    w = start(broker, redis_url, topic, app, extra, tmp_path / "w.log")
    try:
        wait_for(lambda: int(redis_client.get(k.assembled("A")) or -1) >= last, w)  # the last slot just assembled
        t0 = time.monotonic()
        w.stop(signal.SIGTERM)
        stop_s = time.monotonic() - t0
    finally:
        w.stop(signal.SIGKILL)
    log = w.tail(200_000)
    assert w.proc.returncode in (0, -15) and "Traceback" not in log and stop_s < 10, log[-3000:]
    published = {int(s) for s in redis_client.zrange(k.kept("A"), 0, -1)}
    pending = {int(s) for s in redis_client.zrange(k.unpublished("A"), 0, -1)}
    assert published | pending == set(range(SLOTS)) and not published & pending, (published, pending)
    if pending:  # the stop came mid-publication: the next worker publishes the rest (never skipped)
        w = start(broker, redis_url, topic, app, extra, tmp_path / "w2.log")
        try:
            wait_for(lambda: redis_client.zcard(k.unpublished("A")) == 0, w, step=0.05)
        finally:
            w.stop()
    (fc, want_fc), (emb, want_emb) = on_topics(broker.bootstrap, topic, redis_client, app, list(range(SLOTS)))
    assert all(want_fc[s] for s in range(SLOTS))
    assert fc == want_fc and emb == want_emb
