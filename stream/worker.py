"""The Faust worker: a thin agent that takes per-partition batches of raw records and hands them to the Processor.

Per-event Python overhead is what limits a Faust agent, so the pings topic reaches the agent as one
event per partition and fetch (`stream.faust_batches`), not one per record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from pathlib import Path

from stream import metrics as m
from stream.settings import WorkerSettings

log = logging.getLogger(__name__)


class Runner:
    """The agent's state: the Redis store and Processor (built on the worker's event loop), the DLQ."""

    def __init__(self, settings: WorkerSettings, app, topics: dict) -> None:
        self.s = settings
        self.app = app
        self.dlq = topics["dlq"]
        self.topics = topics
        self.processor = None

    def _build(self) -> None:
        from stream.flows_out import FlowsPublisher
        from stream.ownership import Owners
        from stream.processor import Processor
        from stream.publication import WorkLedger
        from stream.repartition import KafkaForward, Repartition
        from stream.slotwork import WorkSender
        from stream.transport import make_producer
        from stream.windows.redis_store import RedisWindowStore

        client = redis_client(self.s)
        store = RedisWindowStore(client, self.s.keys, self.s.ttl)
        producer = make_producer(self.s.bootstrap, self.s.kafka_security)
        repartition = Repartition(Owners(self.s.partitions), KafkaForward(producer, self.s.repartition_topic))
        sender = WorkSender(self.s, client, producer)
        flows = FlowsPublisher(client, producer, self.s.keys, self.s.topics.flows)

        async def on_assembled(made) -> None:
            await flows.on_assembled(made)
            await sender.on_assembled(made)

        hooks = {"on_closed": sender.on_closed, "on_assembled": on_assembled, "full_windows": sender.full_windows}
        ledger = WorkLedger(client, self.s.keys, self.s.retain_slots, self.s.ttl)
        self.processor = Processor(store, self.s.limits, lateness=self.s.lateness, n_partitions=self.s.partitions,
                                   origin=self.s.origin, ledger=ledger, repartition=repartition, **hooks)

    async def handle(self, batches) -> None:
        """Process `stream.faust_batches.Batch`es; returns once every one is in Redis (then the agent acks them)."""
        if self.processor is None:
            self._build()
        by_part: dict[tuple[str, int], list] = defaultdict(list)
        for b in batches:
            by_part[b.topic, b.partition].append(b)
        # Partitions are independent (assembly across them is atomic in Redis), so their round trips overlap;
        # a partition's pings and what was forwarded to it take turns (the Processor locks per partition).
        await asyncio.gather(*(self._partition(part, bs, topic == self.s.repartition_topic)
                               for (topic, part), bs in by_part.items()))

    async def _partition(self, part: int, batches: list, forwarded: bool = False) -> None:
        msgs = batches[0].messages() if len(batches) == 1 else [r for b in batches for r in b.messages()]
        out = await self.processor.process(part, msgs, forwarded)
        last = batches[-1]
        if out.dead:  # returns once all are delivered: the batch's offsets wait for its dead letters
            from stream.deadletter_send import DeadLetterSender

            sender = DeadLetterSender(self.dlq.send, self.app.conf.producer_max_request_size,
                                      stopping=lambda: self.app.should_stop)
            await sender.deliver(out.dead, f"{last.topic}/{part}/{batches[0].first}-{last.offset}")
        for b in batches:
            b.handled = True  # in Redis, dead letters delivered: its offsets may commit
        if not forwarded:
            self._lag(last)

    def _lag(self, last) -> None:  # of the pings topic (the partition label alone names it)
        now = time.time()
        m.INGEST_LAG_SECONDS.observe(max(0.0, now - last.timestamp))  # seconds
        consumer_lag(self.app, last, m.CONSUMER_LAG)


def consumer_lag(app, last, gauge) -> None:
    """Set the partition's gauge to the messages behind its high watermark after `last`."""
    try:
        high = app.consumer.highwater(last.tp)
    except Exception:  # the consumer may be mid-rebalance; lag is best effort
        return
    if high is not None:
        gauge.labels(str(last.partition)).set(max(0, high - last.offset - 1))


def redis_client(s: WorkerSettings):
    """The worker's asyncio Redis client: one redis-server, or a cluster (`--redis-cluster`)."""
    from stream.redis_client import async_client
    from stream.security import redis_kwargs

    # redis-py's default socket timeout (5 s) is shorter than a reply can take when several workers load one
    # Redis: they timed out, retried their batches and kept Redis saturated (4 workers, 100k-user city).
    return async_client(s.redis_url, s.redis_cluster, socket_timeout=s.redis_timeout,
                        **redis_kwargs(s.redis_url, s.redis_security))


