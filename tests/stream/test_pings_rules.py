"""Rules added with the one-rule-set decode: x/y beside lat/lon (conflict), the Kafka timestamp as ping time."""

from __future__ import annotations

import orjson
import pytest

from models.grid import GridSpec, cell_id
from models.slots import DEFAULT_ORIGIN
from stream.pings import Limits, decode

LIM = Limits(max_future=0)
TS = DEFAULT_ORIGIN + 100
GRID = GridSpec()
LAT, LON = (float(v) for v in GRID.cell_center(12, 40))  # the centre of cell (12, 40)


def reasons(got) -> list[str]:
    return [d.reason for d in got.dead]


def test_xy_and_latlon_naming_the_same_cell_are_accepted():
    got = decode([(b"k", orjson.dumps({"uid": 1, "ts": TS, "x": 12, "y": 40, "lat": LAT, "lon": LON}))], LIM)
    assert got.dead == [] and got.cell.tolist() == [cell_id(12, 40)]


@pytest.mark.parametrize("extra, reason", [
    ({"x": 13, "y": 40}, "conflict"),  # a neighbouring cell
    ({"x": 999, "y": 999}, "conflict"),  # masked x/y beside a real position
    ({"x": 12, "y": 40, "lat": 10.0}, "conflict"),  # lat/lon off the grid
    ({"x": 12, "y": 40, "lat": "35.5"}, "wrong_type"),  # a malformed pair keeps its own reason
    ({"x": 12, "y": 40, "lon": None}, "missing_field"),
    ({"x": 12, "y": 40, "lat": float("nan")}, "nan"),
    ({"x": 12.0, "y": 40}, "wrong_type"),
])
def test_xy_beside_latlon_that_disagree_are_refused(extra, reason):
    ping = {"uid": 1, "ts": TS, "lat": LAT, "lon": LON, **extra}
    value = orjson.dumps(ping, option=orjson.OPT_SERIALIZE_NUMPY) if reason != "nan" else (
        b'{"uid": 1, "ts": %d, "x": 12, "y": 40, "lat": NaN, "lon": %r}' % (TS, LON))
    got = decode([(b"k", value)], LIM)
    assert len(got) == 0 and reasons(got) == [reason]
    if reason == "conflict":
        assert "name different cells" in got.dead[0].detail and got.dead[0].value == value


def test_null_location_fields_are_missing():
    got = decode([(None, orjson.dumps({"uid": 1, "ts": TS, "x": None, "y": None}))], LIM)
    assert reasons(got) == ["missing_field"] and "x/y or lat/lon" in got.dead[0].detail


def test_the_kafka_timestamp_is_the_ping_time_only_when_asked_and_only_without_ts():
    no_ts = orjson.dumps({"uid": 1, "x": 3, "y": 4})
    with_ts = orjson.dumps({"uid": 2, "ts": TS, "x": 3, "y": 4})
    msgs = [(b"1", no_ts, (TS + 60) * 1000), (b"2", with_ts, (TS + 60) * 1000), (b"3", no_ts, None)]
    got = decode(msgs, Limits(max_future=0, ts_from_kafka=True))
    assert got.uid == ["1", "2"] and got.ts.tolist() == [TS + 60, TS]
    assert reasons(got) == ["missing_field"] and got.keys == [b"1", b"2"]
    off = decode(msgs, LIM)
    assert off.uid == ["2"] and reasons(off) == ["missing_field", "missing_field"]
    old = decode([(b"1", no_ts, 1000)], Limits(max_future=0, ts_from_kafka=True))  # 1970: a broken clock
    assert reasons(old) == ["bad_timestamp"]


def test_messages_with_and_without_timestamps_decode_alike():
    value = orjson.dumps({"uid": 1, "ts": TS, "x": 3, "y": 4})
    a, b = decode([(b"k", value)], LIM), decode([(b"k", value, 123)], LIM)
    assert a.uid == b.uid and a.ts.tolist() == b.ts.tolist() and a.cell.tolist() == b.cell.tolist()


def test_dead_letters_come_in_arrival_order():
    msgs = [(b"a", b"nope"), (b"b", orjson.dumps([{"uid": 1, "ts": TS, "x": 0, "y": 1}, 7])),
            (b"c", orjson.dumps({"uid": 2, "ts": TS, "x": 999, "y": 999}))]
    got = decode(msgs, LIM)
    assert reasons(got) == ["not_json", "out_of_grid", "not_object", "masked"]
    assert [d.key for d in got.dead] == [b"a", b"b", b"b", b"c"]
