"""Ping decoding: every bad kind gets its reason, good pings around bad ones proceed, nothing ever raises."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.grid import GridSpec
from models.slots import DEFAULT_ORIGIN
from stream.pings import WATERMARK, Limits, decode

LIM = Limits()
TS = DEFAULT_ORIGIN + 100


def one(obj_or_bytes):
    value = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    return decode([(b"k", value)], LIM)


def good(**kw):
    return {"uid": 1, "ts": TS, "x": 5, "y": 6, **kw}


@pytest.mark.parametrize("value, reason", [
    (b"{not json", "not_json"),
    (b"\xff\xfe", "not_json"),
    ([1, 2], "not_object"),
    ("a string", "not_object"),
    ({"ts": TS, "x": 1, "y": 1}, "missing_field"),
    ({"uid": 1, "x": 1, "y": 1}, "missing_field"),
    ({"uid": 1, "ts": TS}, "missing_field"),
    ({"uid": 1, "ts": TS, "x": 1}, "missing_field"),
    (good(uid=1.5), "wrong_type"),
    (good(uid=True), "wrong_type"),
    (good(uid=""), "wrong_type"),
    (good(x="5"), "wrong_type"),
    (good(x=5.0), "wrong_type"),
    (good(ts=[1]), "wrong_type"),
    (good(city=3), "wrong_type"),
    (good(ts=float("nan")), "nan"),
    (good(x=float("nan")), "nan"),
    ({"uid": 1, "ts": TS, "lat": float("nan"), "lon": 139.5}, "nan"),
    (good(ts=1e15), "bad_timestamp"),
    (good(ts=-5), "bad_timestamp"),
    (good(ts="yesterday"), "bad_timestamp"),
    (good(x=0), "out_of_grid"),
    (good(y=201), "out_of_grid"),
    ({"uid": 1, "ts": TS, "lat": 10.0, "lon": 10.0}, "out_of_grid"),
    (good(x=999, y=999), "masked"),
])
def test_each_bad_kind_has_its_reason(value, reason):
    got = one(value)  # a JSON array is a batch: its non-object elements are dead one by one
    assert len(got) == 0
    assert {d.reason for d in got.dead} == {reason}


def test_oversize_message():
    got = decode([(None, b"[" + b" " * 2000 + b"]")], Limits(max_bytes=1000))
    assert [d.reason for d in got.dead] == ["oversize"] and len(got.dead[0].value) == 1000


def test_good_forms():
    got = decode([
        (b"1", orjson.dumps(good())),
        (b"2", orjson.dumps(good(uid="u-2", ts="2026-01-05T00:10:00Z", city="B"))),
        (None, orjson.dumps({"uid": 3, "ts": TS, "lat": 35.31, "lon": 139.21})),
        (None, orjson.dumps({"watermark": TS + 5})),
    ], LIM)
    assert got.dead == []
    assert got.uid[:3] == ["1", "u-2", "3"] and got.city[:3] == ["A", "B", "A"]
    assert got.ts[1] == DEFAULT_ORIGIN + 600
    x, y, _ = GridSpec().to_cells([35.31], [139.21])
    assert got.cell[2] == (y[0] - 1) * 200 + x[0] - 1
    assert got.cell[3] == WATERMARK


def test_one_bad_ping_in_a_batch_goes_alone():
    batch = [good(uid=1), good(uid=2, x=999, y=999), {"uid": 3}, good(uid=4, x=7, y=7)]
    got = decode([(None, orjson.dumps(batch))], LIM)
    assert got.uid == ["1", "4"]
    assert sorted(d.reason for d in got.dead) == ["masked", "missing_field"]
    assert orjson.loads(got.dead[0].value)["uid"] == 2


def test_nan_literal_inside_batch_is_caught_per_ping():
    value = b'[{"uid":1,"ts":%d,"x":3,"y":3},{"uid":2,"ts":NaN,"x":3,"y":3}]' % TS
    got = decode([(None, value)], LIM)
    assert got.uid == ["1"] and [d.reason for d in got.dead] == ["nan"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(["uid", "ts", "x", "y", "lat", "lon", "city", "watermark"]) | st.text(max_size=3), kids, max_size=6),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_decodes_without_raising(value):
    got = decode([(None, json.dumps(value).encode())], LIM)
    assert len(got) + len(got.dead) >= 1 or value == []
    for d in got.dead:
        assert d.reason in {"not_json", "not_object", "missing_field", "wrong_type", "nan", "bad_timestamp",
                            "out_of_grid", "masked"}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_without_raising(value):
    decode([(None, value)], LIM)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 200), st.integers(1, 200),
                          st.integers(0, 10**6)), min_size=1, max_size=20))
def test_valid_pings_all_pass(rows):
    batch = [{"uid": u, "ts": DEFAULT_ORIGIN + t, "x": x, "y": y} for u, x, y, t in rows]
    got = decode([(None, orjson.dumps(batch))], LIM)
    assert got.dead == [] and got.uid == [str(r[0]) for r in rows]
    assert got.cell.tolist() == [(y - 1) * 200 + x - 1 for _, x, y, _ in rows]


def test_columnar_batch_form():
    value = orjson.dumps({"cols": {"uid": [1, 2, 3], "ts": [TS, TS, TS], "x": [5, 999, 7], "y": [6, 999, 300]},
                          "city": "B"})
    got = decode([(None, value)], LIM)
    assert got.uid == ["1"] and got.city == ["B"]
    assert sorted(d.reason for d in got.dead) == ["masked", "out_of_grid"]
    bad = decode([(None, orjson.dumps({"cols": {"uid": [1, 2], "ts": [TS]}}))], LIM)
    assert [d.reason for d in bad.dead] == ["wrong_type"]


def test_a_ping_from_beyond_the_wall_clock_is_a_bad_timestamp():
    """A broken device clock must not move the watermark: more than max_future ahead of now is dead."""
    import orjson

    from stream.pings import Limits, decode

    now = 1_800_000_000.0
    limits = Limits(now=lambda: now, max_future=86_400.0)
    msgs = [(None, orjson.dumps({"uid": 1, "ts": now + 3600, "x": 3, "y": 4})),
            (None, orjson.dumps({"uid": 2, "ts": now + 2 * 86_400, "x": 3, "y": 4})),
            (None, orjson.dumps({"watermark": now + 365 * 86_400}))]
    got = decode(msgs, limits)
    assert got.uid == ["1"]
    assert [d.reason for d in got.dead] == ["bad_timestamp", "bad_timestamp"]
    assert "MOBSTREAM_MAX_FUTURE" in got.dead[0].detail
    assert decode(msgs, Limits(now=lambda: now, max_future=0)).uid == ["1", "2", ""]  # 0 = no check ("" = watermark)
