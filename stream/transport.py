"""Transport of the slot outputs and slot work: the librdkafka producer (queue, flush)."""

from __future__ import annotations

import asyncio
import logging


log = logging.getLogger(__name__)


def make_producer(bootstrap: str, security=None):
    """A librdkafka producer for the outputs: tens of thousands of records per slot cost ~1 us each to
    queue (a Faust `topic.send` per record cost far more), batched and sent by librdkafka's own thread.
    `security` (stream.security.KafkaSecurity) adds the same SASL/SSL settings the Faust app uses."""
    from confluent_kafka import Producer

    from stream.security import librdkafka_config

    def report(err, msg):
        if err is not None:
            log.error("output record to %s not delivered: %s", msg.topic(), err)

    config = {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
              "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 1 << 20,
              "enable.idempotence": False, "on_delivery": report,
              # Reports for failed records only: a Python callback per delivered record cost ~1 us each
              # (40,000 a slot) in poll/flush; flush still waits for every record's acknowledgement.
              "delivery.report.only.error": True}
    if security is not None:
        config.update(librdkafka_config(security))
    return Producer(config)


async def flush(producer, what: str, wait: float = 5.0) -> None:
    """Wait until every queued record is delivered: the hooks return (and the input offsets behind them can
    be committed, the slot recorded as published) only then. While the broker is unreachable it keeps
    waiting and says so, so the consumer stops instead of committing records that may never arrive."""
    loop = asyncio.get_running_loop()
    # In a thread: librdkafka's flush blocks, and the event loop must keep the consumer's heartbeats going.
    while (left := await loop.run_in_executor(None, producer.flush, wait)) > 0:
        log.warning("%s: %d output records not yet delivered after %.0f s; waiting", what, left, wait)


def produce_all(producer, topic: str, records) -> None:
    """Queue (key, value) records; when the local queue is full, serve it and go on (never drop)."""
    produce = producer.produce
    for key, value in records:
        try:
            produce(topic, value, key)
        except BufferError:
            producer.poll(0.05)
            produce(topic, value, key)
    producer.poll(0)
