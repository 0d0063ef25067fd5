"""stream.readers: value parsing (every accepted shape, clear errors) and the read functions on a real Redis."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from models.grid import cell_id
from stream import readers
from stream.keys import Keys
from stream.windows import wal
from stream.readers import ReadError


def test_parse_flows_places_cells_row_y_column_x():
    g = readers.parse_flows({str(cell_id(3, 2, 4)).encode(): b"5,1,2", b"0": b"1,0,0"}, "k", size=4)
    assert g.shape == (3, 4, 4)
    assert g[:, 1, 2].tolist() == [5, 1, 2] and g[:, 0, 0].tolist() == [1, 0, 0] and g.sum() == 9


@pytest.mark.parametrize("bad", [b"1,2", b"1,x,3", b"1,2,3,4", b""])
def test_parse_flows_names_the_key_and_value(bad):
    with pytest.raises(ReadError, match="app:A:flow:3"):
        readers.parse_flows({b"0": b"1,1,1", b"1": bad}, "app:A:flow:3", size=4)


def test_parse_flows_rejects_cells_outside_the_grid():
    with pytest.raises(ReadError, match="cell id outside"):
        readers.parse_flows({b"16": b"1,1,1"}, "k", size=4)


@pytest.mark.parametrize("doc", [[1.5, 2, 3], {"occ": 1.5, "in": 2, "out": 3},
                                 {"occupancy": 1.5, "inflow": 2, "outflow": 3}, {"pred": [1.5, 2, 3], "v": "x"}])
def test_forecast_shapes(doc):
    g = readers.parse_forecasts({b"1": orjson.dumps(doc)}, "k", size=2)
    assert g[:, 0, 1].tolist() == [1.5, 2, 3] and np.isnan(g[:, 1, 1]).all()


def test_forecast_errors_are_clear():
    with pytest.raises(ReadError, match="no field 'occ'"):
        readers.parse_forecasts({b"1": b'{"x": 1}'}, "k", size=2)
    with pytest.raises(ReadError, match="not JSON"):
        readers.parse_forecasts({b"1": b"{"}, "k", size=2)


@pytest.mark.parametrize("doc", [[0.1, 0.2], {"embedding": [0.1, 0.2], "slot": 3}, {"emb": [0.1, 0.2]}])
def test_embedding_shapes(doc):
    assert readers.parse_embedding(orjson.dumps(doc), "k").tolist() == pytest.approx([0.1, 0.2])


def test_embedding_base64_as_the_worker_writes_it():
    from stream.outputs import embedding_doc

    vec = np.array([0.1, -2.5, 3.0], dtype=np.float32)
    assert readers.parse_embedding(embedding_doc("7", "A", 3, "v1", vec), "k").tolist() == vec.tolist()
    half = {"embedding_b64": base64.b64encode(vec.astype("<f2").tobytes()).decode(), "dtype": "float16"}
    assert readers.parse_embedding(orjson.dumps(half), "k").tolist() == pytest.approx(vec.tolist(), rel=1e-3)
    with pytest.raises(ReadError, match="not base64"):
        readers.parse_embedding(orjson.dumps({"embedding_b64": "!!", "dtype": "float32"}), "k")
    with pytest.raises(ReadError, match="expected float32 or float16"):
        readers.parse_embedding(orjson.dumps({"embedding_b64": "AAAA", "dtype": "int8"}), "k")


def test_embedding_without_vector():
    with pytest.raises(ReadError, match="no embedding vector"):
        readers.parse_embedding(b'{"slot": 3}', "k")


def test_reads_on_real_redis(any_redis):
    from stream.redis_client import sync_client

    k, r = Keys("rd"), sync_client(*any_redis)
    r.sadd(k.cities, "A")
    r.set(k.latest("A"), 10)
    r.sadd(k.parts, 0, 1)
    r.hset(k.clock(0), "wm", 1.5)
    r.hset(k.clock(1), "wm", 2.5)
    r.hset(k.flow("A", 10), mapping={5: "3,1,0"})
    r.hset(k.flow("A", 9), mapping={5: "2,0,0"})
    r.hset(k.forecast("A", 9), mapping={5: orjson.dumps([2.5, 1, 0])})
    r.hset(k.forecast("A", 10), mapping={5: orjson.dumps({"occ": 4, "in": 0, "out": 1})})
    r.hset(k.errors("A"), mapping={10: orjson.dumps({"model": 0.5, "persistence": 1.0}), 9: b'{"mae": 0.7}'})
    for u in ("10", "2", "x"):
        r.set(k.embedding("A", u), orjson.dumps({"embedding": [float(len(u)), 1.0]}))
    # the partitions' slot logs: the later ping wins, slot 2 lies outside the 8-slot window ending at 10
    r.append(k.log(0, "A", 10), wal.encode(["2", "2"], np.array([100, 50]), np.array([5, 6])))
    r.append(k.log(1, "A", 10), wal.encode(["10"], np.array([90]), np.array([7])))
    r.append(k.log(0, "A", 2), wal.encode(["2"], np.array([100]), np.array([9])))
    assert readers.latest_slots(r, k) == {"A": 10} and readers.watermarks(r, k) == {0: 1.5, 1: 2.5}
    assert readers.flow_grid(r, k, "A", 10)[:, 0, 5].tolist() == [3, 1, 0]
    assert readers.flow_grid(r, k, "A", 11).sum() == 0
    err = readers.errors(r, k, "A")
    assert err["slot"].tolist() == [9, 10] and err["model"].tolist() == [0.7, 0.5] and np.isnan(err["persistence"][0])
    h = readers.cell_history(r, k, "A", 5, end=10, n=3)
    assert h.slots.tolist() == [8, 9, 10, 11]
    assert h.actual[:, 0].tolist()[:3] == [0, 2, 3] and np.isnan(h.actual[3]).all()
    assert np.isnan(h.forecast[0, 0]) and h.forecast[2, 0] == 2.5 and h.forecast[3, 0] == 4
    assert h.persistence[3, 0] == 3 and h.persistence[2, 0] == 2
    assert readers.embedding_uids(r, k, "A") == ["2", "10", "x"]
    uids, e = readers.embeddings(r, k, "A", ["2", "gone", "10"])
    assert uids == ["2", "10"] and e.tolist() == [[1.0, 1.0], [2.0, 1.0]]
    assert readers.user_cells(r, k, "A", ["2", "10", "nobody"], end=10) == {"2": {10: 5}, "10": {10: 7}, "nobody": {}}
    assert set(r.keys()) == set(r.keys("rd:*"))  # nothing written by the readers


def test_horizons_on_real_redis(redis_client):
    k, r = Keys("rh"), redis_client
    for h in (1, 2, 4):  # horizon 3 missing
        r.hset(k.forecast_ahead("A", 10, h), mapping={5: orjson.dumps({"horizon": h, "occ": h, "in": 0, "out": 0.5})})
    assert readers.forecast_grid(r, k, "A", 10, horizon=4)[:, 0, 5].tolist() == [4, 0, 0.5]
    assert readers.forecast_grid(r, k, "A", 10)[0, 0, 5] == 1
    path = readers.forecast_path(r, k, "A", 5, 10)
    assert path[:, 0].tolist()[:2] == [1, 2] and np.isnan(path[2]).all() and path[3, 0] == 4
    row = lambda m, p: {"model": None if m is None else {"mae": m, "rmse": 2 * m}, "persistence": {"mae": p}}  # noqa: E731
    r.hset(k.errors("A"), mapping={11: orjson.dumps({"model": 0.5, "persistence": 1.0, "horizons": {"1": row(0.5, 1.0), "4": row(0.9, 1.5)}}),
                                   12: orjson.dumps({"model": None, "persistence": 1.1, "horizons": {"1": row(None, 1.1), "4": row(None, 1.6)}})})
    e1, e4 = readers.errors(r, k, "A"), readers.errors(r, k, "A", horizon=4)
    assert e1["model"][0] == 0.5 and e4["model"][0] == 0.9 and e4["persistence"].tolist() == [1.5, 1.6] and np.isnan(e4["model"][1])
    assert np.isnan(readers.errors(r, k, "A", horizon=3)["persistence"]).all()
