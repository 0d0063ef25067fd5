"""Repartitioning: pings that arrive on a partition that does not own their user go to the owner, in batches,
through an internal topic with the same partition count (the Kafka Streams / Faust `group_by` idea).

The source partition judges a ping's lateness against its own watermark, forwards the accepted pings it
does not own (one columnar message per owner and city), then a marker with its max event time to every
other partition; the owner closes a slot only once every source's marker has passed it
(stream.windows.watermark.frontier). Forwards are delivered before the source commits its offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import orjson

from models.grid import cell_xy
from stream.ownership import Owners

log = logging.getLogger(__name__)

# (partition, key, value) records; returns once they are delivered.
Forward = Callable[[list[tuple[int, bytes, bytes]]], Awaitable[None]]
MARK = b'{"repartition_watermark":'


@dataclass
class Repartition:
    """What a Processor needs to repartition: the owner rule and a way to deliver forwarded records."""

    owners: Owners
    forward: Forward


def encode_marker(source: int, max_ts: float) -> bytes:
    return orjson.dumps({"repartition_watermark": max_ts, "from": source})


def split_markers(messages: list) -> tuple[dict[int, float], list]:
    """A repartition batch -> (source partition -> the highest max event time it marked, the other messages)."""
    marks: dict[int, float] = {}
    rest = []
    for msg in messages:
        value = msg[1]
        if value[:len(MARK)] == MARK:
            doc = orjson.loads(value)
            q, t = int(doc["from"]), float(doc["repartition_watermark"])
            marks[q] = max(t, marks.get(q, t))
        else:
            rest.append(msg)
    return marks, rest


def forwarded(part: int, owner: np.ndarray, city: list[str], uid: list[str], ts: np.ndarray,
              cell: np.ndarray) -> list[tuple[int, bytes, bytes]]:
    """Records for the pings partition `part` does not own: one columnar message per (owner, city), keyed by
    its first uid, in the pings' order (the owner reduces them by event time anyway)."""
    out = []
    away = np.flatnonzero(owner != part)
    if not len(away):
        return out
    xs, ys = cell_xy(cell[away])
    groups: dict[tuple[int, str], list[int]] = {}
    for j, i in enumerate(away.tolist()):
        groups.setdefault((int(owner[i]), city[i]), []).append(j)
    for (p, c), js in groups.items():
        rows = [int(away[j]) for j in js]
        doc = {"cols": {"uid": [uid[i] for i in rows], "ts": ts[rows].tolist(),
                        "x": xs[js].tolist(), "y": ys[js].tolist()}, "city": c}
        out.append((p, uid[rows[0]].encode(), orjson.dumps(doc)))
    return out


class KafkaForward:
    """Delivers forwarded records to the repartition topic (explicit partitions) with a librdkafka producer.

    Markers must not overtake the pings they vouch for, and librdkafka may reorder a partition's records
    when it retries (no idempotence here), so the pings go first and only once every one of them is
    acknowledged do the markers follow; a record the broker refused is produced again, never dropped."""

    def __init__(self, producer, topic: str) -> None:
        self.producer, self.topic = producer, topic

    async def __call__(self, records: list[tuple[int, bytes, bytes]]) -> None:
        pings = [r for r in records if r[2][:len(MARK)] != MARK]
        marks = [r for r in records if r[2][:len(MARK)] == MARK]
        for part in (pings, marks):
            while part:
                part = await self._send(part)

    async def _send(self, records: list) -> list:
        """Produce and flush; returns the records that were not delivered (to send again)."""
        from stream.outputs import flush

        failed: list = []
        loop = asyncio.get_running_loop()
        for rec in records:
            p, key, value = rec

            def report(err, msg, rec=rec):
                if err is not None:
                    failed.append(rec)

            while True:
                try:
                    self.producer.produce(self.topic, value, key, partition=p, on_delivery=report)
                    break
                except BufferError:
                    await loop.run_in_executor(None, self.producer.poll, 0.05)
        await flush(self.producer, f"{len(records)} repartitioned records")
        if failed:
            log.warning("%d repartitioned records not delivered; sending them again", len(failed))
            await asyncio.sleep(0.5)
        return failed
