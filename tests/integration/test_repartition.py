"""A user's pings on every partition (keyless, CRC32- and murmur2-partitioned producers mixed, confluent-kafka):
the worker repartitions them to their owners, and the flows equal the offline count, with 1 or 2 workers."""

from __future__ import annotations

import random
import uuid

import orjson
import pytest

from models.slots import DEFAULT_ORIGIN, SLOT_SECONDS, slot_from_dt
from tests.integration.test_worker_flows import offline_flows, redis_flows
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.tiny_city import write_city

pytestmark = pytest.mark.integration


def produce_mixed(bootstrap: str, topic: str, df, partitions: int, seed: int) -> None:
    """Every ping through one of three producers picked at random, in event-time order; then a watermark
    past the last slot to every partition (what `mobstream replay` sends, so the last slot closes)."""
    from confluent_kafka import Producer

    producers = [Producer({"bootstrap.servers": bootstrap, "partitioner": p}) for p in ("consistent_random", "murmur2_random")]
    plain = Producer({"bootstrap.servers": bootstrap})
    rng = random.Random(seed)
    df = df[df.x != 999]
    slots = slot_from_dt(df.d.to_numpy(), df.t.to_numpy())
    order = sorted(range(len(df)), key=lambda i: (slots[i], i))
    for j, i in enumerate(order):
        if j and slots[i] != slots[order[j - 1]]:  # a slot's pings all written before the next slot's:
            for pr in (*producers, plain):       # three producers' batches must not reorder event time
                pr.flush(30)
        r = df.iloc[i]
        value = orjson.dumps({"uid": int(r.uid), "ts": DEFAULT_ORIGIN + int(slots[i]) * SLOT_SECONDS + 5.0,
                              "x": int(r.x), "y": int(r.y)})
        pick = rng.randrange(3)
        if pick == 2:  # no key: the client spreads the records over the partitions
            plain.produce(topic, value, partition=rng.randrange(partitions))
        else:
            producers[pick].produce(topic, value, str(int(r.uid)).encode())
    end = orjson.dumps({"watermark": DEFAULT_ORIGIN + (int(slots.max()) + 1) * SLOT_SECONDS + 1.0})
    for p in range(partitions):
        plain.produce(topic, end, partition=p)
    for pr in (*producers, plain):
        assert pr.flush(30) == 0


def run_case(broker, redis_url, make_topic, tmp_path, workers: int) -> None:
    topic = make_topic(partitions=2)
    df = write_city(tmp_path / "c.csv", n_users=60, days=1, seed=9)
    produce_mixed(broker.bootstrap, topic, df, 2, seed=9)
    app = f"t{uuid.uuid4().hex[:8]}"
    last = int(slot_from_dt(df.d.max(), 47))
    ws = [WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / f"w{i}.log") for i in range(workers)]
    try:
        wait_assembled(redis_url, app, last, ws, timeout=150)
        text = "".join(w.metrics() for w in ws)
    finally:
        for w in ws:
            w.stop()
    forwarded = sum(float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith("mobstream_repartitioned_pings_total "))
    assert forwarded > 0.1 * len(df)  # pings that arrived away from their owner
    assert redis_flows(redis_url, app, "A", range(last + 1)) == offline_flows(df[df.x != 999])


def test_mixed_producers_one_worker(broker, redis_url, redis_client, make_topic, tmp_path):
    run_case(broker, redis_url, make_topic, tmp_path, workers=1)


@pytest.mark.slow
def test_mixed_producers_two_workers(broker, redis_url, redis_client, make_topic, tmp_path):
    run_case(broker, redis_url, make_topic, tmp_path, workers=2)
