"""The slot-close output path's fast forms equal the plain ones: forecast and embedding records byte for byte
(orjson of the dict, base64 per row), packed flows as orjson reads them, and the Redis writes (one MULTI/EXEC
packed by hiredis, SET_MANY with keys in KEYS) store exactly the keys and values asked for."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from models.grid import cell_xy
from stream.exceptions import StreamError
from stream.inference import Inference, _union
from stream.records import (EMBED, Work, embedding_doc, embedding_docs, forecast_records, pack_forecasts, pack_windows,
                            parse_flow, unpack_forecasts)
from stream.redis_client import chunked, execute_packed, pack
from stream.readers import parse_embedding
from stream.settings import Topics, WorkerSettings
from stream.windows import lua_slots as lua


def plain_forecasts(city, slot, version, cells, pred, horizon=1) -> list[bytes]:
    """The records built the plain way: one orjson dict per cell, counts as float64 rounded to 4 places."""
    x, y = cell_xy(cells)
    head = {"city": city, "slot": slot + horizon, "made_at": slot, "horizon": horizon, "version": version}
    return [orjson.dumps({**head, "cell": c, "x": cx, "y": cy, "occ": o, "in": i, "out": u})
            for c, cx, cy, (o, i, u) in zip(cells.tolist(), x.tolist(), y.tolist(), np.asarray(pred, np.float64).round(4).tolist())]


def plain_embedding(uid, city, slot, version, vec) -> bytes:
    b64 = base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode()
    return orjson.dumps({"uid": uid, "city": city, "slot": slot, "version": version, "dim": len(vec),
                         "dtype": "float32", "embedding_b64": b64})


def test_forecast_records_are_orjsons_bytes():
    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(40_000, 5000, replace=False))
    pred = np.concatenate([rng.random((2000, 3)) * 8, rng.random((1000, 3)) * 1e-3, np.zeros((1000, 3)),
                           rng.random((997, 3)) * 1e6, [[5e-5, 4.9999e-5, 1e-4], [0.99995, 999_999_999.0, 2.5],
                                                        [123.45675, 1.0, 0.1]]])
    for city, version in (("A", "flow_lstm-1"), ('B"%d', "v%s\\2")):
        assert forecast_records(city, 41, version, cells, pred) == plain_forecasts(city, 41, version, cells, pred)
    assert forecast_records("A", 41, "v", cells, pred, 3) == plain_forecasts("A", 41, "v", cells, pred, 3)


def test_forecast_record_and_packed_forecasts_round_trip_with_horizon():
    cells = np.array([0, 17, 39_999])
    pred = np.arange(36, dtype=np.float64).reshape(3, 4, 3) / 7  # (N, H, 3)
    for h in range(1, 5):
        docs = [orjson.loads(d) for d in forecast_records("A", 100, "v1", cells, pred[:, h - 1], h)]
        assert [(d["slot"], d["made_at"], d["horizon"], d["version"], d["cell"]) for d in docs] == [(100 + h, 100, h, "v1", c) for c in cells]
        np.testing.assert_allclose([[d["occ"], d["in"], d["out"]] for d in docs], pred[:, h - 1].round(4))
    version, got_cells, got = unpack_forecasts(pack_forecasts("v1", cells, pred))
    assert version == "v1" and got_cells.tolist() == cells.tolist() and got.shape == (3, 4, 3)
    np.testing.assert_array_equal(got, pred.astype(np.float32))
    # A value written before horizons ("<version>\n", counts (n, 3)) reads as horizon 1.
    old = b"v0\n" + cells.astype("<i4").tobytes() + pred[:, 0].astype("<f4").tobytes()
    version, got_cells, got = unpack_forecasts(old)
    assert version == "v0" and got.shape == (3, 1, 3) and np.array_equal(got[:, 0], pred[:, 0].astype(np.float32))


@pytest.mark.parametrize("odd", [np.nan, np.inf, -0.5, 1e12])
def test_forecast_records_of_odd_counts_take_orjson(odd):
    cells = np.array([3, 70, 39_999])
    pred = np.array([[1.0, 2.0, 3.0], [odd, 0.5, 0.25], [0.0, 0.0, 0.0]])
    assert forecast_records("A", 9, "v", cells, pred) == plain_forecasts("A", 9, "v", cells, pred)
    assert forecast_records("A", 9, "v", cells[:0], pred[:0]) == []


@pytest.mark.parametrize("dim", [1, 2, 3, 7, 512])
def test_embedding_docs_are_the_per_row_records(dim):
    rng = np.random.default_rng(dim)
    vecs = rng.standard_normal((40, dim)).astype(np.float32)
    uids = [str(i) if i % 3 else f'u"{i}\\%s\n' for i in range(40)]
    docs = embedding_docs(uids, 'A"%', 12, "enc-%d", vecs)
    assert docs == [plain_embedding(u, 'A"%', 12, "enc-%d", v) for u, v in zip(uids, vecs)]
    assert embedding_doc(uids[1], 'A"%', 12, "enc-%d", vecs[1]) == docs[1]
    assert parse_embedding(docs[5], "k").tolist() == vecs[5].tolist()
    assert embedding_docs([], "A", 1, "v", vecs[:0]) == []


@pytest.mark.parametrize("raw", [b"[[],[]]", b"[[5],[1,-2,3]]", b"[[1, 2], [1, 2, 3, 4, 5, 6]]",
                                 b"[[1,2],[1,2,3,4,5]]", b"[[1,2],[1,2,3,4,5,6.5]]"])
def test_parse_flow_reads_what_orjson_reads(raw):
    try:
        cells, counts = orjson.loads(raw)
        want = np.asarray(cells, dtype=np.int64), np.asarray(counts, dtype=np.int64).reshape(-1, 3)
    except ValueError as exc:  # a value that is not whole cells x 3 counts fails the same way either path
        with pytest.raises(type(exc)):
            parse_flow(raw)
        return
    got = parse_flow(raw)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist() and got[1].shape == want[1].shape


def test_parse_flow_of_a_large_flow():
    rng = np.random.default_rng(1)
    cells, counts = np.sort(rng.choice(40_000, 30_000, replace=False)), rng.integers(-3, 500, (30_000, 3))
    got = parse_flow(orjson.dumps([cells.tolist(), counts.ravel().tolist()]))
    assert got[0].tolist() == cells.tolist() and got[1].tolist() == counts.tolist()


def test_union_is_sorted_unique_with_row_lookup():
    rng = np.random.default_rng(2)
    parts = [rng.integers(0, 5000, rng.integers(0, 300)) for _ in range(8)]
    cells, at = _union(parts)
    assert cells.tolist() == np.unique(np.concatenate(parts)).tolist()
    for p in parts:
        assert (cells[at[p]] == p).all()
    assert _union([np.zeros(0, np.int64)] * 3)[0].tolist() == []
    with pytest.raises(StreamError, match="cell id -4 in an assembled flow"):
        _union([np.array([3, -4])])
    with pytest.raises(StreamError, match="cell id 67108864 in an assembled flow"):
        _union([np.array([3, 1 << 26])])


@pytest.fixture
async def aredis(redis_client, redis_url):
    r = aioredis.Redis.from_url(redis_url)
    yield r
    await r.aclose()


async def test_execute_packed_is_one_transaction_and_an_error_leaves_the_pool_usable(aredis):
    fields = [x for c in range(20_000) for x in (c, b'{"v":%d}' % c)]
    got = await execute_packed(aredis, pack([("DEL", "h"), ("HSET", "h", *fields), ("EXPIRE", "h", 60), ("SET", "s", b"x", "EX", 60)], transaction=True))
    assert got[1] == 20_000 and await aredis.hget("h", "19999") == b'{"v":19999}' and 0 < await aredis.ttl("s") <= 60
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        await execute_packed(aredis, pack([("SET", "t", b"1"), ("HSET", "s", "f", "v")], transaction=True))
    assert await aredis.get("t") == b"1"  # MULTI/EXEC runs the rest; the error is raised, not dropped
    with pytest.raises(redis.exceptions.ResponseError):
        await execute_packed(aredis, pack([("SET", "u", b"1"), ("NOSUCHCOMMAND", "x")], transaction=True))
    assert await aredis.get("u") is None  # a queueing error aborts the whole transaction
    assert await aredis.ping() and await aredis.hlen("h") == 20_000  # the pooled connections still answer in order


async def test_packed_in_advance_with_chunked_hsets_writes_the_same_hash(aredis):
    fields = [x for c in range(5_001) for x in (c, b'{"v":%d}' % c)]
    commands = [("DEL", "hc"), *chunked("HSET", "hc", fields), ("EXPIRE", "hc", 60)]
    assert [len(c) - 2 for c in commands[1:-1]] == [2048, 2048, 2048, 2048, 1810]  # at most 2048 arguments each
    got = await execute_packed(aredis, pack(commands, transaction=True))
    assert sum(got[1:-1]) == 5_001 and await aredis.hgetall("hc") == {b"%d" % c: b'{"v":%d}' % c for c in range(5_001)}


async def test_set_many_stores_keys_and_values_of_any_bytes_and_survives_a_script_flush(aredis):
    from stream.windows.scripts import Scripts

    pairs = [(b"k,1", b"a\nb,c"), ("ключ".encode(), bytes(range(256))), (b"k3", b""), (b"k4", b"x" * 70_000)]
    scripts = Scripts(aredis, {"SET_MANY": lua.SET_MANY})
    call = pack([scripts.command("SET_MANY", [k for k, _ in pairs], [60, *(v for _, v in pairs)])])
    await aredis.script_flush()  # NOSCRIPT: loaded and called again
    assert await scripts.run(call) == [len(pairs)]
    for k, v in pairs:
        assert await aredis.get(k) == v and 0 < await aredis.ttl(k) <= 60


class StubForecaster:
    version = "stub-1"

    def predict(self, chan, slot, cells):  # (N, 8, 3) -> (N, 4, 3): the window's mean + h / 8, a known answer
        return chan.mean(axis=1)[:, None] + 0.123456 + np.arange(1, 5)[None, :, None] / 8


class FakeProducer:
    def __init__(self):
        self.records = []

    def produce(self, topic, value, key):
        self.records.append((topic, key, value))

    def poll(self, timeout):
        return 0

    def flush(self, timeout=None):
        return 0


def outputs(aredis, redis_url) -> tuple[Inference, FakeProducer]:
    s = WorkerSettings(bootstrap="unused:9092", redis_url=redis_url, app="orec",
                       topics=Topics(forecasts="fc-t", embeddings="emb-t"))
    out, producer = Inference(s), FakeProducer()
    out.attach(aredis, producer)
    return out, producer


async def test_slot_writes_one_record_per_cell_and_the_same_redis_values(aredis, redis_url):
    out, producer = outputs(aredis, redis_url)
    s = out.s
    out.forecaster.get = lambda: StubForecaster()
    k = s.keys
    rng = np.random.default_rng(3)
    for slot in range(93, 101):  # flowj values as ADVANCE writes them; cell sets differ from slot to slot
        cells = np.sort(rng.choice(2000, 300, replace=False))
        await aredis.set(k.flow_packed("A", slot), orjson.dumps([cells.tolist(), rng.integers(0, 9, 900).tolist()]))
    await aredis.hset(k.forecast("A", 100), mapping={"39999": "stale"})  # a re-publication replaces the hash
    await out.forecast("A", 100)

    flows = [parse_flow(await aredis.get(k.flow_packed("A", sl))) for sl in range(93, 101)]
    cells = np.unique(np.concatenate([c for c, _ in flows]))
    chan = np.zeros((len(cells), 8, 3), np.float32)  # (N, 8, 3)
    for j, (c, counts) in enumerate(flows):
        chan[np.searchsorted(cells, c), j] = counts
    pred = StubForecaster().predict(chan, 100, cells)
    records = []
    for h in range(1, 5):
        want = plain_forecasts("A", 100, "stub-1", cells, pred[:, h - 1], h)
        records += [("fc-t", f"A:{c}".encode(), d) for c, d in zip(cells.tolist(), want)]
        assert await aredis.hgetall(k.forecast_ahead("A", 100, h)) == {str(c).encode(): d for c, d in zip(cells.tolist(), want)}
        assert 0 < await aredis.ttl(k.forecast_ahead("A", 100, h)) <= s.ttl
    assert producer.records == records
    assert k.forecast_ahead("A", 100, 1) == k.forecast("A", 100)
    version, fc_cells, fc_pred = unpack_forecasts(await aredis.get(k.forecast_packed("A", 100)))
    assert version == "stub-1" and fc_cells.tolist() == cells.tolist()
    np.testing.assert_allclose(fc_pred, np.round(pred, 4), atol=1e-6)
    err = orjson.loads(await aredis.hget(k.errors("A"), "100"))
    assert err["cells"] == len(cells) and err["model"] is None and err["persistence"] >= 0
    assert err["horizons"]["4"]["model"] is None and err["horizons"]["4"]["persistence"]["rmse"] >= 0

    # The next slots close: the forecasts made 1..4 slots before are scored against them, per horizon.
    for slot in range(101, 105):
        await aredis.set(k.flow_packed("A", slot), orjson.dumps([[5, 7], [1, 0, 0, 2, 1, 1]]))
        await out.forecast("A", slot)
    err = orjson.loads(await aredis.hget(k.errors("A"), "104"))
    assert [err["horizons"][str(h)]["model"] is not None for h in range(1, 5)] == [True] * 4
    assert err["model"] == err["horizons"]["1"]["model"]["mae"] and err["version"] == "stub-1"
    row = err["horizons"]["4"]["model"]  # made at slot 100 for 104: cells 5 and 7 from the first packed value
    assert set(row) == {"rmse", "mae", "poisson_deviance", "bias_pct"}


class StubEmbedder:
    version = "enc-1"

    def embed(self, x, y, mask, slot):  # (N, 8) -> (N, 5)
        return np.stack([x.sum(1), y.sum(1), mask.sum(1), x[:, -1] * 0.5, np.full(len(x), slot)], axis=1)


async def test_closed_slot_writes_one_record_per_user_and_the_same_redis_values(aredis, redis_url):
    out, producer = outputs(aredis, redis_url)
    out.embedder.get = lambda: StubEmbedder()
    rng = np.random.default_rng(4)
    n = 12_001  # three SET_MANY calls
    uids = [f"u{i}" if i % 5 else i for i in range(n)]  # the processor passes str or int uids
    cells = rng.integers(0, 40_000, (n, 8))
    cells[rng.random((n, 8)) < 0.3] = -1
    key = out.keys.windows("A", 77, 0)
    await aredis.set(key, pack_windows(uids, cells))
    assert await out.embed(Work(EMBED, "A", 77, 0, key)) == n
    assert not await aredis.exists(key)  # done: the windows go
    assert await out.embed(Work(EMBED, "A", 77, 0, key)) == 0  # a rerun finds none: nothing made twice
    await aredis.set(key, pack_windows(uids[:3], cells[:3]))
    get, out.embedder.get = out.embedder.get, lambda: None
    assert await out.embed(Work(EMBED, "A", 77, 0, key)) == 0 and not await aredis.exists(key)  # off: windows go
    out.embedder.get = get
    mask = cells >= 0
    x, y = cell_xy(np.where(mask, cells, 0))
    emb = StubEmbedder().embed(np.where(mask, x, 0), np.where(mask, y, 0), mask, 77).astype(np.float32)
    want = [plain_embedding(str(u), "A", 77, "enc-1", v) for u, v in zip(uids, emb)]
    assert producer.records == [("emb-t", str(u).encode(), d) for u, d in zip(uids, want)]
    got = await aredis.mget([out.keys.embedding("A", str(u)) for u in uids])
    assert got == want
    assert 0 < await aredis.ttl(out.keys.embedding("A", "u1")) <= out.s.ttl


async def test_read_parses_a_flow_again_only_when_its_value_changed(aredis, redis_url):
    out, _ = outputs(aredis, redis_url)
    k = out.keys
    for slot in range(1, 11):
        await aredis.set(k.flow_packed("A", slot), orjson.dumps([[slot, 50 + slot], [1, 2, 3, 4, 5, slot]]))
    first = out._parse("A", list(range(1, 9)), (await out._read("A", list(range(1, 9))))[0])
    await aredis.set(k.flow_packed("A", 5), b"[[7],[9,9,9]]")  # e.g. a slot assembled again after a crash
    second = out._parse("A", list(range(2, 10)), (await out._read("A", list(range(2, 10))))[0])
    assert all(a is b for a, b in zip(first[1:4], second[:3]))  # unchanged values: the same parsed arrays
    assert second[3][0].tolist() == [7] and second[3][1].tolist() == [[9, 9, 9]]
    assert second[7][1].tolist() == [[1, 2, 3], [4, 5, 9]]
    assert sorted(s for _, s in out._flows) == list(range(2, 10))  # only the last close's slots are kept


def test_output_producer_reports_only_failed_deliveries(monkeypatch):
    """A Python callback per delivered record was ~1 us x 40,000 a slot; failures are still reported."""
    import confluent_kafka

    from stream.transport import make_producer

    seen = {}
    monkeypatch.setattr(confluent_kafka, "Producer", lambda conf: seen.update(conf) or "producer")
    make_producer("broker:9092")
    assert seen["delivery.report.only.error"] is True and callable(seen["on_delivery"])
