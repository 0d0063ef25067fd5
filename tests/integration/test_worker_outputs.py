"""Phase 2 end to end: a real worker with real (tiny) checkpoints; an independent confluent-kafka client
reads both output topics, and forecasts/embeddings equal the offline models on offline-built windows."""

from __future__ import annotations

import base64
import time
import uuid

import numpy as np
import orjson
import pytest
import redis

from models.embedder import TrajectoryEmbedder
from models.flow_forecaster import FlowForecaster
from models.flows import flow_counts
from models.grid import cell_id
from models.slots import replay_ts, slot_from_dt, slots_of
from models.windows import windows_for
from stream.outputs import unpack_forecasts
from stream.redis_client import sync_client
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.tiny_city import write_city
from tests.stream.tiny_models import encoder_checkpoint, flow_checkpoint
from stream.replay import ReplaySettings, replay
from stream.keys import Keys

pytestmark = pytest.mark.integration


def read_topics(bootstrap: str, topics: list[str], done, timeout: float = 90.0) -> dict[str, list]:
    """Every (key, value) on `topics` until `done(got)` holds, with a plain confluent-kafka consumer."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(topics)
    got = {t: [] for t in topics}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done(got):
            for msg in c.consume(1000, timeout=0.5):
                if msg.error() is None:
                    got[msg.topic()].append((msg.key().decode(), orjson.loads(msg.value())))
    finally:
        c.close()
    return got


def test_forecasts_and_embeddings_match_the_offline_models(broker, any_redis, make_topic, tmp_path):
    redis_url, cluster = any_redis
    redis_client = sync_client(redis_url, cluster)
    topic = make_topic(partitions=2)
    df = write_city(tmp_path / "cityA.csv", n_users=40, days=1)
    replay(ReplaySettings(tmp_path / "cityA.csv", broker.bootstrap, topic, partitions=2, progress=False))
    fver = flow_checkpoint(tmp_path / "flow.pt")
    ever = encoder_checkpoint(tmp_path / "enc.pt")
    app = f"t{uuid.uuid4().hex[:8]}"
    last = int(slot_from_dt(df.d.max(), 47))
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / "worker.log",
                   ["--forecaster", str(tmp_path / "flow.pt"), "--embedder", str(tmp_path / "enc.pt")], cluster=cluster)
    try:
        wait_assembled(redis_url, app, last, w, cluster=cluster)
        seen = df[(df.x != 999) & (slot_from_dt(df.d.to_numpy(), df.t.to_numpy()) == last)]
        want_uids = {str(u) for u in seen.uid}
        deadline = time.monotonic() + 60
        while not redis_client.exists(Keys(app).forecast("A", last)) and time.monotonic() < deadline:
            time.sleep(0.2)
        n_cells = redis_client.hlen(Keys(app).forecast("A", last))
        assert n_cells > 0, w.tail()

        def done(got):
            fc = {(k, v["horizon"]) for k, v in got[f"{topic}-fc"] if v["made_at"] == last}
            emb = {k for k, v in got[f"{topic}-emb"] if v["slot"] == last}
            return len(fc) == 4 * n_cells and emb >= want_uids
        got = read_topics(broker.bootstrap, [f"{topic}-fc", f"{topic}-emb"], done)
    finally:
        w.stop()
    assert done(got), w.tail()

    # Forecasts: self-describing records keyed city:cell, one per horizon 1..4, equal to FlowForecaster.predict
    # on offline flows.
    fc = {(k, v["horizon"]): v for k, v in got[f"{topic}-fc"] if v["made_at"] == last}
    assert all(k == f"A:{v['cell']}" and v["slot"] == last + h and v["version"] == fver for (k, h), v in fc.items())
    cells = np.array(sorted(v["cell"] for (_, h), v in fc.items() if h == 1))
    valid = df[df.x != 999].sort_values(["uid", "d", "t"])
    offline = flow_counts(valid.uid.to_numpy(), slot_from_dt(valid.d.to_numpy(), valid.t.to_numpy()),
                          valid.x.to_numpy(), valid.y.to_numpy())
    chan = np.zeros((len(cells), 8, 3), np.float32)  # (N, 8, 3)
    for s, c, k in zip(offline.slot, offline.cell, offline.counts):
        if last - 8 < s <= last and k.any():
            assert c in cells, f"cell {c} has flows in slot {s} but no forecast"
            chan[np.searchsorted(cells, c), s - (last - 7)] = k
    want = FlowForecaster.load(tmp_path / "flow.pt").predict(chan, last, cells)  # (N, 4, 3)
    live = np.array([[[fc[f"A:{c}", h][k] for k in ("occ", "in", "out")] for h in range(1, 5)] for c in cells])
    np.testing.assert_allclose(live, want, atol=1e-3)
    k = Keys(app)
    assert orjson.loads(redis_client.hget(k.forecast("A", last), str(cells[0]))) == fc[f"A:{cells[0]}", 1]
    assert orjson.loads(redis_client.hget(k.forecast_ahead("A", last, 4), str(cells[0]))) == fc[f"A:{cells[0]}", 4]
    version, packed_cells, packed = unpack_forecasts(redis_client.get(k.forecast_packed("A", last)))
    assert version == fver and packed_cells.tolist() == cells.tolist()
    np.testing.assert_allclose(packed, want, atol=1e-3)

    # Live error: the forecast made at last-1 against the actuals of `last`, beside persistence.
    err = orjson.loads(redis_client.hget(Keys(app).errors("A"), str(last)))
    assert err["slot"] == last and err["version"] == fver and err["model"] >= 0 and err["persistence"] >= 0
    assert err["horizons"]["1"]["model"]["rmse"] >= 0 and err["horizons"]["2"]["persistence"]["rmse"] >= 0

    # Embeddings: keyed uid, base64 float32, equal to TrajectoryEmbedder.embed on offline windows.
    emb = {k: v for k, v in got[f"{topic}-emb"] if v["slot"] == last}
    uids = np.array(sorted(int(u) for u in want_uids))
    ts = replay_ts(valid.d.to_numpy(), valid.t.to_numpy(), valid.uid.to_numpy())
    win = windows_for(valid.uid.to_numpy(), slots_of(ts), valid.x.to_numpy(), valid.y.to_numpy(),
                      uids, np.full(len(uids), last), ts=ts)
    want_e = TrajectoryEmbedder.load(tmp_path / "enc.pt").embed(win.x, win.y, win.mask, last)
    for u, vec in zip(uids, want_e):
        rec = emb[str(u)]
        assert rec["uid"] == str(u) and rec["city"] == "A" and rec["version"] == ever and rec["dtype"] == "float32"
        live_e = np.frombuffer(base64.b64decode(rec["embedding_b64"]), "<f4")
        np.testing.assert_allclose(live_e, vec, rtol=1e-4, atol=1e-5)
    assert orjson.loads(redis_client.get(Keys(app).embedding("A", uids[0])))["embedding_b64"] == emb[str(uids[0])]["embedding_b64"]
