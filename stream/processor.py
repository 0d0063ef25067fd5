"""One partition's batch, start to finish, without Kafka: decode -> classify -> store -> close slots.

The Faust agent in `stream.worker` only groups messages by partition and hands them here, so the
whole ingest path is testable against a real Redis with no broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from models.slots import WINDOW_SLOTS, slots_of
from stream import deadletter as dl
from stream import repartition
from stream.repartition import split_markers
from stream import metrics as m
from stream.deadletter import DeadLetter
from stream.pings import WATERMARK, Limits, decode, raw_bytes
from stream.redis_retry import until_redis_answers
from stream.windows.close import slot_flows
from stream.windows.store import WindowStore
from stream.windows.watermark import PartitionClock, classify, frontier, open_slot, slots_to_close

log = logging.getLogger(__name__)

# (partition, city, slot, uids, cells (N, 8)) for every closed slot with users, and
# [(city, slot), ...] for every slot assembled: the hooks phase-2 outputs hang on. A hook returns only
# once its records are delivered (flushed): what follows it records that they need not be made again.
OnClosed = Callable[[int, str, int, list, np.ndarray], Awaitable[None]]
OnAssembled = Callable[[list], Awaitable[None]]


@dataclass
class Outcome:
    """What one batch did, for metrics, logs and tests."""

    accepted: int = 0
    late: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    assembled: list[tuple[str, int]] = field(default_factory=list)

    def add(self, other: "Outcome") -> None:
        self.accepted += other.accepted
        self.late += other.late
        self.dead += other.dead
        self.closed += other.closed
        self.assembled += other.assembled


# One step of a batch holds the event loop for its decoding and table work (~1-2 us per ping, in numpy that
# keeps the GIL): 1 MiB of messages (~30,000 columnar pings) keeps a step near 50 ms. A fetch during
# catch-up holds several MiB per partition.
STEP_BYTES = 1 << 20


def steps(messages: list[tuple], limit: int):
    """The messages ((key, value, ...) tuples) in order, in runs of at most `limit` value bytes (a larger
    message runs alone)."""
    start, size = 0, 0
    for i, msg in enumerate(messages):
        n = len(msg[1] or b"")
        size += n
        if size > limit and i > start:
            yield messages[start:i]
            start, size = i, n
    if start < len(messages):
        yield messages[start:]


class Processor:
    """Turns a partition's messages into window state; every effect is idempotent under redelivery."""

    def __init__(self, store: WindowStore, limits: Limits, *, lateness: float, n_partitions: int, origin: int,
                 on_closed: OnClosed | None = None, on_assembled: OnAssembled | None = None,
                 full_windows: Callable[[], bool] = lambda: True, ledger=None, repartition=None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.store = store
        self.limits = limits
        self.lateness = lateness
        self.n_partitions = n_partitions
        self.origin = origin
        self.on_closed = on_closed
        self.on_assembled = on_assembled
        self.full_windows = full_windows  # whole 8-slot windows needed (an embedder is on)?
        self.ledger = ledger  # stream.publication.Ledger: assembled slots not yet published survive a crash
        # stream.repartition.Repartition, or None: every ping is taken as its partition's own (one partition,
        # or producers known to key by uid with murmur2).
        self.repartition = repartition if n_partitions > 1 else None
        self.clock = clock
        self._recovered = ledger is None
        # A partition's pings and the pings forwarded to it are two inputs of one state: one batch at a time.
        self._partition_locks: dict[int, asyncio.Lock] = {}
        self._marked: dict[int, int | None] = {}  # partition -> the open slot its last marker told the others
        self._publishing = asyncio.Lock()  # partitions of one worker run concurrently: publish each slot once

    async def process(self, part: int, messages: list[tuple[bytes | None, bytes]], forwarded: bool = False) -> Outcome:
        """Process a batch of the pings topic, or with `forwarded` of the repartition topic; while Redis is
        unreachable, retry it with backoff (every step is idempotent), so the agent never raises and the
        consumer stops taking messages instead of dropping a batch."""
        lock = self._partition_locks.setdefault(part, asyncio.Lock())
        out = Outcome()
        async with lock:
            for run in steps(messages, STEP_BYTES):  # each its own commit, in offset order: as consecutive batches would be
                out.add(await self._retrying(part, run, forwarded))
        return out

    async def _retrying(self, part: int, messages: list, forwarded: bool) -> Outcome:
        from stream.windows.redis_store import StaleState

        async def attempt() -> Outcome:
            while True:
                try:
                    return await self._process(part, messages, forwarded)
                except StaleState as exc:  # the store dropped its copy; the retry reloads it from Redis
                    log.warning("%s; reloading the partition and redoing the batch", exc)
                    m.STATE_RELOADS.inc()

        return await until_redis_answers(attempt, f"partition {part}", "the batch")

    async def _process(self, part: int, messages: list[tuple[bytes | None, bytes]], forwarded: bool = False) -> Outcome:
        t0 = self.clock()
        out = Outcome()
        if not self._recovered:  # slots a dead worker assembled but did not publish
            await self.publish()
            self._recovered = True
        marks: dict[int, float] = {}
        if forwarded:
            marks, messages = split_markers(messages)
        got = decode(messages, self.limits)
        out.dead.extend(got.dead)
        before, _ = await self.store.state(part)
        is_ping = got.cell != WATERMARK
        if forwarded:  # judged by the partition that forwarded them; they move only that source's marker
            late, new_max = np.zeros(len(got), dtype=bool), before.max_ts
        else:
            late, new_max = classify(got.ts, before, self.lateness, self.origin)
        accept = is_ping & ~late
        slots = slots_of(got.ts, self.origin)
        idx = np.flatnonzero(accept)
        uids, cities = [got.uid[i] for i in idx], [got.city[i] for i in idx]
        records = []
        if self.repartition is not None and not forwarded and len(idx):
            owner = self.repartition.owners.of(uids)
            mine = owner == part
            if not mine.all():
                records = repartition.forwarded(part, owner, cities, uids, got.ts[idx], got.cell[idx])
                m.REPARTITIONED.inc(int((~mine).sum()))
                keep = np.flatnonzero(mine).tolist()
                idx, uids, cities = idx[mine], [uids[j] for j in keep], [cities[j] for j in keep]
        marked = open_slot(new_max, self.lateness, self.origin)
        if self.repartition is not None and not forwarded and new_max is not None and self._marked.get(part) != marked:
            # After the pings (one producer, one partition each: Kafka keeps the order): the owners may close
            # what this partition's watermark has passed. Only a new open slot moves their closes, so one
            # marker per slot (and one after a restart or rebalance: this process has not marked yet).
            records += [(q, b"", repartition.encode_marker(part, new_max)) for q in range(self.n_partitions) if q != part]
        if records:
            await self.repartition.forward(records)  # delivered before the batch can be committed
            if new_max is not None and not forwarded:
                self._marked[part] = marked
        inputs = dict(before.inputs)
        for q, t in marks.items():
            inputs[q] = max(t, inputs.get(q, t))
        first = min((f for f in (before.first, int(slots[idx].min()) if len(idx) else None) if f is not None),
                    default=None)
        upto = new_max
        if self.repartition is not None:
            upto = frontier(new_max, inputs, [q for q in range(self.n_partitions) if q != part])
        to_close, _ = slots_to_close(before, upto, first, self.lateness, self.origin)
        await self.store.apply(part, cities, uids, slots[idx], got.ts[idx], got.cell[idx],
                               PartitionClock(new_max, before.next_close, first, inputs))
        for i in np.flatnonzero(is_ping & late).tolist():
            out.dead.append(DeadLetter(dl.LATE, f"slot {int(slots[i])} was already closed on partition {part}",
                                       raw_bytes(got.raw[i]), got.keys[i]))
        out.accepted, out.late = len(idx), int((is_ping & late).sum())
        m.BATCH_SECONDS.observe(self.clock() - t0)
        if len(to_close):
            t1 = self.clock()
            # Every city any partition has seen: a city's slot is assembled once all partitions closed it.
            cities = await self.store.refresh_cities()
            await self._close(part, cities, to_close, out)
            m.SLOT_CLOSE_SECONDS.observe(self.clock() - t1)
        self._count(part, out, len(messages), new_max)
        return out

    async def _close(self, part: int, cities: list[str], to_close: range, out: Outcome) -> None:
        city_slots = [(c, s) for s in to_close for c in cities]
        windows = await self.store.close_windows(part, city_slots, full=self.full_windows())
        # In a thread: a 30,000-user slot's flows take tens of ms, which would stall every other partition on
        # the event loop (the partition's own state waits behind its lock).
        flows = await asyncio.to_thread(lambda: [slot_flows(cells) if uids else None for uids, cells in windows])
        partials = []
        for (city, slot), (uids, cells), f in zip(city_slots, windows, flows):
            if uids:
                partials.append((city, slot, *f))
                if self.on_closed is not None:
                    await self.on_closed(part, city, slot, uids, cells)
        # Purging slot-8 only once the closes are recorded: a re-close after a crash starts past them.
        purge = [(c, s - WINDOW_SLOTS) for c, s in city_slots]
        out.closed = list(to_close)
        out.assembled = await self.store.finish_close(part, partials, to_close[-1], self.n_partitions, purge)
        if out.assembled:
            await self.publish(out.assembled)

    async def publish(self, made: list | None = None) -> list[tuple[str, int]]:
        """Publish the slots assembled and not yet published (with a ledger: those this call `made` and any a
        crash left behind), then record them; returns what was published."""
        if self.ledger is None:
            if made and self.on_assembled is not None:
                await self.on_assembled(made)
            return made or []
        async with self._publishing:
            todo = await self.ledger.pending()
            if todo:
                if self.on_assembled is not None:
                    await self.on_assembled(todo)
                await self.ledger.done(todo)
        return todo

    @staticmethod
    def _count(part: int, out: Outcome, n_messages: int, new_max: float | None) -> None:
        m.MESSAGES.inc(n_messages)
        m.PINGS.labels("accepted").inc(out.accepted)
        m.PINGS.labels("late").inc(out.late)
        m.LATE.inc(out.late)
        m.PINGS.labels("dead").inc(len(out.dead) - out.late)
        m.SLOTS_CLOSED.inc(len(out.closed))
        m.SLOTS_ASSEMBLED.inc(len(out.assembled))
        if new_max is not None:
            m.EVENT_TIME.labels(str(part)).set(new_max)
