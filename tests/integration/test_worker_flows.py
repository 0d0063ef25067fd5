"""Replay a tiny city through a real worker (real broker, real Redis): every cell's flows equal the offline ones."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis

from models.flows import flow_counts
from models.slots import slot_from_dt
from stream.replay import ReplaySettings, replay
from models.grid import cell_id
from stream.redis_client import sync_client
from tests.integration.test_worker_outputs import read_topics
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.tiny_city import write_city
from stream.keys import Keys

pytestmark = pytest.mark.integration


def redis_flows(redis_url: str, app: str, city: str, slots, cluster: bool = False) -> dict:
    r = sync_client(redis_url, cluster)
    out = {}
    for s in slots:
        for cell, val in r.hgetall(Keys(app).flow(city, s)).items():
            counts = tuple(int(v) for v in val.split(b","))
            if any(counts):
                out[(s, int(cell))] = counts
    r.close()
    return out


def offline_flows(df) -> dict:
    df = df.sort_values(["uid", "d", "t"])
    fc = flow_counts(df.uid.to_numpy(), slot_from_dt(df.d.to_numpy(), df.t.to_numpy()), df.x.to_numpy(), df.y.to_numpy())
    return {(int(s), int(c)): tuple(int(v) for v in k) for s, c, k in zip(fc.slot, fc.cell, fc.counts) if k.any()}


def test_replayed_city_matches_offline_flows(broker, any_redis, make_topic, tmp_path):
    """On one redis-server and on a 3-master Redis Cluster alike; the flows topic, read by an outside client,
    carries the same numbers."""
    redis_url, cluster = any_redis
    topic = make_topic(partitions=3)
    df = write_city(tmp_path / "cityA.csv", n_users=80, days=2)
    rep = replay(ReplaySettings(tmp_path / "cityA.csv", broker.bootstrap, topic, partitions=3, progress=False))
    assert rep.masked == int((df.x == 999).sum()) and rep.pings == len(df) - rep.masked
    app = f"t{uuid.uuid4().hex[:8]}"
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 3, tmp_path / "worker.log", cluster=cluster)
    try:
        last = int(slot_from_dt(df.d.max(), 47))
        wait_assembled(redis_url, app, last, w, cluster=cluster)
        got = redis_flows(redis_url, app, "A", range(last + 1), cluster)
    finally:
        w.stop()
    want = offline_flows(df)
    assert got == want
    assert len(want) > 100
    records = read_topics(broker.bootstrap, [f"{topic}-flows"], lambda g: len(g[f"{topic}-flows"]) >= len(want),
                          timeout=30)[f"{topic}-flows"]
    on_kafka = {}
    for key, doc in records:  # read_topics decodes the JSON
        assert key == f"A:{doc['cell']}" and cell_id(doc["x"], doc["y"]) == doc["cell"]
        on_kafka[(doc["slot"], doc["cell"])] = (doc["occupancy"], doc["inflow"], doc["outflow"])
    assert on_kafka == want  # each record once: ledger-published after the slot was assembled
    assert w.proc.returncode == 0 or w.proc.returncode == -15, w.tail()


@pytest.mark.slow
def test_window_keys_expire(broker, redis_url, redis_client, make_topic, tmp_path):
    topic = make_topic(partitions=1)
    write_city(tmp_path / "c.csv", n_users=10, days=1)
    replay(ReplaySettings(tmp_path / "c.csv", broker.bootstrap, topic, partitions=1, progress=False))
    app = f"t{uuid.uuid4().hex[:8]}"
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 1, tmp_path / "worker.log", ["--ttl", "7200"])
    try:
        wait_assembled(redis_url, app, 47, w)
    finally:
        w.stop()
    ttls = {k: redis_client.ttl(k) for k in redis_client.keys(f"{app}:*")}
    assert ttls and all(0 < t <= 7200 for t in ttls.values()), {k: t for k, t in ttls.items() if t <= 0}
    assert any(b":A:log:" in k and k.startswith(Keys(app).part(0).encode()) for k in ttls)
