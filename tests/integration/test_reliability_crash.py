"""Crashes: kill -9 the worker at random points of a replay (the final flows equal the offline truth), and a
crash inside slot close, between the Redis close and the outputs' publication (what a consumer sees)."""

from __future__ import annotations

import random
import signal
import time
import uuid

import orjson
import pytest
import redis

from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S, slot_from_dt
from stream.keys import Keys
from stream.pings import Limits
from stream.processor import Processor
from stream import records as rec
from stream.publication import Ledger, WorkLedger
from stream.redis_client import sync_client
from stream.settings import WorkerSettings
from stream.slotwork import WorkRunner, WorkSender
from stream.replay import ReplaySettings, replay
from stream.windows.redis_store import RedisWindowStore
from tests.integration.test_worker_flows import offline_flows, redis_flows
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.tiny_city import write_city

pytestmark = pytest.mark.integration


def replay_with_kills(broker, redis_url, make_topic, tmp_path, kills: int, seed: int, days: int = 3,
                      cluster: bool = False, single: bool = False) -> dict:
    """Replay a city (batch or single-ping messages), run a worker, kill -9 it `kills` times at random moments,
    restart; compare with offline."""
    topic = make_topic(partitions=2)
    df = write_city(tmp_path / "c.csv", n_users=200, days=days, seed=seed)
    replay(ReplaySettings(tmp_path / "c.csv", broker.bootstrap, topic, partitions=2, progress=False, batch_size=40,
                          single=single))
    app = f"t{uuid.uuid4().hex[:8]}"
    last = int(slot_from_dt(df.d.max(), 47))
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(1, last - 4), kills))  # the assembled slot at which each kill comes
    r = sync_client(redis_url, cluster)
    at = []
    try:
        for i, target in enumerate(targets):
            # Small batches: progress comes in small steps, so the kill lands mid-stream near its target.
            w = WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / f"w{i}.log", ["--batch-size", "2"],
                           cluster=cluster)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and int(r.get(Keys(app).assembled("A")) or -1) < target:
                time.sleep(0.003)
            at.append(int(r.get(Keys(app).assembled("A")) or -1))
            w.stop(signal.SIGKILL)
        w = WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / "final.log", cluster=cluster)
        try:
            wait_assembled(redis_url, app, last, w, timeout=120, cluster=cluster)
        finally:
            w.stop()
    finally:
        r.close()
    assert redis_flows(redis_url, app, "A", range(last + 1), cluster) == offline_flows(df)
    return {"kills": kills, "mid_stream": sum(a < last for a in at), "assembled_at_kill": at, "last": last}


@pytest.mark.parametrize("single", [False, True], ids=["batch-messages", "single-ping-messages"])
def test_kill_9_once_mid_replay(broker, any_redis, make_topic, tmp_path, single):
    url, cluster = any_redis
    got = replay_with_kills(broker, url, make_topic, tmp_path, kills=1, seed=3, days=2, cluster=cluster, single=single)
    assert got["assembled_at_kill"][0] < got["last"], got


@pytest.mark.slow
@pytest.mark.parametrize("single", [False, True], ids=["batch-messages", "single-ping-messages"])
def test_kill_9_five_times_mid_replay(broker, redis_url, redis_client, make_topic, tmp_path, single):
    got = replay_with_kills(broker, redis_url, make_topic, tmp_path, kills=5, seed=4, days=8, single=single)
    assert sum(a < got["last"] for a in got["assembled_at_kill"]) >= 5, got


class Crash(Exception):
    """The simulated process death inside a slot-close hook."""


def pings(slots: int, users: int = 6) -> list:
    return [(None, orjson.dumps([{"uid": u, "ts": O + s * S + 5 + u, "x": 1 + (u + s) % 4, "y": 2} for u in range(users)]))
            for s in range(slots)]



async def run_with_crash(aredis, hook: str, crash_at: int, slots: int = 6, ledger: bool = True):
    """Process `slots` slots of pings one message at a time; the `hook` raises once when it sees slot crash_at.
    Then a fresh Processor (a restarted worker) gets every message again (Kafka redelivers). Returns what
    each hook published: slots for on_assembled, (uid, slot) pairs for on_closed."""
    seen: dict = {"on_closed": [], "on_assembled": []}
    crashed = []

    async def on_closed(part, city, slot, uids, cells):
        if hook == "on_closed" and slot == crash_at and not crashed:
            crashed.append(slot)
            raise Crash(slot)
        seen["on_closed"].extend((u, slot) for u in uids)

    async def on_assembled(made):
        if hook == "on_assembled" and any(s == crash_at for _, s in made) and not crashed:
            crashed.append(crash_at)
            raise Crash(crash_at)
        seen["on_assembled"].extend(s for _, s in made)

    def fresh():
        return Processor(RedisWindowStore(aredis), Limits(), lateness=0, n_partitions=1, origin=O,
                         on_closed=on_closed, on_assembled=on_assembled, ledger=Ledger(aredis) if ledger else None)

    msgs = pings(slots)
    p = fresh()
    done = 0
    try:
        for i, m in enumerate(msgs):
            await p.process(0, [m])
            done = i + 1
    except Crash:
        pass
    p = fresh()  # restart: the crashed batch was never acknowledged, so it and everything after come again
    for m in msgs[done:]:
        await p.process(0, [m])
    return seen, crashed


