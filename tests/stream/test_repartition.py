"""Repartitioning on a real Redis (no broker): a user's pings arriving on every partition are counted once,
whatever order the two inputs of each partition are processed in; the records and markers round-trip."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from models.slots import DEFAULT_ORIGIN, SLOT_SECONDS, slot_from_dt
from stream.ownership import Owners, murmur2_many, owner
from stream.pings import Limits
from stream.processor import Processor
from stream.repartition import Repartition, encode_marker, forwarded, split_markers
from stream.windows.redis_store import RedisWindowStore
from tests.stream.tiny_city import tiny_city

pytestmark = pytest.mark.integration


def test_owner_is_kafkas_default_partitioner():
    # murmur2 of the key bytes, as the Java client and `mobstream replay` place a keyed record
    assert [owner(u, 4) for u in ("0", "1", "42", "user-7")] == [owner(str(u), 4) for u in (0, 1, 42, "user-7")]
    assert Owners(4).of(["42", "0"]).tolist() == [owner("42", 4), owner("0", 4)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=50))
def test_murmur2_of_many_keys_is_kafkas_murmur2(keys):
    from aiokafka.partitioner import murmur2

    assert murmur2_many(keys).tolist() == [murmur2(k) & 0xFFFFFFFF for k in keys]


def test_owners_of_many_uids_agree_with_owner():
    uids = [str(u) for u in range(5000)] + ["user-7", "ключ", "a\x00", ""]
    assert Owners(7).of(uids).tolist() == [owner(u, 7) for u in uids]
    assert Owners(3).of(np.array([5, 17])).tolist() == [owner(5, 3), owner(17, 3)]


def test_forwarded_records_and_markers_round_trip():
    recs = forwarded(0, np.array([1, 0, 1]), ["A", "A", "A"], ["u1", "u0", "u2"],
                     np.array([1.5, 2.5, 3.5]), np.array([0, 1, 201]))
    assert [(p, k) for p, k, _ in recs] == [(1, b"u1")]
    doc = orjson.loads(recs[0][2])
    assert doc == {"cols": {"uid": ["u1", "u2"], "ts": [1.5, 3.5], "x": [1, 2], "y": [1, 2]}, "city": "A"}
    marks, rest = split_markers([(None, encode_marker(3, 10.0)), (None, recs[0][2]), (None, encode_marker(3, 9.0))])
    assert marks == {3: 10.0} and rest == [(None, recs[0][2])]


class Bus:
    """The repartition topic in memory: records per partition, delivered when the test pumps them."""

    def __init__(self, n):
        self.queues = {p: [] for p in range(n)}

    async def __call__(self, records):
        for p, key, value in records:
            self.queues[p].append((key, value))


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_pings_on_any_partition_give_the_offline_flows(aredis, seed):
    from tests.integration.test_worker_flows import offline_flows

    n = 3
    df = tiny_city(n_users=40, days=1, seed=seed, masked=0.0)
    rng = random.Random(seed)
    ts = DEFAULT_ORIGIN + slot_from_dt(df.d.to_numpy(), df.t.to_numpy()) * SLOT_SECONDS + 5.0
    order = np.argsort(ts, kind="stable")
    # Every ping lands on a random partition (an unkeyed producer), in event-time order per partition.
    inbox = {p: [] for p in range(n)}
    for i in order.tolist():
        r = df.iloc[i]
        inbox[rng.randrange(n)].append((None, orjson.dumps({"uid": int(r.uid), "ts": float(ts[i]), "x": int(r.x), "y": int(r.y)})))
    end = float(ts.max()) + SLOT_SECONDS
    for p in range(n):
        inbox[p].append((None, orjson.dumps({"watermark": end})))
    store, bus = RedisWindowStore(aredis), Bus(n)
    proc = Processor(store, Limits(max_future=0), lateness=0.0, n_partitions=n, origin=DEFAULT_ORIGIN,
                     repartition=Repartition(Owners(n), bus))
    made = []
    # Interleave the two inputs of each partition at random, in small batches.
    todo = {p: list(inbox[p]) for p in range(n)}
    while any(todo.values()) or any(bus.queues.values()):
        p = rng.randrange(n)
        if bus.queues[p] and (rng.random() < 0.5 or not todo[p]):
            batch, bus.queues[p] = bus.queues[p][:5], bus.queues[p][5:]
            made += (await proc.process(p, batch, forwarded=True)).assembled
        elif todo[p]:
            batch, todo[p] = todo[p][:7], todo[p][7:]
            made += (await proc.process(p, batch)).assembled
    last = int(slot_from_dt(df.d.max(), 47))
    assert len(made) == len(set(made)) and max(s for _, s in made) == last  # each slot once, all of them
    got = {}
    for s, cells in (await store.flows("A", list(range(last + 1)))).items():
        got |= {(s, c): v for c, v in cells.items() if any(v)}
    assert got == offline_flows(df)
