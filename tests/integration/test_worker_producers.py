"""What real producers send, through a real worker: confluent-kafka producing gzip-, lz4- and zstd-compressed
batches of single-ping messages keyed by a device id, half of them without "ts" (--ts-from-kafka)."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from models.slots import DEFAULT_ORIGIN, slot_from_dt
from tests.integration.test_worker_flows import offline_flows, redis_flows
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.tiny_city import write_city

pytestmark = pytest.mark.integration
CODECS = ("gzip", "lz4", "zstd")
LATENESS = 2 * 86_400  # three producers interleave on each partition: close only at the final watermark


def produce(bootstrap: str, topic: str, df, partitions: int) -> int:
    """Every ping of df as one message, the users split over one producer per codec; returns messages sent."""
    from confluent_kafka import Producer

    producers = [Producer({"bootstrap.servers": bootstrap, "compression.type": c, "linger.ms": 20}) for c in CODECS]
    sent = 0
    for row in df.itertuples():
        ts = DEFAULT_ORIGIN + int(slot_from_dt(row.d, row.t)) * 1800 + 7
        ping = {"uid": int(row.uid), "x": int(row.x), "y": int(row.y)}
        if row.Index % 2:
            ping["ts"] = ts
        # Keyed by the device, not the uid: one device per user, so each user's pings share a partition.
        producers[row.uid % len(CODECS)].produce(topic, orjson.dumps(ping), key=f"device-{row.uid:04d}".encode(),
                                                 timestamp=ts * 1000)
        sent += 1
    for pr in producers:
        assert pr.flush(30) == 0
    end = DEFAULT_ORIGIN + int(slot_from_dt(df.d.max(), 47) + 1) * 1800 + LATENESS  # after every ping: closes all
    for p in range(partitions):
        producers[0].produce(topic, orjson.dumps({"watermark": end}), partition=p)
    assert producers[0].flush(30) == 0
    return sent


def test_compressed_device_keyed_pings_without_ts_match_offline_flows(broker, redis_url, redis_client, make_topic,
                                                                      tmp_path):
    from aiokafka import codec

    assert codec.has_lz4() and codec.has_zstd(), "aiokafka's codecs need cramjam (a dependency in pyproject.toml)"
    topic = make_topic(partitions=3)
    df = write_city(tmp_path / "cityA.csv", n_users=60, days=1)
    df = df[df.x != 999].sort_values(["d", "t", "uid"]).reset_index(drop=True)
    produce(broker.bootstrap, topic, df, 3)
    app = f"t{uuid.uuid4().hex[:8]}"
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 3, tmp_path / "worker.log",
                   ["--ts-from-kafka", "--lateness", str(LATENESS), "--max-future", "0"])
    try:
        last = int(slot_from_dt(df.d.max(), 47))
        wait_assembled(redis_url, app, last, w)
        got = redis_flows(redis_url, app, "A", range(last + 1))
        accepted = f'mobstream_pings_total{{outcome="accepted"}} {float(len(df))}'
        deadline = time.monotonic() + 20  # pings forwarded to their owner partition may be counted a bit later
        while accepted not in (text := w.metrics()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        w.stop()
    assert got == offline_flows(df)
    assert accepted in text, [line for line in text.splitlines() if line.startswith("mobstream_pings_total")]
    assert 'mobstream_pings_total{outcome="dead"} 0.0' in text, w.tail()
