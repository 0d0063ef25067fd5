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
from stream.publication import Ledger
from stream.redis_client import sync_client
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
