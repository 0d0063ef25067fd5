"""Dataset readers: good rows, each kind of bad row (line and field), strict vs lenient, gzip, Parquet, POI, GPS."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.grid import GridSpec
from models.slots import DEFAULT_ORIGIN
from training.exceptions import DataFormatError
from training.readers import FORMATS, ReadSummary, city_of, describe, read_all, read_chunks
from training.readers.csvparse import BlockParser

GOOD = "uid,d,t,x,y\n1,0,0,5,5\n1,0,1,999,999\n1,0,2,200,1\n2,3,47,1,200\n"


def write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_rows_and_masked_records(tmp_path):
    cols, s = read_all(write(tmp_path, "yjmob100k-dataset1.csv", GOOD))
    assert cols["uid"].tolist() == [1, 1, 1, 2]
    assert cols["t"].tolist() == [0, 1, 2, 47]
    assert cols["masked"].tolist() == [False, True, False, False]
    assert cols["x"].dtype == np.int64
    assert (s.rows, s.good, s.masked, s.bad_rows) == (4, 4, 1, 0)


def test_gzip_same_as_plain(tmp_path):
    p = tmp_path / "yjmob100k-dataset2.csv.gz"
    p.write_bytes(gzip.compress(GOOD.encode()))
    assert describe(p).container == "csv.gz"
    cols, _ = read_all(p)
    plain, _ = read_all(write(tmp_path, "plain.csv", GOOD))
    assert all(np.array_equal(cols[k], plain[k]) for k in plain)


BAD_CASES = [
    ("1,0,0,5\n", "column_count", "", "expected 5 fields"),
    ("1,0,0,5,5,5\n", "column_count", "", "found 6"),
    ("1,0,x,5,5\n", "not_integer", "t", "'x' is not an integer"),
    ("1,0,0,5.5,5\n", "not_integer", "x", "'5.5' is not an integer"),
    ("1,0,0,,5\n", "not_integer", "x", "empty value"),
    ("-1,0,0,5,5\n", "out_of_range", "uid", "-1 is negative"),
    ("1,-1,0,5,5\n", "out_of_range", "d", "-1 is negative"),
    ("1,0,48,5,5\n", "out_of_range", "t", "48 is outside 0..47"),
    ("1,0,0,0,5\n", "out_of_range", "x", "0 is outside 1..200"),
    ("1,0,0,5,201\n", "out_of_range", "y", "201 is outside 1..200"),
    ("1,0,0,999,5\n", "out_of_range", "x", "only x=y=999 marks a masked record"),
    ("1,0,1,7,7\n", "duplicate", "uid,d,t", "a second record for uid=1, d=0, t=1"),
]


@pytest.mark.parametrize("bad,reason,field,text", BAD_CASES)
def test_each_bad_row_names_line_and_field(tmp_path, bad, reason, field, text):
    # the bad row is line 4: header, two good rows, then it
    p = write(tmp_path, "d.csv", "uid,d,t,x,y\n1,0,0,5,5\n1,0,1,5,5\n" + bad + "2,0,0,1,1\n")
    with pytest.raises(DataFormatError) as err:
        read_all(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}:4: ") and text in msg
    if field:
        assert f"field {field}:" in msg
    cols, s = read_all(p, strict=False)
    key = f"{reason}:{field}" if field else reason
    assert dict(s.bad) == {key: 1}
    assert (s.rows, s.good, s.bad_rows) == (4, 3, 1)
    assert s.examples[0].line == 4
    assert cols["uid"].tolist() == [1, 1, 2]


def test_lenient_counts_many_reasons_and_strict_stops_at_first(tmp_path):
    rows = ["uid,d,t,x,y", "1,0,0,5,5", "1,0,1,abc,5", "1,0,2,5,300", "", "1,0,3,5", "1,0,4,5,5", "1,0,4,6,6", "1,0,5,1,1"]
    p = write(tmp_path, "m.csv", "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=r"m\.csv:3: field x: 'abc'"):
        read_all(p)
    s = ReadSummary()
    cols, _ = read_all(p, strict=False, summary=s)
    assert dict(s.bad) == {"not_integer:x": 1, "out_of_range:y": 1, "column_count": 1, "duplicate:uid,d,t": 1}
    assert [e.line for e in s.examples] == [3, 4, 6, 8]
    assert s.blank_lines == 1 and s.good == 3 and cols["t"].tolist() == [0, 4, 5]


def test_line_numbers_survive_small_blocks_and_bisection(tmp_path):
    # many blocks (block_bytes tiny) and bad rows far apart: line numbers must stay exact
    lines = ["uid,d,t,x,y"] + [f"{i // 48},{0},{i % 48},{1 + i % 200},{1 + i % 199}" for i in range(5000)]
    for at in (17, 2500, 4999):
        lines[at] = lines[at].rsplit(",", 1)[0] + ",oops"
    p = write(tmp_path, "big.csv", "\n".join(lines))  # no newline at the end
    for block in (64, 1 << 10, 1 << 20):
        s = ReadSummary()
        n = sum(len(c["uid"]) for c in read_chunks(p, strict=False, summary=s, block_bytes=block))
        assert n == 4997 and [e.line for e in s.examples] == [18, 2501, 5000]


def test_header_and_empty_file_errors(tmp_path):
    with pytest.raises(DataFormatError, match="empty file"):
        read_all(write(tmp_path, "e.csv", ""))
    with pytest.raises(DataFormatError, match=r"w\.csv:1: header 'uid,day,t,x,y' is not one of the known formats"):
        read_all(write(tmp_path, "w.csv", "uid,day,t,x,y\n1,0,0,5,5\n"))
    with pytest.raises(DataFormatError, match="does not match format poi"):
        read_all(write(tmp_path, "g.csv", GOOD), "poi")
    cols, s = read_all(write(tmp_path, "h.csv", "uid,d,t,x,y\n"))
    assert s.rows == 0 and len(cols["uid"]) == 0


def test_header_in_another_order_and_city_from_name(tmp_path):
    cols, _ = read_all(write(tmp_path, "cityC_challengedata.csv", "d,t,uid,x,y\n3,4,7,8,9\n"))
    assert (cols["uid"][0], cols["d"][0], cols["t"][0]) == (7, 3, 4)
    assert describe(tmp_path / "cityC_challengedata.csv").city == "C"
    assert city_of(tmp_path / "POIdata_cityB.csv") == "B" and city_of(tmp_path / "x.csv") == "A"
    assert city_of(tmp_path / "velocity_x.csv") == "A" and city_of(tmp_path / "cityd-2024.csv.gz") == "D"
    assert describe(tmp_path / "cityC_challengedata.csv", city="d").city == "D"


def test_poi_reader(tmp_path):
    p = write(tmp_path, "POIdata_cityA.csv", "x,y,POIcategory,POI_count\n1,1,1,3\n200,200,85,1\n5,5,86,1\n5,5,3,-1\n")
    ds = describe(p)
    assert ds.format == "poi"
    with pytest.raises(DataFormatError, match=r":4: field category: 86 is outside 1\.\.85"):
        read_all(p)
    cols, s = read_all(p, strict=False)
    assert cols["category"].tolist() == [1, 85] and cols["poi_count"].tolist() == [3, 1]
    assert dict(s.bad) == {"out_of_range:category": 1, "out_of_range:poi_count": 1}


def test_gps_mapping_at_grid_edges(tmp_path):
    g = GridSpec(origin_lat=10.0, origin_lon=20.0)
    top = 10.0 + 100_000 / (math.radians(1) * 6_371_008.8)
    rows = [
        f"1,10.0,20.0,{DEFAULT_ORIGIN}",  # the south-west corner: cell (1, 1), slot 0
        f"1,{top - 1e-6},20.001,2026-01-05T01:00:00Z",  # just inside the top edge: y 200, slot 2
        f"2,9.99999,20.0,{DEFAULT_ORIGIN}",  # south of the grid
        f"2,{top + 1e-9},20.001,{DEFAULT_ORIGIN}",  # north edge is exclusive
        f"3,nan,20.0,{DEFAULT_ORIGIN}",
        "3,10.1,20.1,yesterday",
        "3,10.1,20.1,2026-01-04T23:59:59Z",  # before the time origin
        "4,10.1,20.1,2026-01-06T08:30:00+09:00",  # 23:30 UTC on day 0: slot 47
    ]
    p = write(tmp_path, "gps.csv", "uid,lat,lon,timestamp\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=r"gps\.csv:4: field lat,lon: \(9\.99999, 20\.0\) lies outside the 200x200 grid"):
        read_all(p, grid=g)
    cols, s = read_all(p, grid=g, strict=False)
    assert cols["uid"].tolist() == [1, 1, 4]
    assert cols["x"].tolist()[:2] == [1, 1] and cols["y"].tolist()[:2] == [1, 200]
    assert cols["slot"].tolist() == [0, 2, 47] and cols["t"].tolist() == [0, 2, 47]
    assert dict(s.bad) == {
        "outside_grid:lat,lon": 2,
        "not_finite:lat,lon": 1,
        "bad_timestamp:timestamp": 1,
        "before_origin:timestamp": 1,
    }


def test_gps_iso_without_zone_is_utc(tmp_path):
    p = write(tmp_path, "gps.csv", "uid,lat,lon,timestamp\n1,35.5,139.5,2026-01-05 00:30:00\n")
    cols, _ = read_all(p)
    assert cols["ts"][0] == DEFAULT_ORIGIN + 1800 and cols["slot"][0] == 1


def test_parquet_rows_and_bad_rows(tmp_path):
    p = tmp_path / "cache.parquet"
    t = pa.table({"uid": [1, 1, 2, 3], "d": [0, 0, 1, 1], "t": [0, 1, 48, 2], "x": [5, 999, 5, None], "y": [5, 999, 5, 5], "extra": [0] * 4})
    pq.write_table(t, p)
    ds = describe(p)
    assert (ds.container, ds.format) == ("parquet", "yjmob")
    with pytest.raises(DataFormatError, match=r"cache\.parquet: row 3: field t: 48 is outside"):
        read_all(p)
    cols, s = read_all(p, strict=False)
    assert cols["uid"].tolist() == [1, 1] and cols["masked"].tolist() == [False, True]
    assert dict(s.bad) == {"out_of_range:t": 1, "missing:x": 1}
    assert [e.line for e in s.examples] == [3, 4]


def test_parquet_float_columns_must_be_whole(tmp_path):
    p = tmp_path / "f.parquet"
    pq.write_table(pa.table({"uid": [1.0, 2.5], "d": [0, 0], "t": [0, 0], "x": [1, 1], "y": [1, 1]}), p)
    cols, s = read_all(p, strict=False)
    assert cols["uid"].tolist() == [1] and dict(s.bad) == {"not_integer:uid": 1}


def test_gps_text_that_is_not_a_number(tmp_path):
    p = write(tmp_path, "gps.csv", "uid,lat,lon,timestamp\n1,35.5,139.5,1767571200\n1,north,139.5,1767571200\n")
    with pytest.raises(DataFormatError, match=r"gps\.csv:3: field lat: 'north' is not a number"):
        read_all(p)


LINE = st.one_of(
    st.tuples(*[st.integers(-3, 1000)] * 5).map(lambda r: ",".join(map(str, r))),
    st.sampled_from(["", ",,,,", "1,2,3", "1,2,3,4,5,6", "a,1,1,1,1", "1,1,1,1,1.5", " 7 ,1,1,1,1", "1,0,0,999,999", "\r"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=40))
def test_column_path_agrees_with_by_hand_path(lines):
    # the vectorised fallback and the line-by-line reader must report the same rows, lines and fields
    parser = BlockParser("f.csv", list(FORMATS["yjmob"].fields))
    data = ("\n".join(lines) + "\n").encode()
    fast = parser._as_text(memoryview(data), 2)
    slow = parser._by_hand(data, 2)
    assert fast is not None
    assert [(b.line, b.field, b.reason) for b in fast.bad] == [(b.line, b.field, b.reason) for b in slow.bad]
    assert fast.line_numbers().tolist() == slow.line_numbers().tolist()
    assert (fast.blank, fast.n_lines) == (slow.blank, slow.n_lines)
    for k in fast.cols:
        assert fast.cols[k].tolist() == slow.cols[k].tolist()


def test_truncated_gzip_and_broken_parquet_are_clean_errors(tmp_path):
    data = gzip.compress(("uid,d,t,x,y\n" + "".join(f"1,{i // 48},{i % 48},5,5\n" for i in range(20000))).encode())
    p = tmp_path / "t.csv.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="cannot decompress"):
        read_all(p)
    q = tmp_path / "b.parquet"
    q.write_bytes(b"PAR1" + b"x" * 100)
    with pytest.raises(DataFormatError, match="not a readable Parquet file"):
        read_all(q)
