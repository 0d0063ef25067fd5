"""The Redis WindowStore and the batch processor against a real redis-server: idempotence, closing, assembly."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from models.slots import DEFAULT_ORIGIN, SLOT_SECONDS
from stream.keys import Keys
from stream.pings import Limits
from stream.processor import Processor
from stream.windows.redis_store import RedisWindowStore

pytestmark = pytest.mark.integration


def ping(uid, slot, x, y, off=5.0, city="A"):
    return {"uid": uid, "ts": DEFAULT_ORIGIN + slot * SLOT_SECONDS + off, "x": x, "y": y, "city": city}


def msg(*pings):
    return (None, orjson.dumps(list(pings)))


def processor(store, n_partitions=1, lateness=0.0):
    return Processor(store, Limits(), lateness=lateness, n_partitions=n_partitions, origin=DEFAULT_ORIGIN)


def script_calls(monkeypatch) -> list[str]:
    """The names of the Lua scripts the stores run from now on, in order."""
    from stream.windows.scripts import Scripts

    calls = []
    queue, call = Scripts.queue, Scripts.call

    def counting(self, pipe, name, *args):
        calls.append(name)
        queue(self, pipe, name, *args)

    async def counting_call(self, name, *args):
        calls.append(name)
        return await call(self, name, *args)

    monkeypatch.setattr(Scripts, "queue", counting)
    monkeypatch.setattr(Scripts, "call", counting_call)
    return calls


async def windows(r, keys=Keys(), part=0, city="A", slot=0):
    """The windows a fresh worker loads from Redis for (city, slot): {uid: cells}."""
    store = RedisWindowStore(r, keys)
    await store.state(part)
    uids, cells = (await store.close_windows(part, [(city, slot)]))[0]
    return {u: c.tolist() for u, c in zip(uids, cells)}


async def test_latest_event_time_wins_and_is_idempotent(aredis):
    store = RedisWindowStore(aredis)
    batch = [msg(ping(1, 0, 3, 3, off=100), ping(1, 0, 4, 4, off=50), ping(2, 0, 5, 5))]
    proc = processor(store)
    await proc.process(0, batch)
    first = await windows(aredis)
    await proc.process(0, batch)  # redelivered: the log holds the pings twice, the windows are the same
    assert await windows(aredis) == first
    assert first["1"][-1] == (3 - 1) * 200 + 2


async def test_slot_close_writes_flows_of_the_shared_definition(aredis):
    store = RedisWindowStore(aredis)
    proc = processor(store)
    out = await proc.process(0, [msg(ping(1, 0, 1, 1), ping(2, 0, 1, 1), ping(1, 1, 2, 1), ping(2, 1, 1, 1)),
                                 msg(ping(3, 2, 9, 9))])
    assert out.closed == [0, 1] and out.assembled == [("A", 0), ("A", 1)]
    flows = await store.flows("A", [0, 1])
    assert flows[0] == {0: (2, 0, 0)}
    assert flows[1] == {0: (1, 0, 1), 1: (1, 1, 0)}


async def test_late_ping_is_dead_lettered_not_counted(aredis):
    store = RedisWindowStore(aredis)
    proc = processor(store)
    await proc.process(0, [msg(ping(1, 0, 1, 1), ping(2, 3, 1, 1))])
    before = await store.flows("A", [0])
    out = await proc.process(0, [msg(ping(5, 0, 7, 7))])
    assert out.late == 1 and [d.reason for d in out.dead] == ["late"]
    assert orjson.loads(out.dead[0].value)["uid"] == 5
    assert await store.flows("A", [0]) == before


async def test_assembly_waits_for_every_partition(aredis):
    store = RedisWindowStore(aredis)
    proc = processor(store, n_partitions=2)
    out0 = await proc.process(0, [msg(ping(1, 0, 1, 1), ping(1, 1, 1, 1))])
    assert out0.closed == [0] and out0.assembled == []
    out1 = await proc.process(1, [msg(ping(2, 0, 1, 1), ping(2, 2, 2, 2))])
    assert out1.assembled == [("A", 0)]
    assert (await store.flows("A", [0]))[0] == {0: (2, 0, 0)}


async def test_partial_windows_give_the_same_flows(aredis):
    from stream.windows.close import slot_flows

    store = RedisWindowStore(aredis)
    proc = processor(store)
    rows = [ping(u, s, 1 + (u * s) % 3, 1) for u in range(6) for s in range(9) if (u + s) % 3]
    await proc.process(0, [msg(*rows)])
    full = await store.close_windows(0, [("A", 8)], full=True)
    part = await store.close_windows(0, [("A", 8)], full=False)
    assert full[0][0] == part[0][0]
    f_ids, f_counts = slot_flows(full[0][1])
    p_ids, p_counts = slot_flows(part[0][1])
    assert f_ids.tolist() == p_ids.tolist() and f_counts.tolist() == p_counts.tolist()
    assert (part[0][1][:, -1] == full[0][1][:, -1]).all()


async def test_catching_up_many_slots_assembles_them_all_a_few_per_script(aredis, monkeypatch):
    import stream.windows.assembly as assembly

    calls = script_calls(monkeypatch)
    monkeypatch.setattr(assembly, "ASSEMBLE_PER_CALL", 3)
    store = RedisWindowStore(aredis)
    proc = processor(store, n_partitions=2)
    # Partition 0 runs 20 slots ahead (slots 0-19 closed); partition 1 then closes them all in one batch.
    await proc.process(0, [msg(*[ping(1, s, 1 + s % 5, 1) for s in range(21)])])
    calls.clear()
    out = await proc.process(1, [msg(*[ping(2, s, 2, 2) for s in range(21)], ping(2, 22, 2, 2))])
    assert out.assembled == [("A", s) for s in range(20)]  # every slot, oldest first
    assert calls.count("ASSEMBLE") == 7  # 20 slots, 3 a call
    assert int(await aredis.get(Keys().assembled("A"))) == 19
    flows = await store.flows("A", [0, 7, 19])
    assert [sum(v[0] for v in flows[s].values()) for s in (0, 7, 19)] == [2, 2, 2]  # both users, every slot


async def test_one_batch_or_many_give_the_same_windows_and_flows(aredis):
    rows = [ping(u, s, 1 + (u * s) % 7, 1 + u % 3, off=u, city="AB"[u % 2]) for s in range(3) for u in range(1, 40)]
    rows[39:39] = [ping(3, 1, 9, 9, off=900.0, city="B"), ping(3, 1, 2, 9, off=100.0, city="B")]  # in slot 1
    end = msg(ping(99, 3, 1, 1))
    whole = await processor(RedisWindowStore(aredis, Keys("whole"))).process(0, [msg(*rows), end])
    proc = processor(RedisWindowStore(aredis, Keys("parts")))
    made = []
    for i in range(0, len(rows), 7):
        made += (await proc.process(0, [msg(*rows[i:i + 7])])).assembled
    made += (await proc.process(0, [end])).assembled
    assert made == whole.assembled == [(c, s) for s in range(3) for c in "AB"]
    for city in "AB":
        for slot in range(3):
            assert await windows(aredis, Keys("parts"), city=city, slot=slot) == \
                await windows(aredis, Keys("whole"), city=city, slot=slot)
        assert await RedisWindowStore(aredis, Keys("parts")).flows(city, [0, 1, 2]) == \
            await RedisWindowStore(aredis, Keys("whole")).flows(city, [0, 1, 2])
    assert (await windows(aredis, Keys("parts"), city="B", slot=1))["3"][-1] == (9 - 1) * 200 + 8


def test_steps_cut_a_batch_by_value_bytes_in_order():
    from stream.processor import steps

    batch = [(None, b"x" * n, 0) for n in (4, 4, 4, 9, 1, 1)]
    assert [[len(v) for _, v, _ in run] for run in steps(batch, 8)] == [[4, 4], [4], [9], [1, 1]]
    assert list(steps([], 8)) == []


async def test_a_batch_taken_in_steps_equals_the_batch_at_once(aredis, monkeypatch):
    import stream.processor as processor_module

    batch = [msg(*[ping(u, s, 1 + u % 5, 2, off=u) for u in range(30)]) for s in range(4)] + [msg(ping(1, 5, 1, 1))]
    batch.insert(2, (None, b"not json"))
    whole = await processor(RedisWindowStore(aredis, Keys("whole"))).process(0, batch)
    monkeypatch.setattr(processor_module, "STEP_BYTES", 700)  # about one message a step
    stepped = await processor(RedisWindowStore(aredis, Keys("steps"))).process(0, batch)
    assert (stepped.accepted, stepped.late, stepped.closed, stepped.assembled) == \
        (whole.accepted, whole.late, whole.closed, whole.assembled) == (121, 0, [0, 1, 2, 3, 4], [("A", s) for s in range(4)])
    assert [d.reason for d in stepped.dead] == [d.reason for d in whole.dead] and len(whole.dead) == 1
    for slot in range(4):
        assert await windows(aredis, Keys("steps"), slot=slot) == await windows(aredis, Keys("whole"), slot=slot)


async def test_a_stale_owner_reloads_instead_of_writing_over_the_new_owner(aredis):
    old, new = RedisWindowStore(aredis), RedisWindowStore(aredis)
    p_old, p_new = processor(old), processor(new)
    await p_old.process(0, [msg(ping(1, 0, 1, 1))])
    await p_new.process(0, [msg(ping(2, 0, 2, 2))])  # the partition moved: the new owner loads, then writes
    await p_old.process(0, [msg(ping(3, 0, 3, 3))])  # the old one's copy is behind: it reloads, then applies
    assert set(await windows(aredis)) == {"1", "2", "3"}
    assert set((await old.close_windows(0, [("A", 0)]))[0][0]) == {"1", "2", "3"}
