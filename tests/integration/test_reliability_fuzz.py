"""Fuzzed bad input through a real worker over the real broker: no crash, every bad ping in the DLQ with its
reason, every valid ping counted exactly once (Redis flows equal the offline computation)."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections import Counter

import numpy as np
import orjson
import pytest

from models.flows import flow_counts
from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S, slot_of
from tests.integration.test_worker_deadletters import consume, produce
from tests.integration.test_worker_flows import redis_flows
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.test_fuzz_pings import MAX_BYTES, messages, random_draw

pytestmark = pytest.mark.integration
SLOTS = 4  # valid pings fall in slots 0..3; the lateness covers them all, so none is late


def offline(good: list) -> dict:
    """Per city, {(slot, cell): (occ, in, out)} of the valid pings: each user's latest ping per slot wins."""
    out: dict = {}
    for city in sorted({g[1] for g in good}):
        latest: dict = {}
        for uid, c, ts, cell in good:
            if c == city:
                slot = int(slot_of(ts, O))
                latest[(uid, slot)] = max(latest.get((uid, slot), (-1.0, -1)), (ts, cell))
        rows = sorted((uid, slot, cell) for (uid, slot), (_, cell) in latest.items())
        codes = {u: i for i, u in enumerate(sorted({r[0] for r in rows}))}
        uid = np.array([codes[r[0]] for r in rows])
        slot = np.array([r[1] for r in rows])
        cell = np.array([r[2] for r in rows])
        fc = flow_counts(uid, slot, cell % 200 + 1, cell // 200 + 1)
        out[city] = {(int(s), int(c)): tuple(int(v) for v in k) for s, c, k in zip(fc.slot, fc.cell, fc.counts) if k.any()}
    return out


def counter(text: str, name: str, label: str | None = None) -> float:
    pat = rf'^{name}{{{label}}} (\S+)$' if label else rf"^{name} (\S+)$"
    got = re.search(pat, text, re.M)
    return float(got.group(1)) if got else 0.0


def fuzz_through_worker(broker, redis_url, make_topic, tmp_path, n_messages: int, seed: int) -> dict:
    """Send fuzzed messages to a 1-partition topic, run a worker to the end; returns what was checked."""
    topic = make_topic(partitions=1)
    rng = random.Random(seed)
    cases = messages(random_draw(rng, ts_range=(O, O + SLOTS * S - 2)), n_messages)
    closing = orjson.dumps({"watermark": O + (SLOTS + 9) * S})
    asyncio.run(produce(broker.bootstrap, topic, [(c.value, 0) for c in cases] + [(closing, 0)]))
    app = f"t{uuid.uuid4().hex[:8]}"
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 1, tmp_path / "worker.log",
                   ["--lateness", str(8 * S), "--max-message-bytes", str(MAX_BYTES)])
    want_dead = Counter(r for c in cases for r in c.dead)
    try:
        wait_assembled(redis_url, app, SLOTS, w)
        dead = asyncio.run(consume(broker.bootstrap, f"{topic}-dlq", sum(want_dead.values()), timeout=60))
        text = w.metrics()
        alive = w.proc.poll() is None
    finally:
        w.stop()
    good = [g for c in cases for g in c.good]
    assert alive, w.tail()
    assert "Traceback" not in w.tail(200_000), w.tail()
    reasons = Counter(dict(m.headers)["reason"].decode() for m in dead)
    assert reasons == want_dead
    assert all(dict(m.headers)["detail"] and dict(m.headers)["source"].startswith(b"t-") for m in dead)
    assert counter(text, "mobstream_pings_total", 'outcome="accepted"') == len(good)
    assert counter(text, "mobstream_late_pings_total") == 0
    want = offline(good)
    for city, flows in want.items():
        assert redis_flows(redis_url, app, city, range(SLOTS)) == flows, city
    return {"messages": len(cases), "valid": len(good), "bad": sum(want_dead.values()), "reasons": dict(want_dead)}


def test_fuzzed_pings_through_a_real_worker(broker, redis_url, redis_client, make_topic, tmp_path):
    got = fuzz_through_worker(broker, redis_url, make_topic, tmp_path, 500, seed=1)
    assert got["valid"] + got["bad"] >= 900, got


@pytest.mark.slow
def test_many_fuzzed_pings_through_a_real_worker(broker, redis_url, redis_client, make_topic, tmp_path):
    got = fuzz_through_worker(broker, redis_url, make_topic, tmp_path, 2000, seed=2)
    assert got["valid"] + got["bad"] >= 3000, got


POISON = [b'{"uid": 1, "ts": 1' + b"0" * 400 + b', "x": 3, "y": 4}', b"[" * 5000 + b"]" * 5000,
          rb'{"uid": "\ud800", "ts": %d, "x": 3, "y": 4}' % (O + 60)]


def test_poison_messages_are_dead_letters_and_the_worker_goes_on(broker, redis_url, redis_client, make_topic,
                                                                   tmp_path):
    """Each poison message crashed the agent before the fix, dropping the valid ping in its batch."""
    topic = make_topic(partitions=1)
    good = [orjson.dumps({"uid": 2 + i, "ts": O + 70, "x": 5, "y": 6}) for i in range(len(POISON))]
    msgs = [m for pair in zip(POISON, good) for m in pair] + [orjson.dumps({"watermark": O + S})]
    asyncio.run(produce(broker.bootstrap, topic, [(m, 0) for m in msgs]))
    app = f"t{uuid.uuid4().hex[:8]}"
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 1, tmp_path / "worker.log")
    try:
        wait_assembled(redis_url, app, 0, w, timeout=40)
        dead = asyncio.run(consume(broker.bootstrap, f"{topic}-dlq", len(POISON), timeout=10))
    finally:
        w.stop()
    assert sorted(dict(m.headers)["reason"].decode() for m in dead) == ["nan", "not_json", "not_json"]
    assert redis_flows(redis_url, app, "A", [0]) == {(0, 5 * 200 + 4): (len(POISON), 0, 0)}
    assert "Traceback" not in w.tail(200_000)
