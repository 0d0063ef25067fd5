"""Every record format of stream.records round-trips: decode(encode(x)) == x, and a bad value names its field."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream import records as rec


def test_embedding_round_trip():
    vecs = np.random.default_rng(0).standard_normal((3, 7)).astype(np.float32)
    for uid, doc, vec in zip(["1", 'u"\\%s', "ü"], rec.embedding_docs(["1", 'u"\\%s', "ü"], "B", 9, "enc-2", vecs), vecs):
        fields, got = rec.decode_embedding(doc)
        assert fields == {"uid": uid, "city": "B", "slot": 9, "version": "enc-2", "dim": 7, "dtype": "float32"}
        assert got.tolist() == vec.tolist()


@pytest.mark.parametrize("raw, field", [(b"{", "embedding_b64"), (b"[1]", "embedding_b64"),
                                        (b'{"embedding_b64": "AAAA", "dtype": "float16", "dim": 1}', "dtype"),
                                        (b'{"embedding_b64": "!!", "dtype": "float32", "dim": 1}', "not base64"),
                                        (b'{"embedding_b64": "AAAAAA==", "dtype": "float32", "dim": 2}', "'dim'")])
def test_embedding_errors_name_the_field(raw, field):
    with pytest.raises(rec.RecordError, match=field):
        rec.decode_embedding(raw)


def test_forecasts_round_trip():
    cells = np.array([0, 5, 39_999])
    pred = np.array([[0.0, 1.5, 2.25], [3.12345, 0.0001, 7.0], [1e6, 2.0, 0.5]])
    docs = rec.forecast_records("A", 4, "v", cells, pred)
    np.testing.assert_allclose(rec.decode_forecasts(docs), pred.round(4), rtol=1e-6)
    assert [orjson.loads(d)["cell"] for d in docs] == cells.tolist()
    assert rec.decode_forecasts([]).shape == (0, 3)
    with pytest.raises(rec.RecordError, match="'occ'"):
        rec.decode_forecasts([b'{"x": 1}'])
    with pytest.raises(rec.RecordError, match="not JSON"):
        rec.decode_forecasts([b"{"])


def test_packed_forecasts_round_trip():
    cells = np.array([3, 70, 39_999])
    pred = np.random.default_rng(2).random((3, 4, 3)).astype(np.float32)  # (n, H, 3)
    version, c, p = rec.unpack_forecasts(rec.pack_forecasts("flow-1\u00e9", cells, pred))
    assert version == "flow-1\u00e9" and c.tolist() == cells.tolist() and p.tolist() == pred.tolist()


def test_error_round_trip():
    rows = {1: {"persistence": {"mae": 0.5, "rmse": 0.7}, "model": None},
            2: {"persistence": {"mae": 0.6}, "model": {"mae": 0.4, "rmse": 0.5}, "version": "v3"}}
    raw = rec.error_doc(12, 40, rows)
    one, two = rec.decode_error(raw), rec.decode_error(raw, horizon=2)
    assert one["slot"] == 12 and one["persistence"] == 0.5 and np.isnan(one["model"])
    assert (two["model"], two["persistence"]) == (0.4, 0.6) and np.isnan(rec.decode_error(raw, horizon=4)["model"])
    assert orjson.loads(raw)["horizons"]["2"] == rows[2] and orjson.loads(raw)["cells"] == 40
    with pytest.raises(rec.RecordError, match="'persistence'"):
        rec.decode_error(b'{"slot": 1, "model": 1}')


def test_flow_round_trip():
    cells, counts = np.array([1, 7, 300]), np.array([[1, 0, 2], [3, 3, 3], [0, 9, 1]])
    c, k = rec.parse_flow(rec.flow_value(cells, counts))
    assert c.tolist() == cells.tolist() and k.tolist() == counts.tolist()
    assert [x.tolist() for x in rec.parse_flow(rec.flow_value(cells[:0], counts[:0]))] == [[], []]


@pytest.mark.parametrize("kind, part", [(rec.EMBED, 3), (rec.FORECAST, -1)])
def test_work_round_trip(kind, part):
    w = rec.Work(kind, "Ä:1", 1234, part, "mobstream:{part:3}:A:win:1234")
    assert rec.decode_work(rec.encode_work(w)) == w


@pytest.mark.parametrize("raw, field", [(b"nope", "JSONDecodeError"), (b'{"kind": "embed"}', "city"),
                                        (b'{"kind": "x", "city": "A", "slot": 1, "part": 0, "key": "k"}', "'kind'"),
                                        (b'{"kind": "embed", "city": "A", "slot": "s", "part": 0, "key": "k"}', "ValueError")])
def test_bad_work_items_name_the_field(raw, field):
    with pytest.raises(rec.RecordError, match=field):
        rec.decode_work(raw)


def test_windows_round_trip():
    rng = np.random.default_rng(1)
    uids = [7, "u-8", "ключ", "", "a\nb"] + list(range(1000))
    cells = rng.integers(-1, 40_000, (len(uids), 8))
    got_uids, got_cells = rec.unpack_windows(rec.pack_windows(uids, cells))
    assert got_uids == [str(u) for u in uids] and got_cells.tolist() == cells.tolist()
    none_uids, none_cells = rec.unpack_windows(rec.pack_windows([], np.zeros((0, 8), np.int64)))
    assert none_uids == [] and none_cells.shape == (0, 8)
    with pytest.raises(rec.RecordError, match="do not decode"):
        rec.unpack_windows(rec.pack_windows(uids, cells)[:-3])