def build_app(s: WorkerSettings, inference=None):
    """The Faust app with the agents of the worker's role (`inference`: a stream.inference.Inference for the infer
    role); nothing runs until a faust.Worker starts it."""
    import faust

    from stream.faust_batches import deliver_in_batches
    from stream.looplag import LoopLag
    from stream.security import faust_kwargs

    app = faust.App(
        s.app,
        broker=";".join(f"kafka://{b.strip()}" for b in s.bootstrap.split(",")),
        store="memory://",
        datadir=str(s.data_dir),
        web_port=s.web_port,
        web_enabled=s.web_port > 0,
        topic_partitions=s.partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=max(0.5, s.session_timeout / 3),
        broker_rebalance_timeout=s.session_timeout,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=4096,
        broker_max_poll_records=max(1000, 2 * s.batch_size),
        processing_guarantee="at_least_once",
        **faust_kwargs(s.kafka_security),
    )
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    if s.runs("ingest"):
        # The pings topic and the repartition topic have the same partition count and one agent: Faust gives
        # partition p of both to the same worker, the owner of partition p's users. Both reach the agent as
        # per-partition batches (its queue holds batches of up to batch_size records each, not records).
        pings = app.topic(s.topics.pings, s.repartition_topic, partitions=s.partitions, maxsize=8 * s.partitions, **raw)
        deliver_in_batches(app, pings, s.batch_size)
        runner = Runner(s, app, {"dlq": app.topic(s.topics.dlq, **raw)})

        @app.agent(pings, name="ingest")
        async def ingest(stream):
            # A few partitions' batches at a time (their Redis round trips overlap); acked once handled.
            async for batches in stream.take(s.partitions, within=s.batch_wait):
                await runner.handle(batches)

        @app.on_partitions_revoked.connect
        async def forget_revoked(app, revoked, **kwargs) -> None:
            # The next owner reloads the partition from Redis; a stale copy here must not be reused later.
            if runner.processor is not None:
                for tp in revoked:
                    if tp.topic == s.topics.pings:
                        runner.processor.store.forget(tp.partition)

    if s.runs("infer"):
        add_infer_agent(app, s, inference, raw)

    @app.task
    async def watch_loop() -> None:
        await LoopLag().run()

    return app


def add_infer_agent(app, s: WorkerSettings, inference, raw: dict) -> None:
    """The infer agent: slot-work items in topic order, each done (outputs flushed) before its offset is acked."""
    from stream.publication import WorkLedger
    from stream.slotwork import WorkRunner
    from stream.transport import make_producer

    work = app.topic(s.work_topic, partitions=s.n_work_partitions, **raw)
    state: dict = {}

    @app.agent(work, name="infer")
    async def infer(stream):
        async for events in stream.take_events(64, within=s.batch_wait):
            if not state:
                client = redis_client(s)
                inference.attach(client, make_producer(s.bootstrap, s.kafka_security))
                state["runner"] = WorkRunner(s, inference, WorkLedger(client, s.keys, s.retain_slots, s.ttl))
            for e in events:
                await state["runner"].run(e.message.value)
            consumer_lag(app, events[-1].message, m.WORK_LAG)

    if s.forecaster or s.embedder:
        inference.load_in_background()

        @app.timer(s.model_poll)
        async def refresh_models() -> None:
            await inference.refresh_models()

    @app.on_before_shutdown.connect
    async def flush_outputs(app, **kwargs) -> None:
        await inference.close()


def set_torch_threads(s: WorkerSettings) -> None:
    """Give model inference `s.torch_threads` CPU threads (before the models load). OpenMP threads spin while
    they wait for a core, so on a host whose cores also run Redis and the broker one thread is 2-6x faster."""
    if s.torch_threads and (s.forecaster or s.embedder):
        import torch

        torch.set_num_threads(s.torch_threads)


def run(s: WorkerSettings, loglevel: str = "info") -> None:
    """Create the topics, start the metrics endpoint, and run the Faust worker until it is stopped."""
    import faust

    from stream.exceptions import ServiceError
    from stream.looplag import freeze_startup_heap
    from stream.security import aiokafka_kwargs, check_redis
    from stream.services import create_topic
    from stream.settings import SettingsError

    inference = None
    if s.runs("infer"):  # the ingest role never imports torch
        from stream.inference import Inference

        set_torch_threads(s)
        inference = Inference(s)
        inference.check()  # a checkpoint that is there but does not load stops the worker now, not at the first close
    check_redis(s.redis_url, s.redis_security)  # a refused password fails here, naming the setting
    kafka = aiokafka_kwargs(s.kafka_security)
    create_topic(s.bootstrap, s.topics.pings, s.partitions, client=kafka)
    create_topic(s.bootstrap, s.repartition_topic, s.partitions, client=kafka)  # must match: raises if not
    try:
        create_topic(s.bootstrap, s.work_topic, s.n_work_partitions, client=kafka)
    except ServiceError as exc:  # items are placed on partitions by number: every worker must agree
        if "exists with" not in str(exc):
            raise
        raise SettingsError(f"setting work_partitions (MOBSTREAM_WORK_PARTITIONS) = {s.work_partitions}: {exc}; "
                            "set it to the topic's partition count") from exc
    for name in (s.topics.dlq, s.topics.forecasts, s.topics.embeddings, s.topics.flows):
        try:
            create_topic(s.bootstrap, name, s.partitions, client=kafka)
        except ServiceError as exc:  # an output topic may have any partition count
            if "exists with" not in str(exc):
                raise
    Path(s.data_dir).mkdir(parents=True, exist_ok=True)
    m.serve(s.metrics_port)
    app = build_app(s, inference)
    log.info("worker %s, role %s: %s -> redis %s; %s", s.app, s.role, s.topics.pings, s.redis_url.split("@")[-1],
             describe(s))
    freeze_startup_heap()
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


def describe(s: WorkerSettings) -> str:
    parts = []
    for name, path in (("forecasts", s.forecaster), ("embeddings", s.embedder)):
        parts.append(f"{name} from {path}" if path else f"{name} OFF (no checkpoint set)")
    return ", ".join(parts) + f"; slot work on {s.work_topic} ({s.n_work_partitions} partitions)"