async def test_crash_in_embedding_publication_redelivers_with_the_same_slot(aredis):
    seen, crashed = await run_with_crash(aredis, "on_closed", crash_at=2)
    seen = seen["on_closed"]
    assert crashed == [2]
    closed = {s for _, s in seen}
    assert closed == set(range(5))  # every closed slot's users were published
    # Nothing was published twice here (the crash preceded publication); a duplicate would carry the same (uid, slot).
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("crash_at", [2, 4])
async def test_crash_in_forecast_publication_does_not_skip_the_slot(aredis, crash_at):
    """Slot 2: recovered at the next assembly; slot 4, the last: recovered when the restarted worker starts."""
    seen, crashed = await run_with_crash(aredis, "on_assembled", crash_at=crash_at)
    assert crashed == [crash_at]
    assert seen["on_assembled"] == list(range(5)), seen["on_assembled"]  # each once, in order, none skipped
    assert await aredis.zcard(Keys().unpublished("A")) == 0


async def test_without_a_ledger_the_crashed_slot_is_skipped(aredis):
    """The bug the ledger fixes, kept visible: a Processor with no ledger publishes only what each ADVANCE made."""
    seen, _ = await run_with_crash(aredis, "on_assembled", crash_at=2, ledger=False)
    assert sorted(seen["on_assembled"]) == [0, 1, 3, 4]


class OneTopic:
    """A producer whose flushed items land on one in-memory topic; a crash in flush loses what was queued."""

    def __init__(self, crash_on=None):
        self.topic, self.queued, self.crash_on = [], [], crash_on

    def produce(self, topic, value, key, partition=None):
        self.queued.append(value)

    def poll(self, timeout):
        return 0

    def flush(self, timeout=None):
        queued, self.queued = self.queued, []
        if self.crash_on is not None and any(self.crash_on(rec.decode_work(v)) for v in queued):
            self.crash_on = None
            raise Crash("ingest")
        self.topic += queued
        return 0


class CrashingInference:
    def __init__(self, redis, crash_at):
        self.redis, self.crash_at, self.made = redis, crash_at, []

    async def embed(self, w):
        self.made.append((w.kind, w.slot))

    async def forecast(self, city, slot):
        if slot == self.crash_at:
            self.crash_at = None
            raise Crash("infer")
        self.made.append(("forecast", slot))


@pytest.mark.parametrize("role, crash_at", [("ingest", 2), ("ingest", 4), ("infer", 2), ("infer", 4)])
async def test_split_roles_crash_skips_no_slot(aredis, role, crash_at, redis_url, slots=6):
    """Ingest (Processor + WorkSender + WorkLedger) sends items to a topic; the infer side runs them from its
    committed offset. A crash of either before its step is done redoes the step; every slot is published."""
    s = WorkerSettings(bootstrap="b:1", redis_url=redis_url, embedder="e.pt")
    crash_on = (lambda w: w.kind == rec.FORECAST and w.slot == crash_at) if role == "ingest" else None
    producer, msgs, done = OneTopic(crash_on), pings(slots), 0

    def ingest():
        sender = WorkSender(s, aredis, producer)
        return Processor(RedisWindowStore(aredis), Limits(), lateness=0, n_partitions=1, origin=O,
                         on_closed=sender.on_closed, on_assembled=sender.on_assembled, full_windows=sender.full_windows,
                         ledger=WorkLedger(aredis, s.keys))
    p = ingest()
    try:
        for i, m in enumerate(msgs):
            await p.process(0, [m])
            done = i + 1
    except Crash:
        p = ingest()  # restart: the batch comes again, and the restarted worker first sends what is pending
        for m in msgs[done:]:
            await p.process(0, [m])
    inference = CrashingInference(aredis, crash_at if role == "infer" else None)
    committed = 0
    for attempt in range(2):
        runner = WorkRunner(s, inference, WorkLedger(aredis, s.keys))
        try:
            for item in producer.topic[committed:]:
                await runner.run(item)
                committed += 1
        except Crash:
            continue  # restart from the committed offset: the item comes again
    assert producer.crash_on is None and inference.crash_at is None  # the crash happened
    forecasts = [sl for kind, sl in inference.made if kind == "forecast"]
    assert sorted(set(forecasts)) == list(range(slots - 1)) and forecasts == sorted(forecasts), forecasts
    assert {sl for kind, sl in inference.made if kind == rec.EMBED} == set(range(slots - 1))
    assert await aredis.zrange(s.keys.kept("A"), 0, -1) == [str(sl).encode() for sl in range(slots - 1)]
    assert await aredis.zcard(s.keys.unpublished("A")) == 0 and await aredis.zcard(s.keys.dispatched("A")) == 0
