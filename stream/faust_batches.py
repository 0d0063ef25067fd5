"""Faust delivers a topic to its agent as per-partition batches of raw records: one Event and one ack per batch.

Faust's per-record path (a Message, a task pair in `wait_first`, conductor, Event, sensors and an ack
for every record) cost ~250 us of worker CPU per single-ping message. `BatchConsumer` takes the
records of a batch topic out of each fetch before Faust turns them into messages, and puts one
`Batch` (a ConsumerMessage for the fetch's records of one partition, offset = its last record's)
into the agent's topic queue as one Event. Everything else stays Faust's: group membership,
rebalancing (flow control suspends delivery; revoked queues are cleared; `wait_empty` waits for the
batch in hand), stale-generation skipping, and commits: acking a Batch marks all its offsets acked
in Faust's own bookkeeping, so `Consumer.commit` commits them exactly as it would per-record acks.
The agent handles a batch, sets `handled`, and Faust acks it when the agent asks for the next one;
an ack without `handled` (the agent raised: Faust acks its events all the same) or of a batch fetched
in an earlier consumer generation commits nothing, so a batch's offsets commit only once it is processed.

This leans on faust-streaming internals (pinned in pyproject.toml); `RELIES_ON` lists them and
tests/stream/test_faust_batches.py fails when an upgrade changes any of them.
"""

from __future__ import annotations

from faust.events import Event
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types.tuples import ConsumerMessage, ack_lock
from mode.utils.futures import notify

FAUST_VERSION = "0.15.3"
# The Faust/mode code whose behaviour this module depends on (checked by source hash in the tests).
RELIES_ON = (
    "faust.transport.consumer:Consumer._wait_next_records",  # we wrap it; getmany iterates what it returns
    "faust.transport.consumer:Consumer.getmany",
    "faust.transport.consumer:Consumer.ack",  # the bookkeeping `_ack_batch` does for a range of offsets
    "faust.transport.consumer:Consumer._new_offset",  # commits read `_acked` / `_acked_index`
    "faust.transport.consumer:Consumer.wait_empty",  # waits on `_unacked_messages`
    "faust.transport.conductor:Conductor._update_tp_index",  # `_tp_index[tp]`: the channels of a partition
    "faust.transport.conductor:ConductorCompiler.build",  # what delivering one message involves
    "faust.streams:Stream._c_aiter",  # tracks, skips stale generations, acks after the agent's body
    "faust.types.tuples:Message.ack",
    "faust.types.tuples:ConsumerMessage.on_final_ack",
)


class Batch(ConsumerMessage):
    """Records of one partition from one fetch, delivered and acked as one message.

    `offset` is the last record's; acking commits every offset from `first` to it (`first` also covers
    offsets the fetch skipped, such as transaction markers, so they never hold a commit back)."""

    __slots__ = ("first", "records", "handled")

    def __init__(self, tp, records: list, first: int, generation_id: int) -> None:
        last = records[-1]
        super().__init__(tp.topic, tp.partition, last.offset, last.timestamp / 1000.0, last.timestamp_type, None,
                         None, None, None, 0, 0, tp, generation_id=generation_id)
        self.first = first
        self.records = records
        self.handled = False  # set by the agent once the batch is processed: only then do its offsets commit

    def messages(self) -> list[tuple[bytes | None, bytes | None, int]]:
        """(key, value, Kafka timestamp in ms) of every record, in offset order."""
        return [(r.key, r.value, r.timestamp) for r in self.records]

    def __repr__(self) -> str:
        return f"<Batch: {self.tp} offsets {self.first}-{self.offset} ({len(self.records)} records)>"


class BatchConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer, delivering the topics in `batch_topics` batch by batch (see the module doc)."""

    batch_topics: frozenset[str] = frozenset()
    max_batch: int = 2000
    _stuck: dict | None = None  # tp -> consumer generation in which a batch of it was acked unprocessed

    async def _wait_next_records(self, timeout: float):
        records, active = await super()._wait_next_records(timeout)
        if records:
            for tp in [tp for tp in records if tp.topic in self.batch_topics]:
                await self._deliver(tp, records.pop(tp), active)
        return records, active

    async def _deliver(self, tp, records: list, active) -> None:
        # Records Faust's getmany would drop (flow stopped for a rebalance, partition paused) are dropped
        # here too: the consumer seeks back to the committed offsets before fetching again.
        if not records or not self.flow_active or not (
                active is None or tp in active or tp in self._buffered_partitions):
            return
        app = self.app
        await app.flow_control.acquire()
        await app.producer.buffer.wait_until_ebb()
        channels = app.topics._tp_index.get(tp)
        if not channels:
            return
        generation = app.consumer_generation_id
        read = self._read_offset[tp]
        first = read + 1 if read is not None and read < records[0].offset else records[0].offset
        app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        for i in range(0, len(records), self.max_batch):
            chunk = records[i:i + self.max_batch]
            batch = Batch(tp, chunk, first if i == 0 else chunk[0].offset, generation)
            batch.incref(len(channels))
            for channel in list(channels):
                await channel.queue.put(Event(app, None, batch, None, batch))
            self._read_offset[tp] = batch.offset

    def ack(self, message) -> bool:
        if type(message) is not Batch:
            return super().ack(message)
        with ack_lock:
            if message.acked:
                return False
            message.acked = True
            self._unacked_messages.discard(message)
            try:
                return self._ack_batch(message)
            finally:
                notify(self._waiting_for_ack)

    def _ack_batch(self, batch: Batch) -> bool:
        """Mark offsets first..offset acked, as `Consumer.ack` does for one (none from a stale generation)."""
        if batch.generation_id != self.app.consumer_generation_id:
            return False
        tp = batch.tp
        stuck = self._stuck = self._stuck or {}
        if not batch.handled:  # nothing after it may commit either (Faust would commit past a gap it cannot see)
            stuck[tp] = batch.generation_id
            self.log.error("%r acked but not processed: %s commits no further offsets until a rebalance or "
                           "restart redelivers it", batch, tp)
            return False
        if stuck.get(tp) == batch.generation_id:
            return False
        if not self.app.topics.acks_enabled_for(batch.topic):
            return False
        committed = self._committed_offset[tp]
        start = batch.first if committed is None else max(batch.first, committed)
        index = self._acked_index[tp]
        new = sorted(set(range(start, batch.offset + 1)).difference(index))
        if not new:
            return False
        index.update(new)
        self._acked[tp].extend(new)
        self._n_acked += len(new)
        return True


def deliver_in_batches(app, topic, max_batch: int) -> None:
    """Make `app` (not started yet) deliver `topic` to its agent as `Batch` events of at most `max_batch` records."""
    names = frozenset(topic.topics)
    consumer = type("BatchConsumer", (BatchConsumer,), {"batch_topics": names, "max_batch": max_batch})
    app.transport.Consumer = consumer
